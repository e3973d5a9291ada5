"""facetrail: a face search engine for photo and video collections that is lawful by design."""

__version__ = "0.1.0"
