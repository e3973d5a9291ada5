"""dlib's HOG or CNN (MMOD) detector, 5-point landmarks and 128-d ResNet encoder.

Weights come from the `face-recognition-models` package; they are loaded lazily, once, under a lock.
Templates are compared by Euclidean distance (dlib's own threshold for "same person" is 0.6).
"""

from __future__ import annotations

import os
import queue
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from enum import StrEnum
from typing import Any

import numpy as np
from numpy.typing import NDArray

from facetrail.errors import InvalidValueError
from facetrail.media.geometry import Box
from facetrail.vision.calibration import Calibration, load_calibration
from facetrail.vision.types import Detection, Point, Template


class DetectorKind(StrEnum):
    HOG = "hog"
    CNN = "cnn"

    @classmethod
    def _missing_(cls, value: object) -> DetectorKind:
        raise InvalidValueError("detector", f"unknown detector {value!r}; choose 'hog' or 'cnn'")


def upsample_times(width: int, height: int, *, budget_pixels: int, max_upsample: int) -> int:
    """How often to double the image before detection: as often as the result stays in budget.

    The HOG window is 80x80 px, so each doubling halves the smallest findable face. Small photos
    (LFW's 250x250, thumbnails) get up to `max_upsample` doublings, large photos none.
    """
    times = 0
    pixels = width * height
    while times < max_upsample and pixels * 4 ** (times + 1) <= budget_pixels:
        times += 1
    return times


class DlibBackend:
    """The default vision backend; one instance per process, safe to call from many threads.

    dlib's detectors and networks keep working state inside the model objects, so two threads must never run
    the same one at once (the server's request threads did, and corrupted the heap). Each call takes a whole
    set of models from a small pool, one set per core at most, created on first need: searches run in
    parallel up to the number of cores, and memory stays bounded whatever the number of threads."""

    template_dim = 128

    def __init__(self, detector: DetectorKind = DetectorKind.HOG, *, upsample_budget_pixels: int = 4_000_000,
                 max_upsample: int = 1, fallback: bool = True, jitters: int = 1) -> None:
        self.detector = DetectorKind(detector)
        self.fallback = fallback
        self.upsample_budget_pixels = upsample_budget_pixels
        self.max_upsample = max_upsample
        self.jitters = jitters
        self._lock = threading.Lock()
        self._idle: queue.LifoQueue[dict[str, Any]] = queue.LifoQueue()
        self._created = 0
        self._max_sets = max(1, os.cpu_count() or 1)

    @property
    def model_id(self) -> str:
        return "dlib-resnet-v1"

    def calibration(self) -> Calibration | None:
        """The calibration shipped with facetrail (made by `make bench-accuracy`)."""
        return load_calibration(self.model_id)

    def load(self) -> None:
        """Load one set of models now (a warm-up; calls load what they need anyway)."""
        with self._models():
            pass

    @contextmanager
    def _models(self) -> Iterator[dict[str, Any]]:
        """A set of models for this thread alone, returned to the pool afterwards."""
        try:
            models = self._idle.get_nowait()
        except queue.Empty:
            with self._lock:
                create = self._created < self._max_sets
                self._created += int(create)
            if not create:
                models = self._idle.get()
            else:
                try:
                    models = self._new_set()
                except BaseException:
                    with self._lock:
                        self._created -= 1  # the slot is free again for the next caller
                    raise
        try:
            yield models
        finally:
            self._idle.put(models)

    def _new_set(self) -> dict[str, Any]:
        import dlib
        import face_recognition_models as weights

        models: dict[str, Any] = {
            "landmarks": dlib.shape_predictor(weights.pose_predictor_five_point_model_location()),
            "encoder": dlib.face_recognition_model_v1(weights.face_recognition_model_location()),
            "hog": dlib.get_frontal_face_detector(),
        }
        if self.detector is DetectorKind.CNN or self.fallback:
            models["cnn"] = dlib.cnn_face_detection_model_v1(weights.cnn_face_detector_model_location())
        return models

    def detect(self, pixels: NDArray[np.uint8]) -> list[Detection]:
        """Faces, largest first. With `fallback`, a photo where the configured detector finds nothing is
        tried again upsampled once more, then with the CNN detector (each within a pixel budget)."""
        height, width = pixels.shape[:2]
        times = upsample_times(width, height, budget_pixels=self.upsample_budget_pixels,
                               max_upsample=self.max_upsample)
        with self._models() as models:
            found = self._run(models, self.detector, pixels, times)
            if not found and self.fallback:
                for kind, extra in ((DetectorKind.HOG, 1), (DetectorKind.CNN, 0)):
                    budget = self.upsample_budget_pixels * (4 if kind is DetectorKind.HOG else 1)
                    if kind is self.detector and extra == 0 or width * height * 4 ** (times + extra) > budget:
                        continue
                    found = self._run(models, kind, pixels, times + extra)
                    if found:
                        break
            return self._landmarked(models, pixels, found)

    def landmarked(self, pixels: NDArray[np.uint8], found: Sequence[tuple[Box, float, str]]) -> list[Detection]:
        """Detections from another detector's (box, score, detector name), with dlib's 5-point landmarks
        predicted inside each box: what `embed` aligns on."""
        with self._models() as models:
            return self._landmarked(models, pixels, [(_rect(box), score, kind) for box, score, kind in found])

    @staticmethod
    def _run(models: dict[str, Any], kind: DetectorKind, pixels: NDArray[np.uint8],
             times: int) -> list[tuple[Any, float, str]]:
        if kind is DetectorKind.CNN:
            return [(d.rect, float(d.confidence), kind.value) for d in models["cnn"](pixels, times)]
        rects, scores, _ = models["hog"].run(pixels, times)
        return [(r, float(s), kind.value) for r, s in zip(rects, scores, strict=True)]

    @staticmethod
    def _landmarked(models: dict[str, Any], pixels: NDArray[np.uint8],
                    found: list[tuple[Any, float, str]]) -> list[Detection]:
        height, width = pixels.shape[:2]
        detections = []
        for rect, score, kind in found:
            box = Box(rect.left(), rect.top(), rect.right() + 1, rect.bottom() + 1).clipped(width, height)
            if box.width < 2 or box.height < 2:
                continue
            shape = models["landmarks"](pixels, _rect(box))
            points = tuple(Point(float(p.x), float(p.y)) for p in shape.parts())
            detections.append(Detection(box=box, landmarks=points, score=score, detector=kind))
        detections.sort(key=lambda d: d.box.area, reverse=True)
        return detections

    def embed(self, pixels: NDArray[np.uint8], detections: Sequence[Detection]) -> list[Template]:
        if not detections:
            return []
        import dlib

        shapes = dlib.full_object_detections()
        for det in detections:
            # Rebuild dlib's shape from our landmarks rather than running the predictor twice.
            parts = dlib.points([dlib.point(round(p.x), round(p.y)) for p in det.landmarks])
            shapes.append(dlib.full_object_detection(_rect(det.box), parts))
        with self._models() as models:
            vectors = models["encoder"].compute_face_descriptor(pixels, shapes, self.jitters)
        return [np.asarray(v, dtype=np.float32) for v in vectors]


def _rect(box: Box) -> Any:
    import dlib

    return dlib.rectangle(box.left, box.top, box.right - 1, box.bottom - 1)
