"""The analysis of one photo, as a vision worker process runs it: decode, detect, align, embed, crop.

Workers receive bytes and return plain data, so nothing but the main process touches the store. This module
imports only what that needs (no settings, store, video decoding or command line), so that every worker
process stays small: the settings module alone weighs some 20 MiB.
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


def analyze_photo(backend: VisionBackend, config: VisionConfig, data: bytes) -> ImageAnalysis:
    image = decode_image(data, max_pixels=config.max_image_pixels)
    faces = analyze_faces(backend, image.pixels, crop_size=config.crop_size)
    return ImageAnalysis(format=image.format, width=image.width, height=image.height, faces=faces)


class _WorkerState:
    config: VisionConfig | None = None
    backend: VisionBackend | None = None


def init_worker(config: VisionConfig) -> None:
    """Process-pool initializer: each worker process gets its own backend (its models load on first use)."""
    _WorkerState.config = config
    _WorkerState.backend = load_backend(config)


def analyze_in_worker(data: bytes) -> ImageAnalysis:
    config, backend = _WorkerState.config, _WorkerState.backend
    assert config is not None and backend is not None, "init_worker was not run in this process"
    return analyze_photo(backend, config, data)
