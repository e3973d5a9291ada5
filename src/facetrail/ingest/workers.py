"""Vision worker processes, with a time limit per item.

Images are analysed outside the ingesting process, so that a pathological file can be stopped: in a pool of
processes (one per core for dlib, which holds the GIL), or in one process whose threads analyse a chunk of
images at once (for the pipelines that compute outside the GIL: one interpreter and one set of libraries
instead of one per core), a bounded window of chunks in flight. An item whose analysis outlives the time limit
is reported as an error and its worker is killed: the pool is replaced and the other items in flight are
submitted again, so one pathological file costs the batch the time limit and a restart, never a hang. A worker
that dies (a crash in native code, the kernel's OOM killer) breaks the pool the same way: which item killed it
is unknown, so the items that were in flight run again one at a time in a new pool, and the one that breaks it
alone is reported (as is an overrunning chunk's: each of its items runs again alone).

A worker exits when the process that started it dies, even by SIGKILL (which runs no clean-up): otherwise
the workers of a killed ingestion, and the multiprocessing resource tracker they keep open, would live on.

A command that is about to ingest can start its vision processes ahead (`prestart`), models loading, while it
imports everything else; its WorkerPool then takes them over, or they are stopped (`discard_prestarted`).
"""

from __future__ import annotations

import atexit
import logging
import multiprocessing
import os
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from concurrent.futures.process import BrokenProcessPool
from contextlib import contextmanager
from typing import Generic, TypeVar

from facetrail.errors import MediaError
from facetrail.ingest import photo
from facetrail.ingest.photo import ImageAnalysis
from facetrail.vision.backend import VisionConfig, analyses_in_threads

Job = TypeVar("Job")
Outcome = ImageAnalysis | BaseException
PARENT_POLL_S = 0.5
CHUNK_PER_THREAD = 4
"""Images handed to a threaded vision process at a time, per thread: its threads take them as they come free, and
wait for each other only at the chunk's end (with one image per thread, each image waited for the slower one:
measured about 10% fewer images/s on LFW)."""
CHUNK_BYTES = 32 * 2 ** 20
"""A chunk also closes once its files hold this much (large photos): what is in flight stays bounded in memory."""


def exit_with_parent(parent: int, poll_s: float = PARENT_POLL_S) -> None:
    """In a worker process: exit as soon as the process `parent` that started it is gone (its parent id changes
    when it is re-parented). A watch thread, because a worker blocked waiting for work never notices by itself.
    The parent's id comes from the parent: read here, it would already be the new parent's when the parent died
    while this worker was starting."""

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(poll_s)
        os._exit(1)  # no clean-up to run: the work it held was the dead parent's

    threading.Thread(target=watch, name="exit-with-parent", daemon=True).start()


def end_without_teardown() -> None:
    """Registered at exit in a worker: end the process once its work is done, without the interpreter's teardown
    (the inference runtimes' destructors, the modules): about 70 ms, which an ingestion waited for before its last
    commit. A worker keeps nothing to save: its results were sent as they were made (through a pipe, written
    synchronously), and it writes no file. What it printed is flushed first."""
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        if stream is not None:
            stream.flush()
    os._exit(0)


def init_worker(parent: int, config: VisionConfig, threads: int = 1) -> None:
    """Process-pool initializer of the vision workers."""
    exit_with_parent(parent)
    atexit.register(end_without_teardown)  # runs before the exit handlers registered earlier, and skips them
    photo.init_worker(config, threads)


@contextmanager
def _main_script_hidden() -> Iterator[None]:
    """While worker processes are started: a spawned process first runs the parent's main script again (to find
    what the parent defined there), unless the parent was started as a module (`python -m`). The `facetrail`
    console script would thereby import the whole command line into every vision worker, which needs none of
    it (some 70 MiB and a second of start-up each), so its path is hidden meanwhile. The workers run functions
    of facetrail's modules only, never one of the main script."""
    main = sys.modules.get("__main__")
    path = getattr(main, "__file__", None)
    if main is None or path is None or getattr(main, "__spec__", None) is not None:
        yield
        return
    del main.__file__
    try:
        yield
    finally:
        main.__file__ = path


def pool_shape(config: VisionConfig, workers: int) -> tuple[int, int]:
    """(processes, threads in each) for `workers` analyses at once with `config`'s backend: one process of
    `workers` threads for a backend that computes outside the GIL, else `workers` processes of one thread."""
    threads = workers if analyses_in_threads(config) else 1
    return workers // threads, threads


def _executor(processes: int, config: VisionConfig, threads: int) -> ProcessPoolExecutor:
    """A pool of vision processes; they start on the first submits."""
    return ProcessPoolExecutor(processes, mp_context=multiprocessing.get_context("spawn"), initializer=init_worker,
                               initargs=(os.getpid(), config, threads))


def _stop_executor(pool: ProcessPoolExecutor, *, kill: bool) -> None:
    if kill:
        # The executor has no public way to stop a busy worker before Python 3.14's terminate_workers().
        for process in list(getattr(pool, "_processes", {}).values()):
            process.kill()
    pool.shutdown(wait=True, cancel_futures=True)


class _Prestarted:
    """The vision pool that `prestart` started, and the shape it has, until a WorkerPool takes it."""

    pool: ProcessPoolExecutor | None = None
    shape: tuple[int, VisionConfig, int] | None = None


def prestart(config: VisionConfig, workers: int) -> None:
    """Start the vision processes of an ingestion about to begin in this process, with `workers` analyses at once,
    and load their models, so that this start-up overlaps the ingesting process's own (the command line's import:
    BENCHMARKS.md, "Ingestion throughput"). The ingestion's WorkerPool takes them when its shape and config are the
    same; otherwise they are stopped then, and `discard_prestarted` stops them if no ingestion comes."""
    discard_prestarted()
    processes, threads = pool_shape(config, workers)
    pool = _executor(processes, config, threads)
    with _main_script_hidden():  # each submit may start a process
        for _ in range(processes):
            pool.submit(photo.load_models)
    _Prestarted.pool, _Prestarted.shape = pool, (processes, config, threads)


def _take_prestarted(processes: int, config: VisionConfig, threads: int) -> ProcessPoolExecutor | None:
    """The prestarted pool if it has this shape (it is then no longer prestarted); a pool of another shape, or a
    broken one, is stopped."""
    pool, shape = _Prestarted.pool, _Prestarted.shape
    _Prestarted.pool = _Prestarted.shape = None
    # A pool whose process died while it started (the executor has no public word for it) is not taken either.
    if pool is not None and (shape != (processes, config, threads) or getattr(pool, "_broken", False)):
        _stop_executor(pool, kill=True)
        return None
    return pool


def discard_prestarted() -> None:
    """Stop the prestarted vision processes that no ingestion took (the command ended without one)."""
    pool, _Prestarted.pool, _Prestarted.shape = _Prestarted.pool, None, None
    if pool is not None:
        _stop_executor(pool, kill=True)


def chunked(jobs: Iterator[Job], size: int, max_bytes: int, weight: Callable[[Job], int]) -> Iterator[list[Job]]:
    """`jobs` in order, in lists of `size` at most, each closed as soon as its jobs weigh `max_bytes` or more."""
    chunk: list[Job] = []
    held = 0
    for job in jobs:
        chunk.append(job)
        held += weight(job)
        if len(chunk) >= size or held >= max_bytes:
            yield chunk
            chunk, held = [], 0
    if chunk:
        yield chunk


class WorkerPool(Generic[Job]):
    """`workers` processes, each analysing up to `threads` images at once in threads of its own (for a backend
    that computes outside the GIL, vision/backend.py `analyses_in_threads`: one process of two threads uses two
    cores with one interpreter and one set of libraries, about half the memory of two processes).

    A threaded process is handed a chunk of CHUNK_PER_THREAD images per thread at a time (fewer when they are
    large, CHUNK_BYTES; a single-threaded one an image at a time), two chunks per process in flight. The time
    limit applies to a chunk as to an image (it catches hangs: images take milliseconds to seconds). A chunk that
    outlives it (or whose process dies) cannot tell which of its images is at fault: every image in flight is run
    again alone, with the time limit, so a good image is never lost to a bad one."""

    def __init__(self, workers: int, config: VisionConfig, time_limit: float, data: Callable[[Job], bytes],
                 threads: int = 1) -> None:
        self.workers = workers
        self.threads = max(1, threads)
        self.chunk = 1 if self.threads == 1 else CHUNK_PER_THREAD * self.threads
        self.config = config
        self.time_limit = time_limit
        self.data = data
        self._pool: ProcessPoolExecutor | None = None
        self._window: deque[tuple[list[Job], Future[list[Outcome]]]] = deque()
        self._ready: deque[tuple[Job, Outcome]] = deque()
        # Images in flight when a worker died or a chunk overran: any of them may be at fault, so each is run
        # again alone.
        self._suspects: deque[Job] = deque()

    def analyse(self, jobs: Iterator[Job]) -> Iterator[tuple[Job, Outcome]]:
        """Each job with its analysis (or the error that replaced it), in submission order (a job run again
        alone comes when it is done)."""
        self._start()
        finished = submitted = False
        try:
            for chunk in chunked(jobs, self.chunk, CHUNK_BYTES, lambda job: len(self.data(job))):
                submitted = True
                self._window.append((chunk, self._submit(chunk)))
                while self._suspects or self._ready or len(self._window) >= 2 * self.workers:
                    yield from self._next()
            while self._window or self._suspects or self._ready:
                yield from self._next()
            finished = True
        finally:
            # Abandoned half-way (the caller failed or was interrupted): do not wait for what is in flight. With
            # nothing submitted (every image already stored, say), there is nothing to wait for but a prestarted
            # pool's warm-up.
            self._stop(kill=not finished or not submitted)

    def _next(self) -> Iterator[tuple[Job, Outcome]]:
        if self._ready:
            yield self._ready.popleft()
            return
        if self._suspects:
            job = self._suspects.popleft()
            yield job, self._wait_alone(job)
            return
        chunk, future = self._window.popleft()
        outcomes = self._wait(chunk, future)
        if outcomes is not None:
            self._ready.extend(zip(chunk, outcomes, strict=True))

    def _wait(self, chunk: list[Job], future: Future[list[Outcome]]) -> list[Outcome] | None:
        """The chunk's outcomes; None when its images became suspects (its process died or it overran)."""
        try:
            return future.result(timeout=self.time_limit)
        except FutureTimeout:
            if len(chunk) == 1:  # the oldest image in flight ran all this time: it is the one stuck
                return [self._overran()]
            self._all_suspect(chunk)
            return None
        except BrokenProcessPool:
            self._all_suspect(chunk)
            return None
        except Exception as exc:  # one bad chunk must never stop the batch
            return [exc] * len(chunk)

    def _all_suspect(self, chunk: list[Job]) -> None:
        """Which image killed the process, or which of a chunk's is stuck, is unknown: every image in flight
        runs again alone, with nothing else in flight meanwhile (the caller submits nothing while there are
        suspects), so that the next failure names its image."""
        self._suspects.extend([*chunk, *(job for c, _ in self._window for job in c)])
        self._window.clear()
        self._restart()

    def _wait_alone(self, job: Job) -> Outcome:
        try:
            return self._submit([job]).result(timeout=self.time_limit)[0]
        except FutureTimeout:
            return self._overran()
        except BrokenProcessPool:
            self._restart()
            return MediaError("the analysis process died on this file")
        except Exception as exc:
            return exc

    def _overran(self) -> Outcome:
        """The image being waited for, alone in its chunk, outlived the time limit: the processes are killed,
        and the chunks in flight start again in new ones."""
        others = [c for c, _ in self._window]
        self._restart()
        self._window = deque((c, self._submit(c)) for c in others)
        return MediaError(f"analysis took longer than {self.time_limit:g} s (the per-item time limit) "
                          "and was stopped")

    def _submit(self, chunk: list[Job]) -> Future[list[Outcome]]:
        assert self._pool is not None
        try:
            with _main_script_hidden():  # a submit may start a worker process
                return self._pool.submit(photo.analyze_many, photo.analyze_in_worker,
                                         [self.data(job) for job in chunk])
        except BrokenProcessPool as exc:  # a worker died since the last result was read: _wait deals with it
            failed: Future[list[Outcome]] = Future()
            failed.set_exception(exc)
            return failed

    def _restart(self) -> None:
        """Kill every worker (the stuck or broken one among them) and start a new pool."""
        self._stop(kill=True)
        self._start()

    def _start(self) -> None:
        self._pool = (_take_prestarted(self.workers, self.config, self.threads)
                      or _executor(self.workers, self.config, self.threads))

    def _stop(self, *, kill: bool) -> None:
        pool, self._pool = self._pool, None
        if pool is not None:
            _stop_executor(pool, kill=kill)
