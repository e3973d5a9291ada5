"""Killing an ingestion with SIGKILL half-way and re-running gives the uninterrupted result."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sqlalchemy import select
from sqlalchemy.exc import OperationalError

from facetrail.runtime import Facetrail, local_actor
from facetrail.store.models import Face
from tests.conftest import LFW, StoreDb, add_source

PEOPLE = ["Abdullah_Gul", "Alvaro_Uribe", "Amelie_Mauresmo", "Andre_Agassi", "Angelina_Jolie", "Ari_Fleischer"]


def lfw_inputs() -> list[str]:
    return [str(LFW / person) for person in PEOPLE if (LFW / person).is_dir()]


def cli(data: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "facetrail.cli", "--data", str(data), *args]


def image_count(data: Path, store: StoreDb) -> int:
    try:
        return int(store.scalar(data, "SELECT COUNT(*) FROM images"))
    except OperationalError:
        return 0


def state(data: Path, store: StoreDb) -> tuple[int, int, list[tuple[Any, ...]]]:
    images = store.scalar(data, "SELECT COUNT(*) FROM images")
    faces = store.scalar(data, "SELECT COUNT(*) FROM faces")
    per_image = store.rows(data, "SELECT original_name, face_count FROM images ORDER BY original_name")
    return images, faces, per_image


def prepare(data: Path, store: StoreDb) -> None:
    ft = Facetrail.open(data, create=True, workers=1, **store.settings_for(data))
    add_source(ft, name="lfw slice", purposes=("test",))
    ft.close()


@pytest.mark.slow
@pytest.mark.parametrize("workers", ["1", "2"])
def test_sigkill_half_way_then_rerun_equals_uninterrupted(tmp_path: Path, workers: str, store_db: StoreDb) -> None:
    inputs = lfw_inputs()
    assert len(inputs) == len(PEOPLE), "LFW slice missing from ../shared/data"
    reference, crashed = tmp_path / "reference", tmp_path / "crashed"
    for data in (reference, crashed):
        prepare(data, store_db)
    env = {**store_db.env_for(reference), "FACETRAIL_INDEX_SAVE_EVERY": "7"}
    subprocess.run(cli(reference, "ingest", "--source", "1", "--workers", workers, "--json", *inputs),
                   check=True, capture_output=True, env=env)
    expected = state(reference, store_db)
    assert expected[0] > 60

    env = {**store_db.env_for(crashed), "FACETRAIL_INDEX_SAVE_EVERY": "7"}
    proc = subprocess.Popen(cli(crashed, "ingest", "--source", "1", "--workers", workers, "--json", *inputs),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    deadline = time.monotonic() + 300
    while (image_count(crashed, store_db) < expected[0] // 2 and time.monotonic() < deadline
           and proc.poll() is None):
        time.sleep(0.05)
    assert proc.poll() is None, "ingestion finished before it could be killed"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    killed_at = image_count(crashed, store_db)
    assert 0 < killed_at < expected[0]

    subprocess.run(cli(crashed, "ingest", "--source", "1", "--workers", workers, "--json", *inputs),
                   check=True, capture_output=True, env=env)
    assert state(crashed, store_db) == expected

    # The index on disk after the re-run holds exactly the stored faces, and the audit chain holds.
    ft = Facetrail.open(crashed, workers=1, **store_db.settings_for(crashed))
    with ft.db.read() as session:
        stored = sorted(session.scalars(select(Face.id)))
    assert sorted(ft.gallery.persisted_ids()) == stored
    assert np.array_equal(np.sort(ft.gallery.index().ids()), np.array(stored))
    assert ft.verify_audit(local_actor()).ok
    ft.close()


@pytest.mark.slow
def test_sigterm_stops_a_command_line_ingestion_cleanly_with_its_report(tmp_path: Path, store_db: StoreDb) -> None:
    """`kill PID` of `facetrail ingest` (with its vision processes): the batch ends after the image in hand, the
    report says so, exit code 4, and a re-run adds exactly the rest."""
    data = tmp_path / "data"
    prepare(data, store_db)
    inputs = lfw_inputs()
    proc = subprocess.Popen(cli(data, "ingest", "--source", "1", "--workers", "2", "--json", *inputs),
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    deadline = time.monotonic() + 300
    while image_count(data, store_db) < 5 and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.05)
    assert proc.poll() is None, "ingestion finished before it could be stopped"
    stopping = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=60)
    took = time.monotonic() - stopping
    assert proc.returncode == 4 and took < 15, (proc.returncode, took)
    report = json.loads(out)
    assert report["interrupted"] and report["outcome"] == "interrupted"
    stopped_at = image_count(data, store_db)
    assert report["images_added"] == stopped_at
    rerun = subprocess.run(cli(data, "ingest", "--source", "1", "--workers", "2", "--json", *inputs),
                           capture_output=True, text=True)
    assert rerun.returncode == 0, rerun.stdout[-2000:]
    again = json.loads(rerun.stdout)
    assert again["images_skipped"] == stopped_at and again["images_added"] == image_count(data, store_db) - stopped_at
