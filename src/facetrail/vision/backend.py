"""The seam between facetrail and a face model: detect faces, then embed them as templates."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import numpy as np
from numpy.typing import NDArray

from facetrail.vision.types import Detection

Template = NDArray[np.float32]


class VisionBackend(Protocol):
    """A face model. `model_id` names the template space: templates of two models never mix."""

    @property
    def model_id(self) -> str: ...

    @property
    def template_dim(self) -> int: ...

    def detect(self, pixels: NDArray[np.uint8]) -> list[Detection]:
        """Faces in an upright RGB image (height, width, 3), largest first."""
        ...

    def embed(self, pixels: NDArray[np.uint8], detections: Sequence[Detection]) -> list[Template]:
        """One template per detection, in the same order."""
        ...


def load_backend(detector: str = "hog", *, upsample_budget_pixels: int = 4_000_000,
                 max_upsample: int = 2) -> VisionBackend:
    """The default backend (dlib). Unknown detector names are rejected, never silently replaced."""
    from facetrail.vision.dlib_backend import DetectorKind, DlibBackend

    return DlibBackend(
        DetectorKind(detector),
        upsample_budget_pixels=upsample_budget_pixels,
        max_upsample=max_upsample,
    )
