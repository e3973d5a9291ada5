"""Plain value types shared by every vision backend: no dlib or ONNX types cross this line."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from facetrail.media.geometry import Box

Template = NDArray[np.float32]
"""A face template: one model's embedding of one face (`VisionBackend.template_dim` float32 values)."""


@dataclass(frozen=True)
class Point:
    """A pixel position: x to the right, y down, in the upright image."""

    x: float
    y: float


@dataclass(frozen=True)
class Detection:
    """One detected face: its box, five landmarks and score. `landmark_layout` says what the landmarks are:
    "dlib5" (dlib's 5-point shape: eye corners and nose base) or "yunet5" (eye centres, nose tip, mouth
    corners; see yunet.py)."""

    box: Box
    landmarks: tuple[Point, ...]
    score: float
    detector: str
    landmark_layout: str = "dlib5"
