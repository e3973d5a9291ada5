"""SIGKILL the API server in the middle of an upload ingestion: after a restart, uploading the same files
again gives exactly the store of an uninterrupted upload, the index holds every stored face and only those,
and the audit chain holds."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx2
import pytest

from facetrail.crashpoints import CRASH_ENV
from facetrail.runtime import Facetrail, local_actor
from tests.backup.test_crash import invariants
from tests.conftest import LFW, add_source

PEOPLE = ["Abdullah_Gul", "Alvaro_Uribe", "Amelie_Mauresmo", "Andre_Agassi"]


def upload_files() -> list[tuple[str, bytes]]:
    files = [p for person in PEOPLE for p in sorted((LFW / person).glob("*.jpg"))][:48]
    return [(p.name, p.read_bytes()) for p in files]


def prepare(data: Path) -> str:
    ft = Facetrail.open(data, create=True, workers=1)
    add_source(ft, name="uploads", purposes=("test",))
    _, key = ft.accounts.create(local_actor(), name="ops", role="operator")
    ft.close()
    return key


@contextlib.contextmanager
def server(data: Path) -> Iterator[tuple[subprocess.Popen[bytes], str]]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = {k: v for k, v in os.environ.items() if k not in (CRASH_ENV, "FACETRAIL_DATA")}
    env["FACETRAIL_WORKERS"] = "1"
    proc = subprocess.Popen([sys.executable, "-m", "facetrail.cli", "--data", str(data), "serve", "--port", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            with contextlib.suppress(httpx2.HTTPError):
                if httpx2.get(f"{url}/health", timeout=2).status_code == 200:
                    break
            time.sleep(0.2)
        yield proc, url
    finally:
        if proc.poll() is None:
            proc.terminate()
            proc.wait(timeout=60)


def upload(url: str, key: str, files: list[tuple[str, bytes]]) -> httpx2.Response:
    return httpx2.post(f"{url}/v1/sources/1/images", headers={"Authorization": f"Bearer {key}"},
                       files=[("files", (name, data, "image/jpeg")) for name, data in files], timeout=600)


def stored(data: Path) -> tuple[int, int, list[tuple[str, int]]]:
    conn = sqlite3.connect(f"file:{data / 'facetrail.db'}?mode=ro", uri=True, timeout=30)
    try:
        return (conn.execute("SELECT COUNT(*) FROM images").fetchone()[0],
                conn.execute("SELECT COUNT(*) FROM faces").fetchone()[0],
                conn.execute("SELECT original_name, face_count FROM images ORDER BY original_name").fetchall())
    finally:
        conn.close()


@pytest.mark.slow
def test_sigkill_of_the_server_during_an_upload_then_retry_equals_uninterrupted(tmp_path: Path) -> None:
    files = upload_files()
    reference = tmp_path / "reference"
    key = prepare(reference)
    with server(reference) as (_, url):
        assert upload(url, key, files).status_code == 200
    expected = stored(reference)
    assert expected[0] == len(files)

    crashed = tmp_path / "crashed"
    key = prepare(crashed)
    with server(crashed) as (proc, url):
        failure: list[BaseException] = []

        def send() -> None:
            try:
                upload(url, key, files)
            except httpx2.HTTPError as exc:  # the server dies under it
                failure.append(exc)

        sender = threading.Thread(target=send)
        sender.start()
        deadline = time.monotonic() + 300
        while stored(crashed)[0] < len(files) // 3 and time.monotonic() < deadline:
            time.sleep(0.05)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        sender.join(timeout=60)
        assert failure, "the upload should have been cut off"
    killed_at = stored(crashed)[0]
    assert 0 < killed_at < len(files)

    with server(crashed) as (_, url):
        again = upload(url, key, files)
        assert again.status_code == 200, again.text
        assert again.json()["images_skipped"] == killed_at
    assert stored(crashed) == expected
    assert invariants(crashed) == (expected[1], expected[0])  # (faces, images)


@pytest.mark.slow
@pytest.mark.parametrize("point", ["rows_deleted", "keys_destroyed"])
def test_sigkill_of_the_server_during_an_erasure_is_finished_by_the_restart(
        tmp_path: Path, point: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """George W. Bush's erasure request goes through the portal (e-mail code, live check) and the DPO's approval,
    which runs the erasure inside the server; the server dies at a step of it. Restarted, it finishes the erasure
    before serving."""
    from bench import load

    data = tmp_path / "data"
    people = load.collection_people()
    prepared = load.prepare(data, people)
    faces_before = stored(data)[1]
    monkeypatch.setenv(CRASH_ENV, point)
    job = load.Erasure()
    with load.server(data, tmp_path / "server.log") as srv:
        load.run_erasure(srv.url, prepared.dpo_key, data, job, delay=0, timeout=120)
        srv.process.wait(timeout=60)
        assert srv.process.returncode == -signal.SIGKILL and job.error and not job.completed
    monkeypatch.delenv(CRASH_ENV)
    with load.server(data, tmp_path / "server-2.log") as srv:  # the open finishes the erasure
        hits = httpx2.post(f"{srv.url}/v1/search", headers={"Authorization": f"Bearer {prepared.investigator_key}"},
                           data={"purpose": load.PURPOSE, "case": "after", "min_band": "possible"},
                           files={"photo": ("q.jpg", load.photo_path(load.QUERIES["bush"]).read_bytes(),
                                            "image/jpeg")},
                           timeout=120).json()["results"]
        assert not [h for h in hits if "George_W_Bush" in h["original_name"]], hits
    faces, images = invariants(data)
    assert faces == faces_before - len(load.BUSH_HELD)  # his faces in the collection (the query is held out)
    ft = Facetrail.open(data, workers=1)
    try:
        receipts = [e for e in ft.read_audit(local_actor(), limit=1000) if e.action == "erasure.completed"]
        assert len(receipts) == 1 and receipts[0].actor == "system:erasure-resume"
    finally:
        ft.close()
