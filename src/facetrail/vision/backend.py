"""The seam between facetrail and a face model: detect faces, then embed them as templates."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import numpy as np
from numpy.typing import NDArray

from facetrail.errors import InvalidValueError
from facetrail.vision.calibration import Calibration
from facetrail.vision.types import Detection, Template

if TYPE_CHECKING:
    from facetrail.vision.composite import VisionModel


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

    def calibration(self) -> Calibration | None:
        """The model's measured score bands, or None for a model not calibrated yet."""
        ...


@dataclass(frozen=True)
class VisionConfig:
    """What picks and tunes a backend (from Settings); plain data so worker processes can receive it."""

    detector: str = "hog"
    upsample_budget_pixels: int = 4_000_000
    max_upsample: int = 1
    detector_fallback: bool = True
    jitters: int = 1
    model: Path | None = None
    max_image_pixels: int = 64_000_000
    crop_size: int = 160
    vision_model: str | None = None  # composite.VisionModel; None: yunet-intel, or dlib with `model`


def analyses_in_threads(config: VisionConfig) -> bool:
    """Whether threads of one process analyse images in parallel with this config's backend: the YuNet + Intel
    pipelines run in onnxruntime, OpenVINO, Pillow and numpy, which release the GIL while they compute (two
    threads: 1.7 times one thread's images/s, BENCHMARKS.md), and share one interpreter and one set of loaded
    libraries; dlib's detector and encoder hold the GIL, so its analyses run in parallel only in processes."""
    from facetrail.vision.composite import VisionModel

    return _pipeline(config) in (VisionModel.YUNET_INTEL, VisionModel.YUNET_N_INTEL)


def _pipeline(config: VisionConfig) -> VisionModel:
    """The pipeline the config names: `vision_model`, else dlib when an ONNX `model` is given, else the default."""
    from facetrail.vision.composite import DEFAULT_MODEL, VisionModel

    return VisionModel(config.vision_model or (VisionModel.DLIB if config.model is not None else DEFAULT_MODEL))


def load_backend(config: VisionConfig | None = None) -> VisionBackend:
    """The backend the config names: YuNet-s + Intel by default; with `vision_model` dlib, dlib's detector and
    encoder, or with also `model`, that ONNX embedder behind dlib's detector; with another `vision_model`, that
    pipeline (composite.py). Unknown names are rejected, never silently
    replaced."""
    from facetrail.vision.composite import VisionModel, YuNetDlibBackend, YuNetIntelBackend
    from facetrail.vision.dlib_backend import DetectorKind, DlibBackend

    config = config or VisionConfig()
    pipeline = _pipeline(config)
    if pipeline is not VisionModel.DLIB and config.model is not None:
        raise InvalidValueError("model", f"an ONNX embedding model goes with vision_model 'dlib', "
                                         f"not {pipeline.value!r}")
    if pipeline is VisionModel.YUNET_DLIB:
        return YuNetDlibBackend(DlibBackend(fallback=False, jitters=config.jitters))
    if pipeline in (VisionModel.YUNET_INTEL, VisionModel.YUNET_N_INTEL):
        return YuNetIntelBackend(pipeline)
    dlib_backend = DlibBackend(
        DetectorKind(config.detector),
        upsample_budget_pixels=config.upsample_budget_pixels,
        max_upsample=config.max_upsample,
        fallback=config.detector_fallback,
        jitters=config.jitters,
    )
    if config.model is None:
        return dlib_backend
    from facetrail.vision.onnx_backend import OnnxBackend

    return OnnxBackend.from_file(config.model, dlib_backend)
