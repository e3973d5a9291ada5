"""The selectable vision pipelines (`vision_model`): a detector and a recogniser, each recogniser fed the
alignment it was trained with. Each pipeline is its own template space (`model_id`), with its own calibration.

* `dlib`: dlib's HOG detector (CNN fallback), 5-point shape, 128-d ResNet (dlib_backend.py).
* `yunet-dlib`: YuNet-s finds the faces on a 640 px copy; dlib's 5-point shape predictor is run inside each
  YuNet box (dlib's encoder aligns its 150x150 chip on that shape, not on YuNet's points); dlib's ResNet embeds.
* `yunet-intel`: YuNet-s, then Intel's face-reidentification-retail-0095 aligned on YuNet's five points (256-d).
* `yunet-n-intel`: the same with the larger YuNet-n detector.
"""

from __future__ import annotations

from collections.abc import Sequence
from enum import StrEnum

import numpy as np
from numpy.typing import NDArray

from facetrail.errors import InvalidValueError
from facetrail.media.geometry import Box
from facetrail.vision.calibration import Calibration, load_calibration
from facetrail.vision.dlib_backend import DlibBackend
from facetrail.vision.intel_reid import IntelReidEmbedder
from facetrail.vision.types import Detection, Point, Template
from facetrail.vision.yunet import YUNET_N, YUNET_S, YuNetDetector


class VisionModel(StrEnum):
    DLIB = "dlib"
    YUNET_DLIB = "yunet-dlib"
    YUNET_INTEL = "yunet-intel"
    YUNET_N_INTEL = "yunet-n-intel"

    @classmethod
    def _missing_(cls, value: object) -> VisionModel:
        raise InvalidValueError("vision_model", f"unknown vision model {value!r}; choose one of: "
                                                f"{', '.join(m.value for m in cls)}")


DEFAULT_MODEL = VisionModel.YUNET_INTEL
"""The most accurate pipeline on LFW and the sample photos, and the fastest (BENCHMARKS.md, "Vision pipelines")."""

MODEL_IDS = {
    VisionModel.DLIB: "dlib-resnet-v1",
    VisionModel.YUNET_DLIB: "yunet-s.dlib-resnet-v1",
    VisionModel.YUNET_INTEL: "yunet-s.intel-reid-0095",
    VisionModel.YUNET_N_INTEL: "yunet-n.intel-reid-0095",
}
"""The template space of each pipeline: stored with every face, names the index file and the calibration."""


class YuNetDlibBackend:
    """YuNet boxes, dlib landmarks and encoder."""

    template_dim = 128

    def __init__(self, dlib: DlibBackend, detector: YuNetDetector | None = None) -> None:
        self.detector = detector or YuNetDetector(YUNET_S)
        self.dlib = dlib

    @property
    def model_id(self) -> str:
        return MODEL_IDS[VisionModel.YUNET_DLIB]

    def load(self) -> None:
        self.detector.load()
        self.dlib.load()

    def detect(self, pixels: NDArray[np.uint8]) -> list[Detection]:
        found = self.detector.detect(pixels)
        return self.dlib.landmarked(pixels, [(d.box, d.score, d.detector) for d in found])

    def embed(self, pixels: NDArray[np.uint8], detections: Sequence[Detection]) -> list[Template]:
        return self.dlib.embed(pixels, detections)

    def calibration(self) -> Calibration | None:
        return load_calibration(self.model_id)


class YuNetIntelBackend:
    """YuNet boxes and five points, Intel's recogniser aligned on them."""

    template_dim = IntelReidEmbedder.template_dim

    def __init__(self, model: VisionModel = VisionModel.YUNET_INTEL, *, threads: int = 1) -> None:
        if model not in (VisionModel.YUNET_INTEL, VisionModel.YUNET_N_INTEL):
            raise InvalidValueError("vision_model", f"{model.value} is not a YuNet + Intel pipeline")
        self.model = model
        self.detector = YuNetDetector(YUNET_N if model is VisionModel.YUNET_N_INTEL else YUNET_S, threads=threads)
        self.embedder = IntelReidEmbedder(threads=threads)

    @property
    def model_id(self) -> str:
        return MODEL_IDS[self.model]

    def load(self) -> None:
        self.detector.load()
        self.embedder.load()

    def warm_up(self) -> None:
        """Run both models once on a uniformly grey 640 x 480 picture, which holds no one: the runtimes' first
        run costs more than the next (buffers, kernels), and a vision process that warms up while it waits for
        work does not pay it on its first photo. The detector finds nothing there, so the recogniser is given a
        face made up of its own reference points."""
        grey = np.full((480, 640, 3), 128, dtype=np.uint8)
        self.detector.detect(grey)
        points = tuple(Point(x + 256.0, y + 176.0) for x, y in self.embedder.reference)
        made_up = Detection(Box(256, 176, 384, 304), points, 0.0, "warm-up", "yunet5")
        self.embedder.embed(grey, [made_up])

    def detect(self, pixels: NDArray[np.uint8]) -> list[Detection]:
        return self.detector.detect(pixels)

    def embed(self, pixels: NDArray[np.uint8], detections: Sequence[Detection]) -> list[Template]:
        return self.embedder.embed(pixels, detections)

    def calibration(self) -> Calibration | None:
        return load_calibration(self.model_id)
