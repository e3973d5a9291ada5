"""Template extraction for evaluation: facetrail's pipeline and the peer (face_recognition) pipeline.

Both run on the same files, in worker processes, and both pick the same face when a photo holds several:
the one whose box centre is nearest the image centre (LFW photos are centred on their subject). A photo
where no face is found has no template (a failure to enrol) and is reported as such.
"""

from __future__ import annotations

import hashlib
import multiprocessing
import os
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from facetrail.ingest.workers import exit_with_parent
from facetrail.vision.backend import VisionConfig
from facetrail.vision.yunet import INPUT_POLICY

Progress = Callable[[int, int], None]


@dataclass
class Templates:
    """Templates for `keys` (NaN rows where enrolment failed) and the detector that found each face."""

    pipeline: str
    model_id: str
    keys: list[str]
    vectors: NDArray[np.float32]
    detectors: list[str]

    @property
    def enrolled(self) -> NDArray[np.bool_]:
        return np.asarray(~np.isnan(self.vectors).any(axis=1))

    def index_of(self) -> dict[str, int]:
        return {k: i for i, k in enumerate(self.keys)}


def central(boxes: list[tuple[int, int, int, int]], width: int, height: int) -> int:
    """Index of the (left, top, right, bottom) box whose centre is nearest the image centre."""
    cx, cy = width / 2, height / 2
    return min(range(len(boxes)), key=lambda i: ((boxes[i][0] + boxes[i][2]) / 2 - cx) ** 2
               + ((boxes[i][1] + boxes[i][3]) / 2 - cy) ** 2)


class _Worker:
    extract: Callable[[Path], tuple[NDArray[np.float32] | None, str]] | None = None


def _init_facetrail(config: VisionConfig) -> None:
    from facetrail.media.image import decode_image
    from facetrail.vision.backend import load_backend

    backend = load_backend(config)

    def extract(path: Path) -> tuple[NDArray[np.float32] | None, str]:
        pixels = decode_image(path.read_bytes(), max_pixels=config.max_image_pixels).pixels
        found = backend.detect(pixels)
        if not found:
            return None, "none"
        pick = found[central([(d.box.left, d.box.top, d.box.right, d.box.bottom) for d in found],
                             pixels.shape[1], pixels.shape[0])]
        return backend.embed(pixels, [pick])[0], pick.detector

    _Worker.extract = extract


def _init_peer(_config: VisionConfig) -> None:
    import face_recognition  # the peer: installed with --no-deps next to dlib-bin (see Makefile)

    def extract(path: Path) -> tuple[NDArray[np.float32] | None, str]:
        image = face_recognition.load_image_file(str(path))
        locations = face_recognition.face_locations(image)  # its defaults: HOG, upsampled once
        if not locations:
            return None, "none"
        boxes = [(left, top, right, bottom) for top, right, bottom, left in locations]
        pick = locations[central(boxes, image.shape[1], image.shape[0])]
        return np.asarray(face_recognition.face_encodings(image, [pick])[0], dtype=np.float32), "hog"

    _Worker.extract = extract


def _extract(path: str) -> tuple[NDArray[np.float32] | None, str]:
    assert _Worker.extract is not None
    try:
        return _Worker.extract(Path(path))
    except Exception as exc:  # an unreadable image is a failure to enrol, reported, not a crash
        return None, f"error: {type(exc).__name__}"


def extract_templates(pipeline: str, paths: list[Path], keys: list[str], *, config: VisionConfig, model_id: str,
                      workers: int, cache: Path | None = None, progress: Progress | None = None) -> Templates:
    """Templates of `paths` with pipeline 'facetrail' or 'peer', cached on disk by pipeline, model, files and,
    for the YuNet pipelines (model ids 'yunet-...'), how YuNet sizes photos (so dlib's caches stay valid)."""
    policy = [INPUT_POLICY] if model_id.startswith("yunet-") else []
    digest = hashlib.sha256("\n".join([pipeline, model_id, repr(config), *policy, *map(str, paths)]).encode()
                            ).hexdigest()
    cached = cache / f"{pipeline}-{model_id}-{digest[:16]}.npz" if cache else None
    if cached is not None and cached.exists():
        data = np.load(cached, allow_pickle=False)
        return Templates(pipeline, model_id, list(keys), data["vectors"], [str(d) for d in data["detectors"]])
    init: Callable[[VisionConfig], None] = {"facetrail": _init_facetrail, "peer": _init_peer}[pipeline]
    results = list(_run(init, config, [str(p) for p in paths], workers, progress))
    dim = next((len(v) for v, _ in results if v is not None), 128)
    vectors = np.full((len(paths), dim), np.nan, dtype=np.float32)
    for i, (vector, _) in enumerate(results):
        if vector is not None:
            vectors[i] = vector
    templates = Templates(pipeline, model_id, list(keys), vectors, [d for _, d in results])
    if cached is not None:
        cached.parent.mkdir(parents=True, exist_ok=True)
        np.savez(cached, vectors=vectors, detectors=np.array(templates.detectors))
    return templates


def _init_worker(parent: int, init: Callable[[VisionConfig], None], config: VisionConfig) -> None:
    exit_with_parent(parent)  # a killed benchmark leaves no worker behind
    init(config)


def _run(init: Callable[[VisionConfig], None], config: VisionConfig, paths: list[str], workers: int,
         progress: Progress | None) -> Iterator[tuple[Any, str]]:
    if workers <= 1:
        init(config)
        for i, path in enumerate(paths):
            yield _extract(path)
            if progress:
                progress(i + 1, len(paths))
        return
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(workers, mp_context=context, initializer=_init_worker,
                             initargs=(os.getpid(), init, config)) as pool:
        for i, result in enumerate(pool.map(_extract, paths, chunksize=16)):
            yield result
            if progress:
                progress(i + 1, len(paths))
