"""The vision worker processes never outlive the process that started them, even when it is killed by SIGKILL
(no clean-up runs): they exit, and with them the multiprocessing resource tracker they keep open. Processes started
ahead of an ingestion (prestart) are taken over by it, or stopped."""

from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from facetrail.ingest import photo, workers
from facetrail.vision.backend import VisionConfig
from facetrail.vision.dlib_backend import DlibBackend
from facetrail.vision.intel_reid import IntelReidEmbedder
from facetrail.vision.yunet import YuNetDetector
from tests.conftest import ROOT, sample_bytes

# A process that starts a pool of 2 workers and keeps both busy on items that hang.
HOLDER = """
from facetrail.ingest import photo, workers
from facetrail.vision.backend import VisionConfig
from tests.ingest import stall
photo.analyze_in_worker = stall.analyze_or_misbehave
pool = workers.WorkerPool(2, VisionConfig(), 3600, data=lambda job: job)
for _ in pool.analyse(iter([stall.STALL, stall.STALL])):
    pass
"""


def children_of(pid: int) -> list[int]:
    """Living (not zombie) child processes of `pid`."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            state, ppid = stat[stat.rindex(")") + 2:].split()[:2]
            if int(ppid) == pid and state != "Z":
                found.append(int(entry.name))
    return found


def alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rindex(")") + 2] != "Z"


def test_workers_exit_when_their_parent_is_killed() -> None:
    holder = subprocess.Popen([sys.executable, "-c", HOLDER], cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})
    try:
        deadline = time.monotonic() + 120
        started: list[int] = []
        while len(started) < 3 and time.monotonic() < deadline and holder.poll() is None:
            time.sleep(0.2)
            started = children_of(holder.pid)  # the resource tracker and the two workers
        assert len(started) == 3, f"the pool did not start: {started}"
        time.sleep(1)  # the workers are past their start-up, holding their items
        os.kill(holder.pid, signal.SIGKILL)
        holder.wait()
        deadline = time.monotonic() + 15
        while any(alive(pid) for pid in started) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not [pid for pid in started if alive(pid)], "processes of the killed pool outlived it"
    finally:
        if holder.poll() is None:
            holder.kill()
            holder.wait()


def test_a_worker_whose_parent_died_while_it_started_exits() -> None:
    """The parent was killed before the worker's start-up ran: the worker is already re-parented when it first
    looks, so it must compare with the id its parent gave it, not with the one it finds."""
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True,
                          check=True)
    dead_parent = int(gone.stdout)
    orphan = subprocess.Popen([sys.executable, "-c", "import sys, time\n"
                               "from facetrail.ingest.workers import exit_with_parent\n"
                               f"exit_with_parent({dead_parent}, poll_s=0.05)\n"
                               "time.sleep(60)\nsys.exit(0)"], cwd=ROOT,
                              env={**os.environ, "PYTHONPATH": str(ROOT)})
    try:
        assert orphan.wait(timeout=30) == 1
    finally:
        if orphan.poll() is None:
            orphan.kill()
            orphan.wait()


def test_chunks_keep_the_order_and_close_on_count_or_size() -> None:
    from facetrail.ingest.workers import chunked

    sizes = [1, 1, 1, 1, 1, 10, 1, 1, 4, 4]
    got = list(chunked(iter(range(len(sizes))), 4, 8, lambda i: sizes[i]))
    assert got == [[0, 1, 2, 3], [4, 5], [6, 7, 8, 9]]  # by count; by weight (a large file); the rest by weight
    assert [job for chunk in got for job in chunk] == list(range(len(sizes)))
    assert list(chunked(iter([]), 4, 8, lambda _: 1)) == []
    assert list(chunked(iter(range(3)), 1, 8, lambda _: 1)) == [[0], [1], [2]]


def test_a_worker_ends_without_the_interpreters_teardown_and_keeps_what_it_printed(tmp_path: Path) -> None:
    """A worker's exit skips the teardown (the exit handlers registered before its start-up, here one that
    would leave a file) but still delivers what it printed, with exit status 0."""
    marker = tmp_path / "teardown-ran"
    worker = subprocess.run([sys.executable, "-c", "import atexit, os, sys\n"
                             f"atexit.register(lambda: open({str(marker)!r}, 'w').close())\n"
                             "from facetrail.ingest.workers import init_worker\n"
                             "from facetrail.vision.backend import VisionConfig\n"
                             "init_worker(os.getppid(), VisionConfig())\n"
                             "print('analysed', end='')\nsys.stderr.write('warned')\n"],
                            cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert (worker.returncode, worker.stdout, worker.stderr) == (0, "analysed", "warned")
    assert not marker.exists()


def _pids(pool: object) -> list[int]:
    return sorted(getattr(pool, "_processes", {}))


def test_an_ingestion_takes_over_the_processes_prestarted_with_its_shape() -> None:
    config = VisionConfig()
    processes, threads = workers.pool_shape(config, 2)
    assert (processes, threads) == (1, 2)  # the default pipeline: one process, two analysing threads
    workers.prestart(config, 2)
    prestarted = workers._Prestarted.pool
    assert prestarted is not None
    started = _pids(prestarted)
    assert len(started) == 1 and alive(started[0])
    pool = workers.WorkerPool(processes, config, 120, data=lambda job: job, threads=threads)
    images = [sample_bytes("obama.jpg"), sample_bytes("two_people.jpg"), sample_bytes("biden.jpg")]
    seen = []
    for _, outcome in pool.analyse(iter(images)):
        seen.append((pool._pool, outcome))
    assert all(used is prestarted for used, _ in seen)  # the same processes, not a second pool
    assert [len(outcome.faces) for _, outcome in seen] == [1, 2, 1]  # type: ignore[union-attr]
    assert workers._Prestarted.pool is None  # taken: no one else gets it, nor stops it
    assert not alive(started[0])  # ended with the ingestion


def test_prestarted_processes_of_another_shape_are_stopped_and_fresh_ones_analyse() -> None:
    workers.prestart(VisionConfig(), 2)
    prestarted = workers._Prestarted.pool
    started = _pids(prestarted)
    other = replace(VisionConfig(), crop_size=96)  # what the ingestion really uses differs
    pool = workers.WorkerPool(1, other, 120, data=lambda job: job, threads=2)
    seen = []
    for _, outcome in pool.analyse(iter([sample_bytes("obama.jpg")])):
        seen.append(pool._pool)
        assert not isinstance(outcome, BaseException)
        assert max(Image.open(io.BytesIO(outcome.faces[0].crop_jpeg)).size) == 96  # cut as the ingestion asked
    assert seen and seen[0] is not prestarted
    assert not any(alive(pid) for pid in started)
    assert workers._Prestarted.pool is None


def test_prestarted_processes_that_no_ingestion_takes_are_stopped() -> None:
    workers.prestart(VisionConfig(), 2)
    started = _pids(workers._Prestarted.pool)
    assert started and all(alive(pid) for pid in started)
    workers.discard_prestarted()
    assert not any(alive(pid) for pid in started)
    assert workers._Prestarted.pool is None
    workers.discard_prestarted()  # nothing left to stop


def test_a_second_prestart_stops_the_first() -> None:
    workers.prestart(VisionConfig(), 2)
    first = _pids(workers._Prestarted.pool)
    workers.prestart(VisionConfig(), 2)
    try:
        assert not any(alive(pid) for pid in first)
    finally:
        workers.discard_prestarted()


def test_loading_the_models_gives_each_analysing_thread_its_own(monkeypatch: pytest.MonkeyPatch) -> None:
    """The warm-up of a prestarted process, run here in this process: every analysing thread has loaded its models
    before any image comes, no two share them, and each has run them once on a picture of no one."""
    photo.init_worker(VisionConfig(), 2)
    pool = photo._WorkerState.threads
    assert pool is not None
    runs: list[tuple[str, str, int]] = []
    detect, embed = YuNetDetector.detect, IntelReidEmbedder.embed

    def detecting(self: YuNetDetector, pixels: np.ndarray) -> list:  # type: ignore[type-arg]
        found = detect(self, pixels)
        runs.append((threading.current_thread().name, "detect", len(found)))
        return found

    def embedding(self: IntelReidEmbedder, pixels: np.ndarray, detections: list) -> list:  # type: ignore[type-arg]
        templates = embed(self, pixels, detections)
        runs.append((threading.current_thread().name, "embed", len(templates)))
        return templates

    monkeypatch.setattr(YuNetDetector, "detect", detecting)
    monkeypatch.setattr(IntelReidEmbedder, "embed", embedding)
    try:
        photo.load_models()
        threads = {name for name, _, _ in runs}
        assert len(threads) == 2  # one warm-up per thread
        for name in threads:  # each ran both models: no face found in the grey picture, one made-up face embedded
            assert sorted(step for step in runs if step[0] == name) == [(name, "detect", 0), (name, "embed", 1)]
        gate = threading.Barrier(2)

        def backend() -> object:
            gate.wait(30)  # one call per thread
            return photo._WorkerState.local.backend  # AttributeError if this thread has none

        first, second = pool.map(lambda _: backend(), range(2))
        assert first is not second
        for loaded in (first, second):
            assert loaded.detector._session is not None and loaded.embedder._request is not None  # type: ignore
    finally:
        pool.shutdown()
        photo._WorkerState.threads, photo._WorkerState.thread_count = None, 1
        photo._WorkerState.config = None


def test_loading_dlibs_models_analyses_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    """dlib's pipeline loads its models without running them: on a picture of no one its HOG detector would find
    nothing and hand over to the CNN, which takes seconds and about a gigabyte."""
    photo.init_worker(VisionConfig(vision_model="dlib"), 1)
    runs: list[str] = []
    monkeypatch.setattr(DlibBackend, "detect", lambda *_: runs.append("detect") or [])
    try:
        photo.load_models()
        backend = photo._WorkerState.local.backend
        assert isinstance(backend, DlibBackend) and backend._created == 1  # one set of models loaded
        assert runs == []
    finally:
        photo._WorkerState.config = None
        del photo._WorkerState.local.backend


def test_with_nothing_to_analyse_a_prestarted_pool_is_stopped_without_waiting_for_its_warm_up() -> None:
    workers.prestart(VisionConfig(), 2)
    processes = list(workers._Prestarted.pool._processes.values())  # type: ignore[union-attr]
    pool = workers.WorkerPool(1, VisionConfig(), 120, data=lambda job: job, threads=2)
    assert list(pool.analyse(iter([]))) == []  # every image already stored, say
    assert [p.exitcode for p in processes] == [-signal.SIGKILL]  # stopped, not waited for


def test_a_broken_prestarted_pool_is_not_taken() -> None:
    workers.prestart(VisionConfig(), 2)
    prestarted = workers._Prestarted.pool
    (pid,) = _pids(prestarted)
    os.kill(pid, signal.SIGKILL)  # the process died while it started (the OOM killer, say)
    deadline = time.monotonic() + 30
    while not getattr(prestarted, "_broken", False) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert getattr(prestarted, "_broken", False)
    assert workers._take_prestarted(1, VisionConfig(), 2) is None  # its shape fits, but it is stopped instead
    assert workers._Prestarted.pool is None and not alive(pid)


def test_the_analysing_threads_take_the_largest_files_first_and_answer_in_order() -> None:
    """A chunk ends with its last image: a large one taken last would leave the other thread idle meanwhile."""
    photo.init_worker(VisionConfig(), 2)
    started: list[int] = []
    lock = threading.Lock()

    def analyse(data: bytes) -> int:
        with lock:
            started.append(len(data))
        time.sleep(0.05)
        return len(data)

    try:
        items = [b"a", b"aaaaa", b"aaa", b"a" * 10, b"aa"]
        assert photo.analyze_many(analyse, items) == [1, 5, 3, 10, 2]  # type: ignore[arg-type]
        assert set(started[:2]) == {10, 5} and set(started[2:4]) == {3, 2} and started[4] == 1
    finally:
        assert photo._WorkerState.threads is not None
        photo._WorkerState.threads.shutdown()
        photo._WorkerState.threads, photo._WorkerState.thread_count = None, 1
        photo._WorkerState.config = None


def test_a_single_image_is_analysed_on_an_analysing_thread() -> None:
    """Their models are the loaded ones (a prestarted process loads them ahead); the process's own thread has none."""
    photo.init_worker(VisionConfig(), 2)
    try:
        names = photo.analyze_many(lambda _data: threading.current_thread().name, [b"one"])  # type: ignore[arg-type]
        assert len(names) == 1 and str(names[0]).startswith("vision")
    finally:
        assert photo._WorkerState.threads is not None
        photo._WorkerState.threads.shutdown()
        photo._WorkerState.threads, photo._WorkerState.thread_count = None, 1
        photo._WorkerState.config = None
