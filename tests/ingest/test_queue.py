"""Ingestion through the Redis job queue: real redis-server on loopback, real `facetrail worker` processes."""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from sqlalchemy import select

from facetrail.accounts.roles import Actor
from facetrail.ingest.queue import PROCESSING, QueueUnavailableError, wait_for_workers
from facetrail.ingest.report import IngestReport
from facetrail.runtime import Facetrail
from facetrail.sources.inputs import from_paths
from facetrail.store.models import Face, StoredImage
from tests.conftest import ROOT, SAMPLES, StoreDb, add_source, damaged_install, sample_bytes

if shutil.which("redis-server") is None:
    pytest.fail("redis-server is missing: apt-get install redis-server (.ci/run installs it)", pytrace=False)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    port = free_port()
    workdir = tmp_path_factory.mktemp("redis")
    server = subprocess.Popen(["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--dir", str(workdir),
                               "--save", "", "--appendonly", "no"], stdout=subprocess.DEVNULL)
    client = redis.Redis(port=port)
    deadline = time.monotonic() + 10
    while True:
        try:
            client.ping()
            break
        except redis.ConnectionError:
            if time.monotonic() > deadline:
                server.kill()
                raise
            time.sleep(0.05)
    yield f"redis://127.0.0.1:{port}/0"
    server.terminate()
    server.wait(10)


def start_worker(url: str, install: Path = ROOT / "src", **popen: Any) -> subprocess.Popen[str]:
    """A `facetrail worker` process, run from the package under `install`."""
    # A short lease, so that a killed worker's job goes back to the queue within seconds.
    return subprocess.Popen([sys.executable, "-m", "facetrail.cli", "worker", "--redis", url, "--lease", "3"], cwd=ROOT,
                            stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": str(install)},
                            **popen)


def stop(*workers: subprocess.Popen[str]) -> list[str]:
    """Stop the workers (SIGTERM), and return what each printed."""
    for worker in workers:
        if worker.poll() is None:
            worker.send_signal(signal.SIGTERM)
    return [worker.communicate(timeout=30)[0] for worker in workers]


def faces_of(ft: Facetrail) -> list[tuple[str, int, int, int, int, int]]:
    with ft.db.read() as session:
        return sorted((row[0], row[1], row[2], row[3], row[4], row[5]) for row in session.execute(
            select(StoredImage.sha256, Face.ordinal, Face.box_left, Face.box_top, Face.box_right, Face.box_bottom)
            .join(Face.image)))


def images_of(ft: Facetrail) -> list[tuple[str, int]]:
    with ft.db.read() as session:
        return sorted((row[0], row[1]) for row in session.execute(select(StoredImage.sha256, StoredImage.face_count)))


def search_of(ft: Facetrail, actor: Actor) -> list[tuple[str, float]]:
    outcome = ft.search.search(actor, sample_bytes("obama2.jpg"), purpose="demo", case_ref="q", top_k=100,
                               min_band="none")
    return [(Path(r.original_name).name, round(r.distance, 5)) for r in outcome.results]


def assert_same_store(ft: Facetrail, reference: Facetrail, actor: Actor) -> None:
    assert images_of(ft) == images_of(reference)
    assert faces_of(ft) == faces_of(reference)
    assert len(ft.gallery.index()) == len(faces_of(reference))
    assert search_of(ft, actor) == search_of(reference, actor)


def ingest(ft: Facetrail, actor: Actor, url: str, *paths: Path) -> IngestReport:
    source = add_source(ft)
    return ft.ingest.ingest(actor, source, from_paths(list(paths), ft.input_limits), queue_url=url)


def test_two_workers_give_the_single_process_result(redis_url: str, samples_ft: Facetrail, tmp_path: Path,
                                                     actor: Actor, store_db: StoreDb) -> None:
    workers = [start_worker(redis_url), start_worker(redis_url)]
    try:
        assert wait_for_workers(redis_url, 60, count=2) == 2
        ft = Facetrail.open(tmp_path / "queued", create=True, **store_db.settings_for(tmp_path / "queued"))
        report = ingest(ft, actor, redis_url, SAMPLES)
        assert not report.errors, report.errors
        assert_same_store(ft, samples_ft, actor)
        ft.close()
    finally:
        printed = stop(*workers)
    assert all(w.returncode == 0 for w in workers)
    done = [int(re.search(r"stopped after (\d+) jobs", out).group(1)) for out in printed]  # type: ignore[union-attr]
    assert all(n > 0 for n in done) and sum(done) == report.images_added  # both took jobs, each job done once
    assert not redis.Redis.from_url(redis_url).keys("facetrail:results:*")  # results are not kept


def test_a_worker_killed_mid_job_loses_nothing(redis_url: str, samples_ft: Facetrail, tmp_path: Path,
                                               actor: Actor, store_db: StoreDb) -> None:
    client = redis.Redis.from_url(redis_url)
    doomed = start_worker(redis_url)
    survivor: subprocess.Popen[str] | None = None
    ft = Facetrail.open(tmp_path / "queued", create=True, **store_db.settings_for(tmp_path / "queued"))
    outcome: list[IngestReport] = []
    writer = threading.Thread(target=lambda: outcome.append(ingest(ft, actor, redis_url, SAMPLES)))
    try:
        writer.start()
        deadline = time.monotonic() + 60
        held: list[bytes] = []
        while not held and time.monotonic() < deadline:  # the doomed worker holds a job it has not finished
            held = [k for k in client.keys(PROCESSING + "*") if client.llen(k)]
            time.sleep(0.005)
        assert held, "the worker never took a job"
        doomed.send_signal(signal.SIGKILL)
        doomed.wait(10)
        survivor = start_worker(redis_url)
        writer.join(240)
        assert not writer.is_alive()
    finally:
        stop(*([survivor] if survivor else []))
    [report] = outcome
    assert not report.errors, report.errors
    assert_same_store(ft, samples_ft, actor)
    ft.close()


def test_a_worker_whose_model_file_is_damaged_stops_and_gives_its_job_back(redis_url: str, samples_ft: Facetrail,
        tmp_path: Path, actor: Actor, store_db: StoreDb) -> None:
    """Its installation, not the photo, is at fault: it does not answer an error for each job it takes, but exits
    (1, naming the file) and puts the job it held back on the queue, which a sound worker then does."""
    client = redis.Redis.from_url(redis_url)
    damaged = start_worker(redis_url, damaged_install(tmp_path), stderr=subprocess.PIPE)
    sound: subprocess.Popen[str] | None = None
    ft = Facetrail.open(tmp_path / "queued", create=True, **store_db.settings_for(tmp_path / "queued"))
    outcome: list[IngestReport] = []
    writer = threading.Thread(target=lambda: outcome.append(ingest(ft, actor, redis_url, SAMPLES)))
    try:
        assert wait_for_workers(redis_url, 60) == 1
        writer.start()
        out, err = damaged.communicate(timeout=120)
        assert damaged.returncode == 1, (out, err)
        assert "face-reidentification-retail-0095.bin has SHA-256" in err and "reinstall facetrail" in err
        assert client.llen("facetrail:jobs") > 0 and not [k for k in client.keys(PROCESSING + "*") if client.llen(k)]
        sound = start_worker(redis_url)
        writer.join(240)
        assert not writer.is_alive()
    finally:
        if writer.is_alive():  # a check failed while it waited for a worker
            ft.ingest.interrupt()
            writer.join(60)
        stop(*([sound] if sound else []))
    [report] = outcome
    assert not report.errors, report.errors
    assert_same_store(ft, samples_ft, actor)
    ft.close()


def test_an_interrupted_batch_leaves_no_job_and_no_result(redis_url: str, tmp_path: Path, actor: Actor,
        store_db: StoreDb) -> None:
    client = redis.Redis.from_url(redis_url)
    worker = start_worker(redis_url)
    try:
        ft = Facetrail.open(tmp_path / "queued", create=True, **store_db.settings_for(tmp_path / "queued"))
        source = add_source(ft)

        def first(done: int, _total: int) -> None:
            if done == 1:
                ft.ingest.interrupt()

        report = ft.ingest.ingest(actor, source, from_paths([SAMPLES], ft.input_limits), queue_url=redis_url,
                                  progress=first)
        ft.close()
        assert report.interrupted and report.images_added < 10
        assert client.llen("facetrail:jobs") == 0  # the batch took back what no worker had started
    finally:
        stop(worker)  # it finishes the job it held when the batch ended: that result is dropped
    assert not client.keys("facetrail:results:*") and not client.keys("facetrail:batch:*")


def test_a_batch_told_to_stop_stops_waiting_for_workers(redis_url: str, tmp_path: Path, actor: Actor,
        store_db: StoreDb) -> None:
    client = redis.Redis.from_url(redis_url)
    ft = Facetrail.open(tmp_path / "queued", create=True, **store_db.settings_for(tmp_path / "queued"))
    outcome: list[IngestReport] = []
    writer = threading.Thread(target=lambda: outcome.append(ingest(ft, actor, redis_url, SAMPLES)))
    writer.start()  # no worker runs
    deadline = time.monotonic() + 30
    while not client.llen("facetrail:jobs") and time.monotonic() < deadline:
        time.sleep(0.05)
    ft.ingest.interrupt()  # what SIGTERM does
    writer.join(30)
    assert not writer.is_alive()
    [report] = outcome
    assert report.interrupted and report.images_added == 0
    assert client.llen("facetrail:jobs") == 0 and not client.keys("facetrail:batch:*")
    ft.close()


def test_a_corrupt_file_gives_its_error_through_the_queue(redis_url: str, tmp_path: Path, actor: Actor,
        store_db: StoreDb) -> None:
    photos = tmp_path / "photos"
    photos.mkdir()
    (photos / "biden.jpg").write_bytes(sample_bytes("biden.jpg"))
    (photos / "broken.jpg").write_bytes(sample_bytes("obama2.jpg")[:400])
    local = Facetrail.open(tmp_path / "local", create=True, **store_db.settings_for(tmp_path / "local"),
                           workers=1)
    expected = local.ingest.ingest(actor, add_source(local), from_paths([photos], local.input_limits))
    local.close()
    worker = start_worker(redis_url)
    try:
        ft = Facetrail.open(tmp_path / "queued", create=True, **store_db.settings_for(tmp_path / "queued"))
        report = ingest(ft, actor, redis_url, photos)
        ft.close()
    finally:
        stop(worker)
    assert report.images_added == 1
    assert [(Path(e.name).name, e.cause) for e in report.errors] == \
        [(Path(e.name).name, e.cause) for e in expected.errors]
    assert [Path(e.name).name for e in report.errors] == ["broken.jpg"] and report.errors[0].cause


def test_the_command_line_ingests_through_the_queue_of_the_setting(redis_url: str, tmp_path: Path,
                                                                    store_db: StoreDb) -> None:
    photos = tmp_path / "photos"
    photos.mkdir()
    (photos / "biden.jpg").write_bytes(sample_bytes("biden.jpg"))
    (photos / "broken.jpg").write_bytes(sample_bytes("obama2.jpg")[:400])
    ft = Facetrail.open(tmp_path / "data", create=True, **store_db.settings_for(tmp_path / "data"))
    add_source(ft)
    ft.close()
    worker = start_worker(redis_url)
    try:
        env = {**store_db.env_for(tmp_path / "data"), "PYTHONPATH": str(ROOT / "src"),
               "FACETRAIL_QUEUE_URL": redis_url}
        run = subprocess.run([sys.executable, "-m", "facetrail.cli", "ingest", str(photos), "--source", "1", "--data",
                              str(tmp_path / "data"), "--json"], cwd=ROOT, capture_output=True, text=True, env=env,
                             timeout=120)
    finally:
        printed = stop(worker)
    assert run.returncode == 3, run.stderr  # partial: one photo in, one error
    assert "broken.jpg" in run.stdout and "stopped after 2 jobs" in printed[0]


def test_an_unreachable_redis_is_a_clear_error(tmp_path: Path, actor: Actor,
        store_db: StoreDb) -> None:
    url = f"redis://127.0.0.1:{free_port()}/0"
    ft = Facetrail.open(tmp_path / "data", create=True, **store_db.settings_for(tmp_path / "data"))
    with pytest.raises(QueueUnavailableError, match=f"cannot reach the job queue at {url}"):
        ingest(ft, actor, url, SAMPLES / "biden.jpg")
    ft.close()
    worker = subprocess.run([sys.executable, "-m", "facetrail.cli", "worker", "--redis", url], cwd=ROOT,
                            capture_output=True, text=True, timeout=60)
    assert worker.returncode != 0
    assert f"cannot reach the job queue at {url}" in worker.stdout + worker.stderr


def test_a_password_is_not_shown_in_the_error(tmp_path: Path, actor: Actor,
        store_db: StoreDb) -> None:
    url = f"redis://user:s3cret@127.0.0.1:{free_port()}/0"
    ft = Facetrail.open(tmp_path / "data", create=True, **store_db.settings_for(tmp_path / "data"))
    with pytest.raises(QueueUnavailableError) as raised:
        ingest(ft, actor, url, SAMPLES / "biden.jpg")
    ft.close()
    assert "s3cret" not in str(raised.value) and "user:***@127.0.0.1" in str(raised.value)


class _RunsCode:
    """A forged queue entry: unpickling it with the standard unpickler would call os.system."""

    def __reduce__(self) -> tuple[object, tuple[str]]:
        import os
        return os.system, ("touch /tmp/facetrail-forged-queue-entry",)


def test_a_forged_entry_cannot_run_code_but_plain_data_reads_back() -> None:
    import pickle

    import numpy as np

    from facetrail.errors import MediaError
    from facetrail.ingest.queue import loads
    from facetrail.vision.backend import VisionConfig

    with pytest.raises(pickle.UnpicklingError, match="posix.system|os.system"):
        loads(pickle.dumps(_RunsCode()))
    with pytest.raises(pickle.UnpicklingError, match="not plain data"):
        loads(pickle.dumps(Path.write_text))  # a function of an allowed module is still refused
    value = (VisionConfig(model=Path("/m.onnx")), np.arange(4, dtype=np.float32), MediaError("bad"), {1, 2})
    back = loads(pickle.dumps(value))
    assert back[0] == value[0] and np.array_equal(back[1], value[1]) and str(back[2]) == "bad" and back[3] == {1, 2}
