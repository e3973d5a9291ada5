"""Milvus as a server that several facetrail processes share, reached by URI as a cluster is: milvus-lite's own
gRPC server started as a separate process. An erasure run by one process (the command line) is seen at once by
another that has the index loaded (a server), and leaves no byte of the erased templates in the engine's files."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from bench.load import free_port
from pymilvus import MilvusClient

from facetrail.accounts.roles import Actor
from facetrail.runtime import Facetrail
from tests.conftest import PG_SAMPLES, StoreDb, sample_bytes
from tests.rights.biden import files_holding, find_biden, stored_faces

ERASE = """
import sys
from facetrail.runtime import Facetrail, local_actor
ft = Facetrail.open(__import__("pathlib").Path(sys.argv[1]), workers=1)
ft.erasure.erase(local_actor().name, [int(i) for i in sys.argv[2:]], request_id="REQ-OTHER-PROCESS")
ft.close()
"""


@pytest.fixture
def milvus_server(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """A milvus-lite gRPC server in its own process: its URI and its data directory."""
    port, data = free_port(), tmp_path / "milvus-server"
    server = subprocess.Popen([sys.executable, "-m", "milvus_lite", "server", "--data-dir", str(data),
                               "--host", "127.0.0.1", "--port", str(port)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    uri = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                MilvusClient(uri=uri, timeout=2).close()
                break
            except Exception:  # noqa: BLE001  # not listening yet
                if time.monotonic() > deadline or server.poll() is not None:
                    raise
                time.sleep(0.3)
        yield uri, data
    finally:
        server.terminate()
        server.wait(timeout=30)


def test_an_erasure_by_another_process_is_seen_by_a_server_and_leaves_no_byte(
        milvus_server: tuple[str, Path], samples_store: Path, tmp_path: Path, actor: Actor,
        monkeypatch: pytest.MonkeyPatch, store_db: StoreDb) -> None:
    uri, engine_files = milvus_server
    monkeypatch.setenv("FACETRAIL_INDEX_ENGINE", "milvus")
    monkeypatch.setenv("FACETRAIL_MILVUS_URI", uri)
    data = tmp_path / "data"
    shutil.copytree(samples_store, data, ignore=shutil.ignore_patterns("milvus-lite.db"))
    store_db.copy_from(PG_SAMPLES)
    server = Facetrail.open(data, workers=1)  # the collection is built from the store on first use
    try:
        faces = stored_faces(server, find_biden(server, actor))
        assert len(faces) == 4
        assert all(files_holding(engine_files, f.template) for f in faces)  # the engine holds them in clear

        erase = subprocess.run([sys.executable, "-c", ERASE, str(data), *(str(f.id) for f in faces)],
                               capture_output=True, text=True, timeout=300, env=os.environ.copy())
        assert erase.returncode == 0, erase.stderr

        outcome = server.search.search(actor, sample_bytes("biden2.jpg"), purpose="demo", case_ref="after",
                                       min_band="none", top_k=30)
        assert not {f.id for f in faces} & {r.face_id for r in outcome.results}
        assert not {f.id for f in faces} & server.gallery.persisted_ids()
        assert [files_holding(engine_files, f.template) for f in faces] == [[] for _ in faces]
    finally:
        server.close()
