"""The analysis of one photo, as a vision worker process runs it: decode, detect, align, embed, crop.

Workers receive bytes and return plain data, so nothing but the main process touches the store. This module
imports only what that needs (no settings, store, video decoding or command line), so that every worker
process stays small: the settings module alone weighs some 20 MiB.
"""

from __future__ import annotations

import pickle
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from facetrail.errors import FacetrailError
from facetrail.ingest.report import cause_of
from facetrail.media.image import decode_image
from facetrail.vision.backend import VisionBackend, VisionConfig, load_backend
from facetrail.vision.pipeline import AnalyzedFace, analyze_faces


@dataclass(frozen=True)
class ImageAnalysis:
    format: str
    width: int
    height: int
    faces: list[AnalyzedFace]


def analyze_photo(backend: VisionBackend, config: VisionConfig, data: bytes) -> ImageAnalysis:
    image = decode_image(data, max_pixels=config.max_image_pixels)
    faces = analyze_faces(backend, image.pixels, crop_size=config.crop_size)
    return ImageAnalysis(format=image.format, width=image.width, height=image.height, faces=faces)


class _WorkerState:
    config: VisionConfig | None = None
    threads: ThreadPoolExecutor | None = None
    thread_count = 1
    local = threading.local()


LOAD_WAIT_S = 60.0
"""How long `load_models` waits for every analysing thread to have taken its share (they take it at once)."""


def init_worker(config: VisionConfig, threads: int = 1) -> None:
    """Process-pool initializer. Each analysing thread of the process gets its own backend (its models load on
    first use, or in `load_models`), so that no two threads ever share a model's working state."""
    _WorkerState.config = config
    _WorkerState.thread_count = threads
    _WorkerState.threads = (ThreadPoolExecutor(threads, thread_name_prefix="vision") if threads > 1 else None)


def load_models() -> None:
    """In a worker process: load the models of every analysing thread now rather than with its first image (the
    warm-up of a prestarted pool, workers.py), and run them once where the backend can (`warm_up`, on a picture
    that holds no one): the runtimes' first run costs more than the next (buffers, kernels). Each thread loads its
    own and waits at a barrier until all have taken theirs, so that no thread takes two. A model that fails to load
    is left to fail again, and be reported, with the first image.

    dlib's pipeline has no warm-up: on a picture without a face it would go on to its CNN detector, which takes
    seconds and about a gigabyte of memory."""
    pool = _WorkerState.threads
    if pool is None:
        _load_quietly()
        return
    barrier = threading.Barrier(_WorkerState.thread_count)

    def load() -> None:
        _load_quietly()
        try:
            barrier.wait(LOAD_WAIT_S)
        except threading.BrokenBarrierError:
            pass

    for done in [pool.submit(load) for _ in range(_WorkerState.thread_count)]:
        done.result()


def _load_quietly() -> None:
    try:
        backend = _backend()
        for step in ("load", "warm_up"):
            run = getattr(backend, step, None)
            if run is not None:
                run()
    except Exception:  # noqa: S110 - the first image reports it
        pass


def _backend() -> VisionBackend:
    backend: VisionBackend | None = getattr(_WorkerState.local, "backend", None)
    if backend is None:
        assert _WorkerState.config is not None, "init_worker was not run in this process"
        backend = _WorkerState.local.backend = load_backend(_WorkerState.config)
    return backend


def analyze_in_worker(data: bytes) -> ImageAnalysis:
    config = _WorkerState.config
    assert config is not None, "init_worker was not run in this process"
    return analyze_photo(_backend(), config, data)


def attempt(analyze: Callable[[bytes], ImageAnalysis], data: bytes) -> ImageAnalysis | BaseException:
    """The analysis of `data`, or the error that replaced it: one bad image must never stop the others."""
    try:
        return analyze(data)
    except Exception as exc:
        return exc


def analyze_many(analyze: Callable[[bytes], ImageAnalysis], items: list[bytes]) -> list[ImageAnalysis | BaseException]:
    """In a worker process: `analyze` each item, on the process's analysing threads; each item's analysis or the
    error that replaced it, in order (`analyze` is analyze_in_worker, passed in so that a test can swap it).

    The threads take the largest files first: the chunk ends when its last image does, and a large photo taken
    last would leave the other threads idle meanwhile (in the samples, one photo takes ten times another). A file's
    size stands in for its analysis time, which grows with its pixels."""
    pool = _WorkerState.threads
    if pool is None:
        return [_sendable(attempt(analyze, data)) for data in items]
    # Even a single item goes to an analysing thread: their models are loaded (this thread's are not).
    largest_first = sorted(range(len(items)), key=lambda i: len(items[i]), reverse=True)
    futures = {i: pool.submit(attempt, analyze, items[i]) for i in largest_first}
    try:
        return [_sendable(futures[i].result()) for i in range(len(items))]
    except BaseException:  # interrupted: what has not started is not started
        for future in futures.values():
            future.cancel()
        raise


def _sendable(outcome: ImageAnalysis | BaseException) -> ImageAnalysis | BaseException:
    """The outcome as the process that asked for it can read it back. The results go back pickled, and an error
    that cannot be rebuilt from its pickle (a library's, whose constructor takes other arguments than it keeps)
    would break the pool there: every image in flight would be taken for a crash and run again alone. Such an
    error goes back as a FacetrailError that says what it was."""
    if not isinstance(outcome, BaseException):
        return outcome
    try:
        pickle.loads(pickle.dumps(outcome))  # noqa: S301 - made here, from an error of this process
    except Exception:
        return FacetrailError(cause_of(outcome))
    return outcome
