"""An embedding model from a local ONNX file (ArcFace, SFace, AdaFace, ...), with dlib's detector in front.

The model is described by a JSON sidecar next to it, `<model file>.json` (e.g. `arcface.onnx.json`):

    {
      "model_id": "arcface-r100-v1",          optional; default "onnx-" + 16 hex of the model file's SHA-256
      "input_size": [112, 112],               [width, height] of the model input, pixels
      "mean": [127.5, 127.5, 127.5],          per channel, in the model's channel order, pixel units (0-255)
      "std": [127.5, 127.5, 127.5],           the input is (pixel - mean) / std, float32
      "channel_order": "RGB",                 "RGB" or "BGR"
      "layout": "NCHW",                       "NCHW" or "NHWC"
      "template": [[38.29, 51.70], ...],      optional: 5 [x, y] points in input pixels, in the order of
                                              alignment.ARCFACE_TEMPLATE_112; default that template (112x112 only)
      "template_dim": 512,                    optional: needed only if the model's output size is not fixed
      "calibration": "arcface.calib.json"     optional: a calibration file (see calibration.py), relative to here
    }

Landmarks. The published templates place eye centres, nose tip and mouth corners; dlib's 5-point model gives
eye corners and the nose base, which no standard template uses and which leave the mouth, and with it the
vertical scale, unconstrained. So each face is landmarked again with dlib's 68-point predictor (shipped in
`face-recognition-models`), from which the template's points follow directly: eye centres are the means of
points 36-41 and 42-47, the nose tip is point 30, the mouth corners points 48 and 54. That costs about a
millisecond per face and matches how the models were trained, which matters more than the millisecond.
Detections themselves (box, 5 landmarks, score) stay dlib's, so quality figures and stored landmarks mean
the same whichever model embeds.

Templates are L2-normalised, so the index's Euclidean distance d relates to cosine similarity c by
d^2 = 2 - 2c: ranking by distance is ranking by cosine.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray
from PIL import Image

from facetrail.errors import FacetrailError, InvalidValueError
from facetrail.vision.alignment import (
    ARCFACE_TEMPLATE_112,
    Points,
    five_points_from_68,
    similarity_transform,
    template_points,
    warp_affine,
)
from facetrail.vision.calibration import Calibration, load_calibration
from facetrail.vision.dlib_backend import DlibBackend
from facetrail.vision.runtimes import cpu_session
from facetrail.vision.types import Detection, Point, Template

# The model id names the index file and fills a 64-character column; keep it a plain file name.
_MODEL_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
_KEYS = {"model_id", "input_size", "mean", "std", "channel_order", "layout", "template", "template_dim",
         "calibration"}
_MAX_BATCH = 32  # faces per session run: bounds the input tensor for crowded photos


class ChannelOrder(StrEnum):
    RGB = "RGB"
    BGR = "BGR"

    @classmethod
    def _missing_(cls, value: object) -> ChannelOrder:
        raise InvalidValueError("channel_order", f"unknown channel order {value!r}; choose 'RGB' or 'BGR'")


class Layout(StrEnum):
    NCHW = "NCHW"
    NHWC = "NHWC"

    @classmethod
    def _missing_(cls, value: object) -> Layout:
        raise InvalidValueError("layout", f"unknown layout {value!r}; choose 'NCHW' or 'NHWC'")


@dataclass(frozen=True)
class OnnxModelDescription:
    """What facetrail must know about an ONNX embedder; read and validated from its sidecar by `read`."""

    model: Path
    model_id: str
    input_size: tuple[int, int]  # (width, height), pixels
    mean: tuple[float, float, float]  # per channel, in `channel_order`
    std: tuple[float, float, float]
    channel_order: ChannelOrder
    layout: Layout
    template: tuple[tuple[float, float], ...]  # 5 (x, y) in input pixels
    template_dim: int | None = None
    calibration: Path | None = None

    @classmethod
    def read(cls, model: Path) -> OnnxModelDescription:
        """The description in `<model>.json`; every field is checked and a bad one is named in the error."""
        if not model.is_file():
            raise InvalidValueError("model", f"no model file at {model}")
        sidecar = model.with_name(model.name + ".json")
        raw = _read_sidecar(sidecar)
        unknown = sorted(set(raw) - _KEYS)
        if unknown:
            raise InvalidValueError(unknown[0], f"{sidecar.name}: unknown field; known: {', '.join(sorted(_KEYS))}")
        for key in ("input_size", "mean", "std", "channel_order", "layout"):
            if key not in raw:
                raise InvalidValueError(key, f"{sidecar.name}: required field is missing")
        size = _input_size(raw["input_size"])
        if "template" in raw:
            template = template_points(raw["template"], size)
        elif size == (112, 112):
            template = np.array(ARCFACE_TEMPLATE_112)
        else:
            raise InvalidValueError("template", f"{sidecar.name}: required when input_size is not [112, 112]")
        return cls(
            model=model,
            model_id=_model_id(raw["model_id"]) if "model_id" in raw else default_model_id(model),
            input_size=size,
            mean=_triple(raw["mean"], "mean"),
            std=_triple(raw["std"], "std", positive=True),
            channel_order=ChannelOrder(_text(raw["channel_order"], "channel_order")),
            layout=Layout(_text(raw["layout"], "layout")),
            template=tuple((float(x), float(y)) for x, y in template),
            template_dim=_template_dim(raw["template_dim"]) if "template_dim" in raw else None,
            calibration=_calibration_path(raw["calibration"], sidecar) if "calibration" in raw else None,
        )


def default_model_id(model: Path) -> str:
    """"onnx-" and the first 16 hex digits of the SHA-256 of the model file: a new file is a new template space."""
    digest = hashlib.sha256()
    with model.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return "onnx-" + digest.hexdigest()[:16]


@dataclass(frozen=True)
class _Session:
    """A loaded model and what was learnt about it."""

    session: Any  # onnxruntime.InferenceSession
    input_name: str
    output_name: str  # the first output: the embedding; any others are not computed
    single: bool  # the batch dimension is fixed at 1
    dim: int


class OnnxBackend:
    """Detection by dlib, embedding by an ONNX model. Thread-safe after load; one instance per process.

    `threads` is onnxruntime's intra-op thread count. One by default: ingestion already runs one vision
    process per core, and more threads per process would only make them compete.
    """

    def __init__(self, description: OnnxModelDescription, detector: DlibBackend, *, threads: int = 1) -> None:
        if description.model_id == detector.model_id:
            raise InvalidValueError("model_id", f"{description.model_id!r} is the dlib encoder's; templates "
                                                "of two models must never share an id")
        self.description = description
        self.detector = detector
        self.threads = threads
        self._lock = threading.Lock()
        self._model: _Session | None = None
        self._landmarker: Any = None

    @classmethod
    def from_file(cls, model: Path, detector: DlibBackend, *, threads: int = 1) -> OnnxBackend:
        return cls(OnnxModelDescription.read(model), detector, threads=threads)

    @property
    def model_id(self) -> str:
        return self.description.model_id

    @property
    def template_dim(self) -> int:
        """The template length, from the model's output shape (loads the model)."""
        return self._session().dim

    def calibration(self) -> Calibration | None:
        """The sidecar's calibration, else one shipped for this model id, else None."""
        return load_calibration(self.model_id, self.description.calibration)

    # -- loading -------------------------------------------------------------------------------
    def load(self) -> None:
        """Load the model and the 68-point landmark predictor once; later calls do nothing."""
        self._session()
        self._predictor()

    def _session(self) -> _Session:
        with self._lock:
            if self._model is None:
                self._model = _open_session(self.description, self.threads)
            return self._model

    def _predictor(self) -> Any:
        with self._lock:
            if self._landmarker is None:
                import dlib
                import face_recognition_models as weights

                self._landmarker = dlib.shape_predictor(weights.pose_predictor_model_location())
            return self._landmarker

    # -- the VisionBackend interface -----------------------------------------------------------
    def detect(self, pixels: NDArray[np.uint8]) -> list[Detection]:
        """Faces in an upright RGB image (height, width, 3), largest first: dlib's detections unchanged."""
        return self.detector.detect(pixels)

    def embed(self, pixels: NDArray[np.uint8], detections: Sequence[Detection]) -> list[Template]:
        """One unit-length float32 template per detection, in the same order."""
        if not detections:
            return []
        loaded = self._session()
        batch = self.to_input(self.aligned_faces(pixels, detections))
        step = 1 if loaded.single else _MAX_BATCH
        outputs = [loaded.session.run([loaded.output_name], {loaded.input_name: batch[i:i + step]})[0]
                   for i in range(0, len(batch), step)]
        vectors = np.concatenate([np.asarray(o, dtype=np.float32).reshape(len(o), -1) for o in outputs])
        if vectors.shape != (len(detections), loaded.dim):
            raise FacetrailError(f"the model returned {vectors.shape} for {len(detections)} face(s) "
                                 f"of {loaded.dim} values each")
        return [_unit(v) for v in vectors]

    # -- preprocessing, step by step -----------------------------------------------------------
    def face_points(self, pixels: NDArray[np.uint8], detection: Detection) -> Points:
        """The template's five points for one face (see the module docstring), (5, 2) in image pixels."""
        import dlib

        box = detection.box
        # dlib rectangles are inclusive of their right and bottom edges; our boxes are not.
        shape = self._predictor()(pixels, dlib.rectangle(box.left, box.top, box.right - 1, box.bottom - 1))
        return five_points_from_68([Point(float(p.x), float(p.y)) for p in shape.parts()])

    def aligned_faces(self, pixels: NDArray[np.uint8], detections: Sequence[Detection]) -> list[NDArray[np.uint8]]:
        """Each face warped so its five points fall on the template: (height, width, 3) RGB crops."""
        image = Image.fromarray(np.ascontiguousarray(pixels))
        template = np.array(self.description.template)
        return [warp_affine(image, similarity_transform(self.face_points(pixels, det), template),
                            self.description.input_size) for det in detections]

    def to_input(self, crops: Sequence[NDArray[np.uint8]]) -> NDArray[np.float32]:
        """RGB crops as the model's float32 input: channels reordered, (pixel - mean) / std, in its layout."""
        d = self.description
        batch: NDArray[Any] = np.stack(crops).astype(np.float32)  # (n, height, width, 3), RGB
        if d.channel_order is ChannelOrder.BGR:
            batch = batch[..., ::-1]
        mean, std = np.array(d.mean, dtype=np.float32), np.array(d.std, dtype=np.float32)
        batch = (batch - mean) / std
        if d.layout is Layout.NCHW:
            batch = batch.transpose(0, 3, 1, 2)
        return np.ascontiguousarray(batch, dtype=np.float32)


def _open_session(description: OnnxModelDescription, threads: int) -> _Session:
    """Open the model on the CPU and check its input and output against the description."""
    try:
        session = cpu_session(str(description.model), threads)
    except Exception as exc:  # onnxruntime raises its own classes for each way a file can be unreadable
        raise InvalidValueError("model", f"{description.model.name} cannot be loaded: {exc}") from None
    inputs, outputs = session.get_inputs(), session.get_outputs()
    if len(inputs) != 1 or not outputs:
        raise InvalidValueError("model", f"{description.model.name} must take one input and give an output, "
                                         f"not {len(inputs)} input(s) and {len(outputs)} output(s)")
    if inputs[0].type != "tensor(float)":
        raise InvalidValueError("model", f"{description.model.name} takes {inputs[0].type}, not float32")
    shape = list(inputs[0].shape)
    _check_input_shape(description, shape)
    return _Session(session=session, input_name=inputs[0].name, output_name=outputs[0].name, single=shape[0] == 1,
                    dim=_output_dim(description, list(outputs[0].shape)))


def _check_input_shape(description: OnnxModelDescription, shape: list[Any]) -> None:
    """The model's input shape must agree with the description wherever the model fixes a size."""
    width, height = description.input_size
    expected = [None, 3, height, width] if description.layout is Layout.NCHW else [None, height, width, 3]
    if len(shape) != 4:
        raise InvalidValueError("layout", f"{description.model.name} takes a {len(shape)}-d input {shape}, "
                                          f"not a 4-d {description.layout.value} image batch")
    # Channels first: a model of the other layout would otherwise read as one of another size.
    channel_axis = 1 if description.layout is Layout.NCHW else 3
    for field, axes in (("layout", [channel_axis]), ("input_size", [1, 2, 3])):
        for axis in axes:
            want, got = expected[axis], shape[axis]
            if isinstance(got, int) and got != want:
                raise InvalidValueError(field, f"{description.model.name} takes input {shape}, which contradicts "
                                               f"{description.layout.value} {width}x{height} (axis {axis})")
    if isinstance(shape[0], int) and shape[0] != 1:
        raise InvalidValueError("model", f"{description.model.name} takes batches of exactly {shape[0]} images")


def _output_dim(description: OnnxModelDescription, shape: list[Any]) -> int:
    """Values per face in the first output: the product of its non-batch axes, or the sidecar's template_dim."""
    axes = shape[1:]
    fixed = math.prod(axes) if axes and all(isinstance(a, int) and a > 0 for a in axes) else None
    declared = description.template_dim
    if fixed is not None and declared is not None and fixed != declared:
        raise InvalidValueError("template_dim", f"{description.model.name} outputs {shape}: {fixed} values, "
                                                f"not {declared}")
    dim = fixed if fixed is not None else declared
    if dim is None:
        raise InvalidValueError("template_dim", f"{description.model.name} outputs {shape}, of no fixed size; "
                                                "give template_dim in the sidecar")
    return dim


def _unit(vector: NDArray[np.float32]) -> Template:
    norm = float(np.linalg.norm(vector))
    if not math.isfinite(norm) or norm < 1e-12:
        raise FacetrailError("the model returned a zero or non-finite embedding")
    return (vector / norm).astype(np.float32)


# -- sidecar fields ----------------------------------------------------------------------------
def _read_sidecar(sidecar: Path) -> dict[str, Any]:
    if not sidecar.is_file():
        raise InvalidValueError("model", f"no description at {sidecar}: an ONNX model needs a JSON sidecar "
                                         "with input_size, mean, std, channel_order and layout")
    try:
        raw = json.loads(sidecar.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InvalidValueError("model", f"{sidecar.name} is not readable JSON: {exc}") from None
    if not isinstance(raw, dict):
        raise InvalidValueError("model", f"{sidecar.name} must hold a JSON object")
    return raw


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _text(value: object, field: str) -> str:
    if not isinstance(value, str):
        raise InvalidValueError(field, f"must be a string, not {value!r}")
    return value


def _model_id(value: object) -> str:
    if not isinstance(value, str) or not _MODEL_ID.fullmatch(value):
        raise InvalidValueError("model_id", f"{value!r} is not 1-64 letters, digits, '.', '_' or '-' "
                                            "starting with a letter or digit")
    return value


def _input_size(value: object) -> tuple[int, int]:
    if (not isinstance(value, list) or len(value) != 2
            or not all(isinstance(v, int) and not isinstance(v, bool) and 8 <= v <= 2048 for v in value)):
        raise InvalidValueError("input_size", f"{value!r} is not [width, height], whole numbers of 8-2048 pixels")
    return value[0], value[1]


def _triple(value: object, field: str, *, positive: bool = False) -> tuple[float, float, float]:
    if (not isinstance(value, list) or len(value) != 3 or not all(_is_number(v) for v in value)
            or positive and not all(v > 0 for v in value)):
        kind = "positive numbers" if positive else "numbers"
        raise InvalidValueError(field, f"{value!r} is not 3 {kind}, one per channel")
    return float(value[0]), float(value[1]), float(value[2])


def _template_dim(value: object) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= 8192:
        raise InvalidValueError("template_dim", f"{value!r} is not a whole number from 1 to 8192")
    return value


def _calibration_path(value: object, sidecar: Path) -> Path:
    if not isinstance(value, str) or not value:
        raise InvalidValueError("calibration", f"{value!r} is not a path")
    path = sidecar.parent / value
    if not path.is_file():
        raise InvalidValueError("calibration", f"no calibration file at {path}")
    return path
