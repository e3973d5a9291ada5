"""Faces in pixels: detect, align, embed and score quality, behind one small backend interface."""

from facetrail.media.geometry import Box
from facetrail.vision import model_files
from facetrail.vision.backend import VisionBackend, VisionConfig, load_backend
from facetrail.vision.pipeline import AnalyzedFace, analyze_faces
from facetrail.vision.types import Detection, Point, Template

__all__ = [
    "AnalyzedFace",
    "Box",
    "Detection",
    "Point",
    "Template",
    "VisionBackend",
    "VisionConfig",
    "analyze_faces",
    "load_backend",
    "model_files",
]
