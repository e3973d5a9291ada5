"""The YuNet face detector (ONNX, shipped in vision/models/), run with onnxruntime on a rescaled copy.

The shipped file declares a fixed 1x3x640x640 BGR input (pixel values 0-255, no normalisation), but the network
is fully convolutional: when it is loaded (after its SHA-256 is checked; the file itself is never changed) the
input's height and width and the outputs' cell counts are made symbolic in the graph held in memory, so it runs
at any size that is a multiple of 32. The image is scaled so that its longer side is at most MAX_SIDE (large
photos are reduced) and at least MIN_SIDE (small photos are enlarged, so that a small face in a small photo
still spans the ~10-16 px YuNet needs), placed in the top-left corner of a black canvas whose sides are the
scaled sides rounded up to a multiple of 32, and what the network finds is mapped back to the original image's
pixels: boxes and the five landmarks (the eye on the image's left, the other eye, nose tip, the mouth corner on
the image's left, the other mouth corner). A 250x250 photo is searched on a 416x416 canvas instead of 640x640
(about 40% of the work); a 1200x800 one on 640x448. Enlarging small photos to 416 rather than not at all keeps
the smallest faces: a group photo reduced to 240 px loses its smallest face (~15 px) at its own size, not at 416.

Decoding follows the model's anchor-free head: at each stride s (8, 16, 32) and grid cell (row r, column c) of
the canvas (H/s rows, W/s columns), score = sqrt(cls * obj); box centre ((c + dx) s, (r + dy) s), size
(exp(dw) s, exp(dh) s); landmark k at ((c + kx_k) s, (r + ky_k) s). Overlapping boxes are then suppressed (IoU
above 0.3, higher score kept).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray
from PIL import Image

from facetrail.media.geometry import Box
from facetrail.vision.model_files import verified
from facetrail.vision.runtimes import cpu_session
from facetrail.vision.types import Detection, Point

MAX_SIDE = 640  # the longer side of a larger photo is reduced to this
MIN_SIDE = 416  # the longer side of a smaller photo is enlarged to this (measured: BENCHMARKS.md, "Vision pipelines")
ALIGN = 32  # the canvas's sides are multiples of the coarsest stride
INPUT_POLICY = f"max{MAX_SIDE}-min{MIN_SIDE}-align{ALIGN}"
"""Names how photos are sized for the network: results (and caches of them) made under another policy differ."""
STRIDES = (8, 16, 32)
NMS_IOU = 0.3
LAYOUT = "yunet5"
"""`Detection.landmark_layout` of YuNet's points: left eye, right eye, nose tip, left and right mouth corner
(left and right as seen in the image)."""


@dataclass(frozen=True)
class YuNetVariant:
    name: str  # the detector name recorded with each face (16 characters at most)
    file: str
    min_score: float
    fallback_score: float  # a photo where no box reaches min_score keeps its best box if it scores this much


# The score thresholds come from the sample photos (BENCHMARKS.md, "Vision pipelines"): YuNet-s gives two
# false boxes at 0.63 and 0.70 on them at 640 px, and no labelled face scores below 0.8. A photo where nothing
# reaches that keeps its single best box from 0.45 up (an LFW face, in harsh light, scores 0.50): like dlib's
# pipeline, which looks again when it finds nothing, this trades a rare false face on a photo of no one for
# fewer failures to enrol.
YUNET_S = YuNetVariant("yunet-s", "face_detection_yunet_2023mar.onnx", 0.75, 0.45)
YUNET_N = YuNetVariant("yunet-n", "yunet_n_640_640.onnx", 0.75, 0.45)


class YuNetDetector:
    """Faces with five landmarks; thread-safe (onnxruntime sessions are), loaded lazily once."""

    def __init__(self, variant: YuNetVariant = YUNET_S, *, threads: int = 1, min_face_px: int = 8) -> None:
        self.variant = variant
        self.threads = threads
        self.min_face_px = min_face_px
        self._lock = threading.Lock()
        self._session: Any = None

    @property
    def name(self) -> str:
        return self.variant.name

    def load(self) -> Any:
        with self._lock:
            if self._session is None:
                model = symbolic_sizes(verified(self.variant.file).read_bytes())
                self._session = cpu_session(model, self.threads)
            return self._session

    def detect(self, pixels: NDArray[np.uint8]) -> list[Detection]:
        """Faces in an upright RGB image (height, width, 3), largest first."""
        height, width = pixels.shape[:2]
        if height < 2 or width < 2:
            return []
        scaled_w, scaled_h = scaled_size(width, height)
        image = Image.fromarray(np.ascontiguousarray(pixels))
        if (scaled_w, scaled_h) != (width, height):
            image = image.resize((scaled_w, scaled_h), Image.Resampling.BILINEAR)
        canvas_h, canvas_w = -(-scaled_h // ALIGN) * ALIGN, -(-scaled_w // ALIGN) * ALIGN
        # The network's input: 1 x 3 x height x width, BGR planes; each plane is copied from the RGB pixels on
        # its own (one strided pass each, ten times faster than reversing and transposing the whole image).
        rgb = np.asarray(image)
        canvas = np.zeros((1, 3, canvas_h, canvas_w), dtype=np.float32)
        for plane, channel in enumerate((2, 1, 0)):
            canvas[0, plane, :scaled_h, :scaled_w] = rgb[:, :, channel]
        session = self.load()
        names = [o.name for o in session.get_outputs()]
        outputs = dict(zip(names, session.run(None, {"input": canvas}), strict=True))
        scores, boxes, points = _decode(outputs, canvas_h, canvas_w)
        keep = _nms(boxes, scores, self.variant.min_score)
        if not keep:
            keep = _nms(boxes, scores, self.variant.fallback_score)[:1]
        sx, sy = width / scaled_w, height / scaled_h  # the exact factors of the rounded scaled size
        detections = []
        for i in keep:
            x1, y1, x2, y2 = boxes[i]
            box = Box(round(x1 * sx), round(y1 * sy), round(x2 * sx), round(y2 * sy)).clipped(width, height)
            if min(box.width, box.height) < self.min_face_px:
                continue
            landmarks = tuple(Point(float(x * sx), float(y * sy)) for x, y in points[i])
            detections.append(Detection(box=box, landmarks=landmarks, score=round(float(scores[i]), 4),
                                        detector=self.variant.name, landmark_layout=LAYOUT))
        detections.sort(key=lambda d: d.box.area, reverse=True)
        return detections


def scaled_size(width: int, height: int) -> tuple[int, int]:
    """The size (width, height) a photo is scaled to before detection: longer side within MIN_SIDE..MAX_SIDE,
    aspect ratio kept; a photo already within that range is not resampled."""
    longer = max(width, height)
    target = min(max(longer, MIN_SIDE), MAX_SIDE)
    if target == longer:
        return width, height
    scale = target / longer
    return max(1, round(width * scale)), max(1, round(height * scale))


def _decode(outputs: dict[str, NDArray[np.float32]], height: int, width: int) -> tuple[
        NDArray[np.float32], NDArray[np.float32], NDArray[np.float32]]:
    """Scores (n,), boxes (n, 4) as x1, y1, x2, y2 and landmarks (n, 5, 2), in pixels of the height x width
    canvas the network ran on."""
    all_scores, all_boxes, all_points = [], [], []
    for stride in STRIDES:
        n_rows, n_cols = height // stride, width // stride
        cls = np.clip(outputs[f"cls_{stride}"][0, :, 0], 0, 1)
        obj = np.clip(outputs[f"obj_{stride}"][0, :, 0], 0, 1)
        bbox = outputs[f"bbox_{stride}"][0]
        kps = outputs[f"kps_{stride}"][0].reshape(-1, 5, 2)
        if len(bbox) != n_rows * n_cols:
            raise ValueError(f"YuNet gave {len(bbox)} cells at stride {stride}, not {n_rows}x{n_cols}")
        rows, cols = np.divmod(np.arange(n_rows * n_cols), n_cols)
        grid = np.stack([cols, rows], axis=1).astype(np.float32)
        centre = (grid + bbox[:, :2]) * stride
        size = np.exp(np.minimum(bbox[:, 2:], 10.0)) * stride
        all_scores.append(np.sqrt(cls * obj))
        all_boxes.append(np.concatenate([centre - size / 2, centre + size / 2], axis=1))
        all_points.append((grid[:, None, :] + kps) * stride)
    return np.concatenate(all_scores), np.concatenate(all_boxes), np.concatenate(all_points)


def _nms(boxes: NDArray[np.float32], scores: NDArray[np.float32], min_score: float) -> list[int]:
    """Indices of the boxes kept: score at least `min_score`, best first, none overlapping a better one by
    more than NMS_IOU."""
    candidates = np.flatnonzero(scores >= min_score)
    order = candidates[np.argsort(-scores[candidates], kind="stable")]
    areas = np.maximum(0, boxes[:, 2] - boxes[:, 0]) * np.maximum(0, boxes[:, 3] - boxes[:, 1])
    keep: list[int] = []
    while len(order):
        best, rest = int(order[0]), order[1:]
        keep.append(best)
        ix1 = np.maximum(boxes[best, 0], boxes[rest, 0])
        iy1 = np.maximum(boxes[best, 1], boxes[rest, 1])
        ix2 = np.minimum(boxes[best, 2], boxes[rest, 2])
        iy2 = np.minimum(boxes[best, 3], boxes[rest, 3])
        inter = np.maximum(0, ix2 - ix1) * np.maximum(0, iy2 - iy1)
        iou = inter / np.maximum(areas[best] + areas[rest] - inter, 1e-9)
        order = rest[iou <= NMS_IOU]
    return keep


# The ONNX file is a protocol buffer; the few fields rewritten here (onnx.proto): ModelProto.graph = 7;
# GraphProto.input = 11, .output = 12, .value_info = 13; ValueInfoProto.name = 1, .type = 2; TypeProto.tensor_type = 1;
# TypeProto.Tensor.shape = 2; TensorShapeProto.dim = 1; Dimension.dim_value = 1, .dim_param = 2.
_Field = tuple[int, int, bytes]  # field number, wire type, value (for length-delimited ones, the content)


def symbolic_sizes(model: bytes) -> bytes:
    """The serialised ONNX `model` with the input's height and width (dims 2, 3) and each output's cell count
    (dim 1) made symbolic, each its own named dimension, and the graph's recorded shapes of inner tensors
    (value_info, only hints, all for a 640x640 input) left out; everything else byte for byte as it was."""

    def value_info(data: bytes, dims: tuple[int, ...]) -> bytes:
        name = _name(data)

        def shape(content: bytes) -> bytes:  # each dim i in `dims` becomes dim_param "<name>_<i>"
            return _serialise([(f, w, _serialise([(2, 2, f"{name}_{i}".encode())]) if f == 1 and i in dims else v)
                               for i, (f, w, v) in enumerate(_parse(content))])

        return _edit(_parse(data), 2, lambda typ: _edit(_parse(typ), 1, lambda tensor: _edit(_parse(tensor), 2,
                                                                                             shape)))

    def graph(data: bytes) -> bytes:
        fields = _parse(data)
        if sum(1 for f, w, v in fields if f == 11 and w == 2 and _name(v) == "input") != 1:
            raise ValueError("the YuNet model has no single input named 'input'")
        return _serialise([(f, w, value_info(v, (2, 3)) if f == 11 and w == 2 and _name(v) == "input" else
                            value_info(v, (1,)) if f == 12 and w == 2 else v)
                           for f, w, v in fields if f != 13])  # the inner tensors' shapes (640-based) dropped

    return _edit(_parse(model), 7, graph)


def _name(value_info: bytes) -> str:
    return next((v.decode() for f, w, v in _parse(value_info) if f == 1 and w == 2), "")


def _edit(fields: list[_Field], number: int, change: Any) -> bytes:
    """`fields` serialised, each length-delimited field `number` replaced by `change(its content)`."""
    return _serialise([(f, w, change(v) if f == number and w == 2 else v) for f, w, v in fields])


def _varint(data: bytes, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if pos >= len(data):
            raise ValueError("truncated protocol buffer")
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            return value, pos


def _encode_varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte, value = value & 0x7F, value >> 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def _parse(data: bytes) -> list[_Field]:
    fields: list[_Field] = []
    pos = 0
    while pos < len(data):
        key, pos = _varint(data, pos)
        number, wire = key >> 3, key & 7
        if wire == 0:
            start = pos
            _, pos = _varint(data, pos)
            fields.append((number, wire, data[start:pos]))
        elif wire == 2:
            length, pos = _varint(data, pos)
            if pos + length > len(data):
                raise ValueError("truncated protocol buffer")
            fields.append((number, wire, data[pos:pos + length]))
            pos += length
        elif wire in (1, 5):
            size = 8 if wire == 1 else 4
            fields.append((number, wire, data[pos:pos + size]))
            pos += size
        else:
            raise ValueError(f"unsupported protocol buffer wire type {wire}")
    return fields


def _serialise(fields: list[_Field]) -> bytes:
    out = bytearray()
    for number, wire, value in fields:
        out += _encode_varint(number << 3 | wire)
        if wire == 2:
            out += _encode_varint(len(value))
        out += value
    return bytes(out)
