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
    """One detected face: its box, five landmarks (eye corners and nose base, dlib order) and score."""

    box: Box
    landmarks: tuple[Point, ...]
    score: float
    detector: str
