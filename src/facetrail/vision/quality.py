"""Face quality figures recorded with every face: size, sharpness and a pose proxy."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from facetrail.media.geometry import Box
from facetrail.vision.types import Point


@dataclass(frozen=True)
class Quality:
    """`size_px`: the shorter side of the face box in pixels. `sharpness`: variance of the Laplacian
    of the face, resized to 64 px, in grey levels squared (below ~50 is blurry). `yaw`: -1..1, how far
    the nose sits from the midpoint of the eyes relative to the eye distance (0 = frontal)."""

    size_px: int
    sharpness: float
    yaw: float


def measure_quality(pixels: NDArray[np.uint8], box: Box, landmarks: tuple[Point, ...],
                    layout: str = "dlib5") -> Quality:
    return Quality(size_px=min(box.width, box.height), sharpness=_sharpness(pixels, box),
                   yaw=_yaw(landmarks, layout))


def _sharpness(pixels: NDArray[np.uint8], box: Box) -> float:
    b = box.clipped(pixels.shape[1], pixels.shape[0])
    face = pixels[b.top:b.bottom, b.left:b.right]
    if face.size == 0:
        return 0.0
    grey = face.astype(np.float32) @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
    grey = _resize_nearest(grey, 64)
    lap = (grey[:-2, 1:-1] + grey[2:, 1:-1] + grey[1:-1, :-2] + grey[1:-1, 2:] - 4 * grey[1:-1, 1:-1])
    return round(float(lap.var()), 2)


def _resize_nearest(grey: NDArray[np.float32], size: int) -> NDArray[np.float32]:
    rows = np.linspace(0, grey.shape[0] - 1, size).round().astype(int)
    cols = np.linspace(0, grey.shape[1] - 1, size).round().astype(int)
    return grey[np.ix_(rows, cols)]


def _yaw(landmarks: tuple[Point, ...], layout: str = "dlib5") -> float:
    if len(landmarks) != 5:
        return 0.0
    if layout == "yunet5":  # eye centres, nose tip, mouth corners
        eye_a, eye_b, nose = landmarks[0], landmarks[1], landmarks[2]
    else:  # dlib 5-point order: right eye outer, right eye inner, left eye outer, left eye inner, nose base.
        eye_a = Point((landmarks[0].x + landmarks[1].x) / 2, (landmarks[0].y + landmarks[1].y) / 2)
        eye_b = Point((landmarks[2].x + landmarks[3].x) / 2, (landmarks[2].y + landmarks[3].y) / 2)
        nose = landmarks[4]
    span = abs(eye_a.x - eye_b.x)
    if span < 1e-6:
        return 0.0
    mid = (eye_a.x + eye_b.x) / 2
    return round(float(np.clip((nose.x - mid) / (span / 2), -1.0, 1.0)), 3)
