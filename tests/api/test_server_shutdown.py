"""SIGTERM to `facetrail serve` while it ingests a large uploaded zip: the server stops within seconds instead of
waiting for the batch, the client is told to upload again (503), the store is consistent, and the next upload of
the same archive adds exactly the rest."""

from __future__ import annotations

import io
import json
import signal
import sqlite3
import subprocess
import sys
import threading
import time
import zipfile
from pathlib import Path

import httpx2
import pytest

from tests.api.test_server_crash import prepare, server, stored
from tests.backup.test_crash import invariants
from tests.conftest import LFW

PEOPLE = ["Abdullah_Gul", "Alvaro_Uribe", "Amelie_Mauresmo", "Andre_Agassi", "Angelina_Jolie"]


def big_zip() -> tuple[bytes, int]:
    photos = [p for person in PEOPLE for p in sorted((LFW / person).glob("*.jpg"))][:80]
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for photo in photos:
            archive.writestr(f"{photo.parent.name}/{photo.name}", photo.read_bytes())
    return buffer.getvalue(), len(photos)


def upload_zip(url: str, key: str, data: bytes) -> httpx2.Response:
    return httpx2.post(f"{url}/v1/sources/1/images", headers={"Authorization": f"Bearer {key}"},
                       files={"files": ("event.zip", data, "application/zip")}, timeout=600)


def last_ingestion(data: Path) -> dict[str, object]:
    conn = sqlite3.connect(f"file:{data / 'facetrail.db'}?mode=ro", uri=True, timeout=30)
    try:
        row = conn.execute("SELECT details FROM audit_log WHERE action = 'ingest.finish' ORDER BY seq DESC").fetchone()
    finally:
        conn.close()
    return dict(json.loads(row[0]))


@pytest.mark.slow
def test_sigterm_interrupts_an_upload_ingestion_and_the_server_exits_in_seconds(tmp_path: Path) -> None:
    archive, total = big_zip()
    assert total == 80, "LFW slice missing from ../shared/data"
    data = tmp_path / "data"
    key = prepare(data)
    answers: list[httpx2.Response] = []
    with server(data) as (proc, url):
        sender = threading.Thread(target=lambda: answers.append(upload_zip(url, key, archive)))
        sender.start()
        deadline = time.monotonic() + 300
        while stored(data)[0] < 3 and time.monotonic() < deadline and sender.is_alive():
            time.sleep(0.05)
        assert sender.is_alive(), "the ingestion finished before the server could be stopped"
        stopping = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
        took = time.monotonic() - stopping
        sender.join(timeout=60)
    assert proc.returncode == 0
    assert took < 10, f"the server took {took:.1f} s to stop"
    assert len(answers) == 1 and answers[0].status_code == 503, answers
    body = answers[0].json()
    assert body["error"] == "ShuttingDownError" and "upload the same files again" in body["detail"]

    interrupted_at = stored(data)[0]
    assert 3 <= interrupted_at < total
    assert last_ingestion(data)["outcome"] == "interrupted"
    faces, images = invariants(data)  # every stored face indexed and only those; the audit chain holds
    assert images == interrupted_at

    with server(data) as (_, url):
        again = upload_zip(url, key, archive)
    assert again.status_code == 200, again.text
    assert again.json()["images_skipped"] == interrupted_at and again.json()["outcome"] == "complete"
    assert stored(data)[0] == total
    assert invariants(data)[1] == total


# `facetrail serve` whose index load takes seconds, saying when it starts and when the data directory is closed.
SLOW_LOAD = """
import sys, time
from facetrail import runtime
from facetrail.api import server
load = server._IndexLoad._run
def slow(self, ft):
    print("loading", flush=True)
    time.sleep(float(sys.argv[2]))
    load(self, ft)
server._IndexLoad._run = slow
close = runtime.Facetrail.close
def closing(self):
    close(self)
    print("closed", flush=True)
runtime.Facetrail.close = closing
from facetrail.cli import launch
sys.argv = ["facetrail", "--data", sys.argv[1], "serve", "--port", "0"]
launch.main()
"""


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_while_the_server_starts_stops_it_and_closes_the_data_directory(tmp_path: Path,
                                                                                  sig: signal.Signals) -> None:
    """Told to stop while it loads its index (and imports the web application beside it), `serve` ends as it
    does once serving: the data directory is closed (after the load, which it waits for) and it exits 0, rather
    than dying of the signal with the data directory open."""
    data = tmp_path / "data"
    prepare(data)
    proc = subprocess.Popen([sys.executable, "-c", SLOW_LOAD, str(data), "3"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        lines = []
        while (line := proc.stdout.readline()) and "loading" not in line:
            lines.append(line)
        assert "loading" in line, lines
        time.sleep(0.2)  # the web application is being imported meanwhile
        proc.send_signal(sig)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err[-2000:]
    assert "closed" in out
