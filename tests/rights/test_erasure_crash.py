"""An erasure killed with SIGKILL at any of its steps is finished by the next open, with the end state of an
uninterrupted erasure (hard rule 9: erasure that does not happen is what Clearview was fined for)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from facetrail.config import get_settings
from facetrail.crashpoints import CRASH_ENV
from facetrail.crypto.setup import open_vault
from facetrail.index.faiss_index import FaissIndex
from facetrail.index.faiss_store import KeyringSealing
from facetrail.rights.erasure import CRASH_POINTS
from facetrail.runtime import RESUME_ACTOR, Facetrail, local_actor
from facetrail.store.templates import decode_template
from facetrail.vision.backend import load_backend
from facetrail.vision.calibration import Band
from tests.rights.biden import files_holding, find_biden, stored_faces, stored_pixels

DEFAULT = load_backend()  # the default vision model, whose index file the data directory holds (weights not loaded)

ERASE = """
import json, sys
from pathlib import Path
from facetrail.runtime import Facetrail, local_actor
ft = Facetrail.open(Path(sys.argv[1]), workers=1)
print(json.dumps(ft.erasure.erase(local_actor().name, json.loads(sys.argv[2]), request_id="REQ-CRASH")))
ft.close()
"""
OPEN = """
import json, sys
from pathlib import Path
from facetrail.runtime import Facetrail
ft = Facetrail.open(Path(sys.argv[1]), workers=1)  # finishes unfinished erasures
print(json.dumps(ft.erasure.pending()))
ft.close()
"""
# The state recorded when the process died at each crash point (the step's work done, not yet recorded).
STATE_AT = {"planned": "planned", "rows_deleted": "rows_deleted", "index_updated": "rows_deleted",
            "blobs_partial": "index_updated", "blobs_removed": "index_updated", "keys_destroyed": "blobs_removed",
            "checkpointed": "keys_destroyed", "index_save": "rows_deleted"}


def python(script: str, *args: str, crash_at: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != CRASH_ENV}
    if crash_at is not None:
        env[CRASH_ENV] = crash_at
    return subprocess.run([sys.executable, "-c", script, *args], capture_output=True, text=True, env=env,
                          timeout=300)


def snapshot(data: Path) -> dict[str, Any]:
    """What an erasure's end state consists of, read straight from the files."""
    conn = sqlite3.connect(data / "facetrail.db")
    try:
        state = {
            "faces": conn.execute("SELECT id, image_id, ordinal, person_id FROM faces ORDER BY id").fetchall(),
            "images": conn.execute("SELECT id, face_count, blob_key FROM images ORDER BY id").fetchall(),
            "erasures": [(i, r, s, _without(json.loads(p), "uid")) for i, r, s, p in conn.execute(
                "SELECT id, request_id, state, plan FROM erasures ORDER BY id")],
            "receipts": [_without(json.loads(r), "completed_at") for (r,) in conn.execute(
                "SELECT receipt FROM erasures ORDER BY id")],
            "erasure_audit": [a for (a,) in conn.execute(
                "SELECT action FROM audit_log WHERE action LIKE 'erasure.%' ORDER BY seq")],
        }
    finally:
        conn.close()
    state["blobs"] = sorted(str(p.relative_to(data)) for p in (data / "blobs").rglob("*") if p.is_file())
    vault = open_vault(get_settings(data=data))
    state["index"] = sorted(FaissIndex.load(data / "index" / f"{DEFAULT.model_id}.ftindex", DEFAULT.template_dim,
                                           sealing=KeyringSealing(vault)).ids().tolist())
    # Crypto-shredding: as many keys left (a redacted image's new key is random, so ids differ between runs),
    # none of the erased records' keys among them, and the same ledger.
    plan_keys = [k for _, _, _, plan in state["erasures"] for k in plan["keys"]]
    state["keys"] = (vault.keyring.count(), sorted(vault.keyring.existing(plan_keys)))
    state["ledger"] = [_without(entry, "uid") for entry in vault.keyring.ledger()]
    return state


def _without(record: dict[str, Any], key: str) -> dict[str, Any]:
    return {k: v for k, v in record.items() if k != key}


@pytest.fixture(scope="module")
def reference(samples_store: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[list[int], dict[str, Any]]:
    """Biden's face ids and the state an uninterrupted erasure of them leaves."""
    probe = tmp_path_factory.mktemp("probe") / "data"
    shutil.copytree(samples_store, probe)
    ft = Facetrail.open(probe, workers=1)
    face_ids = find_biden(ft, local_actor())
    ft.close()
    data = tmp_path_factory.mktemp("reference") / "data"
    shutil.copytree(samples_store, data)
    done = python(ERASE, str(data), json.dumps(face_ids))
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["faces_erased"] == 4
    return face_ids, snapshot(data)


@pytest.mark.slow
@pytest.mark.sqlite_only  # reads the end state from the SQLite file; the steps are the same code on PostgreSQL
@pytest.mark.parametrize("point", [*CRASH_POINTS, "index_save"])  # index_save: the index file half-replaced
def test_sigkill_at_each_step_then_open_equals_uninterrupted(
        point: str, reference: tuple[list[int], dict[str, Any]], samples_store: Path, tmp_path: Path) -> None:
    face_ids, expected = reference
    data = tmp_path / "data"
    shutil.copytree(samples_store, data)
    ft = Facetrail.open(data, workers=1)
    faces = stored_faces(ft, face_ids)
    ft.close()

    killed = python(ERASE, str(data), json.dumps(face_ids), crash_at=point)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    conn = sqlite3.connect(data / "facetrail.db")
    assert conn.execute("SELECT state FROM erasures").fetchall() == [(STATE_AT[point],)]
    conn.close()

    reopened = python(OPEN, str(data))
    assert reopened.returncode == 0, reopened.stderr
    assert json.loads(reopened.stdout) == []
    assert snapshot(data) == expected

    ft = Facetrail.open(data, workers=1)
    actor = local_actor()
    assert ft.verify_audit(actor).ok
    entries = [e for e in ft.read_audit(actor, limit=1000) if e.action == "erasure.completed"]
    assert [e.actor for e in entries] == [RESUME_ACTOR]
    strong = ft.search.scorer.max_distance(Band.STRONG)
    for face in faces:
        nearest = ft.gallery.search(decode_template(face.template, ft.gallery.dim), 1, None)
        assert nearest[0].distance > strong  # no erased template is searchable
        if face.image_name in ("two_people.jpg", "obama_and_biden.jpg"):
            assert face.image_key is not None
            box = face.box
            assert stored_pixels(ft, face.image_key)[box.top:box.bottom, box.left:box.right].mean() < 8
    ft.close()
    for face in faces:
        assert files_holding(data, face.template) == [] and files_holding(data, face.crop) == []
        assert files_holding(data, face.sealed) == []
