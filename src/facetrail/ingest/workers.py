"""Vision worker processes, with a time limit per item.

Images are analysed in a pool of processes (dlib holds the GIL), a bounded window of them in flight. An item
whose analysis outlives the time limit is reported as an error and its worker is killed: the pool is
replaced and the other items in flight are submitted again, so one pathological file costs the batch the
time limit and a restart, never a hang. A worker that dies (a crash in native code, the kernel's OOM killer)
breaks the pool the same way: which item killed it is unknown, so the items that were in flight run again one
at a time in a new pool, and the one that breaks it alone is reported.

A worker exits when the process that started it dies, even by SIGKILL (which runs no clean-up): otherwise
the workers of a killed ingestion, and the multiprocessing resource tracker they keep open, would live on.
"""

from __future__ import annotations

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
from facetrail.vision.backend import VisionConfig

Job = TypeVar("Job")
Outcome = ImageAnalysis | BaseException
PARENT_POLL_S = 0.5


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


def init_worker(parent: int, config: VisionConfig) -> None:
    """Process-pool initializer of the vision workers."""
    exit_with_parent(parent)
    photo.init_worker(config)


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


class WorkerPool(Generic[Job]):
    def __init__(self, workers: int, config: VisionConfig, time_limit: float, data: Callable[[Job], bytes]) -> None:
        self.workers = workers
        self.config = config
        self.time_limit = time_limit
        self.data = data
        self._pool: ProcessPoolExecutor | None = None
        self._window: deque[tuple[Job, Future[ImageAnalysis]]] = deque()
        # Items in flight when a worker died: any of them may have killed it, so each is run again alone.
        self._suspects: deque[Job] = deque()

    def analyse(self, jobs: Iterator[Job]) -> Iterator[tuple[Job, Outcome]]:
        """Each job with its analysis (or the error that replaced it), in submission order."""
        self._start()
        finished = False
        try:
            for job in jobs:
                while self._suspects:
                    yield self._next()
                self._window.append((job, self._submit(job)))
                if len(self._window) >= 2 * self.workers:
                    yield self._next()
            while self._window or self._suspects:
                yield self._next()
            finished = True
        finally:
            # Abandoned half-way (the caller failed or was interrupted): do not wait for what is in flight.
            self._stop(kill=not finished)

    def _next(self) -> tuple[Job, Outcome]:
        if self._suspects:
            job = self._suspects.popleft()
            return job, self._wait(job, self._submit(job), alone=True)
        job, future = self._window.popleft()
        return job, self._wait(job, future, alone=False)

    def _wait(self, job: Job, future: Future[ImageAnalysis], *, alone: bool) -> Outcome:
        try:
            return future.result(timeout=self.time_limit)
        except FutureTimeout:
            # The oldest item in flight ran all this time: it is the one stuck. The others start again.
            others = [j for j, _ in self._window]
            self._restart()
            self._window.extend((j, self._submit(j)) for j in others)
            return MediaError(f"analysis took longer than {self.time_limit:g} s (the per-item time limit) "
                              "and was stopped")
        except BrokenProcessPool:
            self._restart()
            if alone:
                return MediaError("the analysis process died on this file")
            self._suspects.extend([job, *(j for j, _ in self._window)])
            self._window.clear()
            return self._wait_suspect()
        except Exception as exc:  # one bad image must never stop the batch
            return exc

    def _wait_suspect(self) -> Outcome:
        job = self._suspects.popleft()
        return self._wait(job, self._submit(job), alone=True)

    def _submit(self, job: Job) -> Future[ImageAnalysis]:
        assert self._pool is not None
        try:
            with _main_script_hidden():  # a submit may start a worker process
                return self._pool.submit(photo.analyze_in_worker, self.data(job))
        except BrokenProcessPool as exc:  # a worker died since the last result was read: _wait deals with it
            failed: Future[ImageAnalysis] = Future()
            failed.set_exception(exc)
            return failed

    def _restart(self) -> None:
        """Kill every worker (the stuck or broken one among them) and start a new pool."""
        self._stop(kill=True)
        self._start()

    def _start(self) -> None:
        self._pool = ProcessPoolExecutor(self.workers, mp_context=multiprocessing.get_context("spawn"),
                                         initializer=init_worker, initargs=(os.getpid(), self.config))

    def _stop(self, *, kill: bool) -> None:
        pool, self._pool = self._pool, None
        if pool is None:
            return
        if kill:
            # The executor has no public way to stop a busy worker before Python 3.14's terminate_workers().
            for process in list(getattr(pool, "_processes", {}).values()):
                process.kill()
        pool.shutdown(wait=True, cancel_futures=True)
