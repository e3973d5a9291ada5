"""An order's erasure job killed with SIGKILL half-way (between two of its erasures, or inside one) and run
again ends in the state of an uninterrupted job."""

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

from facetrail.compliance.batches import CRASH_POINT
from facetrail.crashpoints import CRASH_ENV
from tests.compliance.conftest import JurisdictionStore
from tests.rights.test_erasure_crash import snapshot

ADD = ["order", "add", "--authority", "CNIL", "--reference", "MED-2021-134", "--received", "2026-11-01",
       "--deadline", "2026-12-31", "--jurisdiction", "FR", "--cease", "--erase", "--daily-penalty", "100000"]


def facetrail(data: Path, *args: str, crash_at: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != CRASH_ENV}
    # One image per erasure, so that four French images make four erasures to die between.
    env.update(FACETRAIL_DATA=str(data), FACETRAIL_WORKERS="1", FACETRAIL_ERASURE_BATCH="1")
    if crash_at is not None:
        env[CRASH_ENV] = crash_at
    return subprocess.run([sys.executable, "-c", "from facetrail.cli.main import main; main()", *args],
                          capture_output=True, text=True, env=env, timeout=300)


def end_state(data: Path) -> dict[str, Any]:
    status = facetrail(data, "order", "status", "1", "--json")
    assert status.returncode == 0, status.stderr
    fields = json.loads(status.stdout)
    return {**snapshot(data), "status": {k: fields[k] for k in (
        "images_remaining", "faces_remaining", "images_erased", "faces_erased", "job_state", "complied")}}


def ordered_copy(store: JurisdictionStore, target: Path) -> Path:
    shutil.copytree(store.data, target)
    added = facetrail(target, *ADD)
    assert added.returncode == 0, added.stderr
    return target


@pytest.fixture(scope="module")
def uninterrupted(jurisdiction_store: JurisdictionStore, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    data = ordered_copy(jurisdiction_store, tmp_path_factory.mktemp("uninterrupted") / "data")
    done = facetrail(data, "order", "run", "1", "--json")
    assert done.returncode == 0, done.stderr
    state = end_state(data)
    assert state["status"] == {"images_remaining": 0, "faces_remaining": 0, "images_erased": 4, "faces_erased": 4,
                               "job_state": "completed", "complied": True}
    assert len(state["erasures"]) == 4
    return state


@pytest.mark.slow
@pytest.mark.parametrize("point", [CRASH_POINT, "blobs_partial", "keys_destroyed"])
def test_the_job_killed_half_way_and_run_again_ends_as_uninterrupted(
        point: str, uninterrupted: dict[str, Any], jurisdiction_store: JurisdictionStore, tmp_path: Path) -> None:
    data = ordered_copy(jurisdiction_store, tmp_path / "data")
    killed = facetrail(data, "order", "run", "1", crash_at=point)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    conn = sqlite3.connect(data / "facetrail.db")
    states = [state for (state,) in conn.execute("SELECT state FROM erasures ORDER BY id")]
    conn.close()
    assert 0 < len(states) < 4 and (states[-1] != "completed" or point == CRASH_POINT), states  # half-way
    again = facetrail(data, "order", "run", "1", "--json")
    assert again.returncode == 0, again.stderr
    assert end_state(data) == uninterrupted
