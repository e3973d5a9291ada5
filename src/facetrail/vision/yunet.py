"""The YuNet face detector (ONNX, shipped in vision/models/), run with onnxruntime on a downscaled copy.

The model takes a fixed 1x3x640x640 BGR input (pixel values 0-255, no normalisation). The image is scaled so
its longer side is 640 px (small photos are enlarged, large ones reduced), placed in the top-left corner of a
black 640x640 canvas, and what the network finds is mapped back to the original image's pixels: boxes and the
five landmarks (the eye on the image's left, the other eye, nose tip, the mouth corner on the image's left, the
other mouth corner).

Decoding follows the model's anchor-free head: at each stride s (8, 16, 32) and grid cell (row r, column c),
score = sqrt(cls * obj); box centre ((c + dx) s, (r + dy) s), size (exp(dw) s, exp(dh) s); landmark k at
((c + kx_k) s, (r + ky_k) s). Overlapping boxes are then suppressed (IoU above 0.3, higher score kept).
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
from facetrail.vision.types import Detection, Point

INPUT = 640
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
                import onnxruntime as ort

                options = ort.SessionOptions()
                options.intra_op_num_threads = self.threads
                options.inter_op_num_threads = 1
                options.log_severity_level = 3
                self._session = ort.InferenceSession(str(verified(self.variant.file)), sess_options=options,
                                                     providers=["CPUExecutionProvider"])
            return self._session

    def detect(self, pixels: NDArray[np.uint8]) -> list[Detection]:
        """Faces in an upright RGB image (height, width, 3), largest first."""
        height, width = pixels.shape[:2]
        if height < 2 or width < 2:
            return []
        scale = INPUT / max(height, width)
        scaled_w, scaled_h = max(1, round(width * scale)), max(1, round(height * scale))
        image = Image.fromarray(np.ascontiguousarray(pixels))
        if (scaled_w, scaled_h) != (width, height):
            image = image.resize((scaled_w, scaled_h), Image.Resampling.BILINEAR)
        canvas = np.zeros((INPUT, INPUT, 3), dtype=np.float32)
        canvas[:scaled_h, :scaled_w] = np.asarray(image, dtype=np.float32)[..., ::-1]  # RGB -> BGR
        session = self.load()
        names = [o.name for o in session.get_outputs()]
        outputs = dict(zip(names, session.run(None, {"input": canvas.transpose(2, 0, 1)[None]}), strict=True))
        scores, boxes, points = _decode(outputs)
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


def _decode(outputs: dict[str, NDArray[np.float32]]) -> tuple[NDArray[np.float32], NDArray[np.float32],
                                                              NDArray[np.float32]]:
    """Scores (n,), boxes (n, 4) as x1, y1, x2, y2 and landmarks (n, 5, 2), in pixels of the 640 input."""
    all_scores, all_boxes, all_points = [], [], []
    for stride in STRIDES:
        cells = INPUT // stride
        cls = np.clip(outputs[f"cls_{stride}"][0, :, 0], 0, 1)
        obj = np.clip(outputs[f"obj_{stride}"][0, :, 0], 0, 1)
        bbox = outputs[f"bbox_{stride}"][0]
        kps = outputs[f"kps_{stride}"][0].reshape(-1, 5, 2)
        rows, cols = np.divmod(np.arange(cells * cells), cells)
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
