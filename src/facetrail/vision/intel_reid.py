"""Intel's face-reidentification-retail-0095 recogniser (Open Model Zoo, Apache-2.0), run with OpenVINO.

Input: one 128x128 BGR face (pixel values 0-255), aligned so that its five points (eye centres, nose tip,
mouth corners, as YuNet gives them) fall on the model's reference points; output: 256 values, compared by
cosine. Templates are L2-normalised, so the index's Euclidean distance d relates to cosine similarity c by
d^2 = 2 - 2c.

The reference points are Open Model Zoo's, given there as fractions of a 96x112 crop (the SphereFace layout)
and scaled here to the 128x128 input. The fit is a similarity (rotation, uniform scale, shift): the face keeps
its proportions. This was measured against fitting the ArcFace template scaled to 128 px on LFW View 1
(BENCHMARKS.md, "Vision pipelines").
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any

import numpy as np
from numpy.typing import NDArray
from PIL import Image

from facetrail.errors import FacetrailError, InvalidValueError
from facetrail.vision.alignment import similarity_transform, warp_affine
from facetrail.vision.model_files import verified
from facetrail.vision.runtimes import openvino
from facetrail.vision.types import Detection, Template

SIZE = 128
MODEL_XML = "face-reidentification-retail-0095.xml"
MODEL_BIN = "face-reidentification-retail-0095.bin"
_REFERENCE_96x112 = ((30.2946, 51.6963), (65.5318, 51.5014), (48.0252, 71.7366), (33.5493, 92.3655),
                     (62.7299, 92.2041))
REFERENCE_128: tuple[tuple[float, float], ...] = tuple(
    (x / 96 * SIZE, y / 112 * SIZE) for x, y in _REFERENCE_96x112)
"""Where the eye on the image's left, the other eye, the nose tip and the mouth corners go in the input."""


_BINDINGS = threading.Lock()
_bindings_primed = False


def _prime_numpy_bindings(request: Any) -> None:
    """Set up OpenVINO's numpy bindings once per process, one thread at a time. Their set-up on first use (pybind11's
    numpy API, reached by the first `infer` of each request) deadlocks when two threads reach it at once: one holds a
    one-time initialisation guard while it waits for the GIL, the other holds the GIL while it waits for the guard.
    It hung a vision process's two analysing threads at their first images, about one ingestion in fifty, until
    the chunk's time limit."""
    global _bindings_primed
    with _BINDINGS:  # waiting on it releases the GIL: the thread setting the bindings up can take it back
        if not _bindings_primed:
            _ = request.get_input_tensor(0).data  # a numpy view of the input: the bindings' first use
            _bindings_primed = True


COMPILE_OPTIONS: dict[str, Any] = {
    "PERFORMANCE_HINT": "LATENCY",
    # Not pinned to a core: OpenVINO pins each process's inference thread to the same first core, so two vision
    # processes took turns on one core while the other stood idle.
    "ENABLE_CPU_PINNING": False,
    # Without the generated kernels ("snippets") for the model's element-wise runs: compiling takes about 117 ms
    # instead of 150 (once per analysing thread, on every vision process's start and a server's first search),
    # and a face takes as long. The templates are bit-identical (tests/vision/test_pipelines.py), so the
    # calibration holds.
    "SNIPPETS_MODE": "DISABLE",
    # The precision is OpenVINO's choice: bf16 on a CPU that has it (AVX512-BF16, AMX), f32 elsewhere. On LFW View 2
    # (7,701 faces, ad hoc) bf16 took 5.7 ms of processor time a face against 10.8 in f32, for the same accuracy
    # (99.25% against 99.27%) and false-match rates at the bands within 2% of each other; a face's templates in the
    # two are 0.018 apart at the median, 0.035 at most, so a collection may mix them (tests/vision/test_pipelines.py).
}


def network_input(crop: NDArray[np.uint8]) -> NDArray[np.float32]:
    """An aligned RGB crop as the network takes it: BGR, channels first, a batch of one, float."""
    return np.ascontiguousarray(crop[..., ::-1].transpose(2, 0, 1)[None], dtype=np.float32)


class IntelReidEmbedder:
    """256-d templates from YuNet-landmarked faces. One OpenVINO request at a time per instance (a lock);
    `threads` is OpenVINO's thread count (one by default: ingestion runs one vision process per core)."""

    template_dim = 256

    def __init__(self, *, threads: int = 1, reference: Sequence[tuple[float, float]] = REFERENCE_128) -> None:
        self.threads = threads
        self.reference = np.array(reference, dtype=np.float64)
        self._lock = threading.Lock()
        self._request: Any = None

    def load(self) -> Any:
        with self._lock:
            if self._request is None:
                ov = openvino()  # without its usage reporting (runtimes.py)
                xml, weights = verified(MODEL_XML), verified(MODEL_BIN)
                core = ov.Core()
                model = core.read_model(str(xml), str(weights))
                compiled = core.compile_model(model, "CPU", {**COMPILE_OPTIONS,
                                                             "INFERENCE_NUM_THREADS": self.threads})
                self._request = compiled.create_infer_request()
                _prime_numpy_bindings(self._request)
            return self._request

    def aligned(self, image: Image.Image, detection: Detection) -> NDArray[np.uint8]:
        """The face warped onto the reference points: a (128, 128, 3) RGB crop."""
        if detection.landmark_layout != "yunet5" or len(detection.landmarks) != 5:
            raise InvalidValueError("landmarks", f"this recogniser aligns on YuNet's five points, not on "
                                                 f"{detection.landmark_layout!r} landmarks")
        points = np.array([(p.x, p.y) for p in detection.landmarks], dtype=np.float64)
        return warp_affine(image, similarity_transform(points, self.reference), (SIZE, SIZE))

    def embed(self, pixels: NDArray[np.uint8], detections: Sequence[Detection]) -> list[Template]:
        if not detections:
            return []
        image = Image.fromarray(np.ascontiguousarray(pixels))
        crops = [self.aligned(image, det) for det in detections]
        request = self.load()
        templates = []
        for crop in crops:
            batch = network_input(crop)
            with self._lock:
                request.infer({0: batch})
                vector = np.array(request.get_output_tensor(0).data, dtype=np.float32).reshape(-1)
            norm = float(np.linalg.norm(vector))
            if vector.shape != (self.template_dim,) or not np.isfinite(norm) or norm < 1e-12:
                raise FacetrailError(f"the recogniser returned an unusable embedding ({vector.shape}, norm {norm})")
            templates.append((vector / norm).astype(np.float32))
        return templates
