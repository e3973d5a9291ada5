"""From an upright RGB image to analysed faces: detection, template, quality and a small crop."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray
from PIL import Image

from facetrail.media.image import encode_jpeg
from facetrail.vision.backend import VisionBackend
from facetrail.vision.quality import Quality, measure_quality
from facetrail.vision.types import Detection, Template


@dataclass(frozen=True)
class AnalyzedFace:
    """Everything facetrail records about one face found in one image."""

    detection: Detection
    template: Template
    quality: Quality
    crop_jpeg: bytes


def analyze_faces(backend: VisionBackend, pixels: NDArray[np.uint8], *, crop_size: int = 160,
                  with_crops: bool = True) -> list[AnalyzedFace]:
    """Detect every face (largest first), embed each, measure its quality and cut its crop."""
    detections = backend.detect(pixels)
    templates = backend.embed(pixels, detections)
    return [
        AnalyzedFace(
            detection=det,
            template=tpl,
            quality=measure_quality(pixels, det.box, det.landmarks, det.landmark_layout),
            crop_jpeg=face_crop(pixels, det, crop_size) if with_crops else b"",
        )
        for det, tpl in zip(detections, templates, strict=True)
    ]


def face_crop(pixels: NDArray[np.uint8], detection: Detection, size: int) -> bytes:
    """A JPEG of the face with a quarter of margin, its longer side at most `size` pixels."""
    height, width = pixels.shape[:2]
    box = detection.box.expanded(0.25).clipped(width, height)
    region = Image.fromarray(np.ascontiguousarray(pixels[box.top:box.bottom, box.left:box.right]))
    region.thumbnail((size, size))
    return encode_jpeg(np.asarray(region))
