"""The CPU-heavy part of ingestion, run in worker processes: decode, detect, embed, crop.

Workers receive bytes and return plain data, so nothing but the main process touches the store.
"""

from __future__ import annotations

from dataclasses import dataclass

from facetrail.media.image import decode_image
from facetrail.vision.backend import VisionBackend, VisionConfig, load_backend
from facetrail.vision.pipeline import AnalyzedFace, analyze_faces


@dataclass(frozen=True)
class ImageAnalysis:
    format: str
    width: int
    height: int
    faces: list[AnalyzedFace]


class Analyzer:
    """Decodes and analyses images with one lazily loaded backend."""

    def __init__(self, config: VisionConfig, backend: VisionBackend | None = None) -> None:
        self.config = config
        self._backend = backend

    @property
    def backend(self) -> VisionBackend:
        if self._backend is None:
            self._backend = load_backend(self.config)
        return self._backend

    def analyze(self, data: bytes) -> ImageAnalysis:
        image = decode_image(data, max_pixels=self.config.max_image_pixels)
        faces = analyze_faces(self.backend, image.pixels, crop_size=self.config.crop_size)
        return ImageAnalysis(format=image.format, width=image.width, height=image.height, faces=faces)


class _WorkerState:
    analyzer: Analyzer | None = None


def init_worker(config: VisionConfig) -> None:
    """Process-pool initializer: each worker process gets its own analyzer (and dlib models)."""
    _WorkerState.analyzer = Analyzer(config)


def analyze_in_worker(data: bytes) -> ImageAnalysis:
    assert _WorkerState.analyzer is not None, "init_worker was not run in this process"
    return _WorkerState.analyzer.analyze(data)
