"""SIGKILL during a backup, a restore and an index save: the next run finds a consistent data directory and
finishes what was cut off, with the result of an uninterrupted run."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import func, select

from facetrail.crashpoints import CRASH_ENV
from facetrail.runtime import Facetrail, local_actor
from facetrail.store.models import Face, StoredImage
from tests.rights.biden import find_biden


def cli(data: Path, *args: str, crash_at: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != CRASH_ENV}
    if crash_at is not None:
        env[CRASH_ENV] = crash_at
    return subprocess.run([sys.executable, "-m", "facetrail.cli", "--data", str(data), *args, "--json"],
                          capture_output=True, text=True, env=env, timeout=300)


def invariants(data: Path) -> tuple[int, int]:
    """Open the directory and check what must always hold; returns (faces, images)."""
    ft = Facetrail.open(data, workers=1)
    try:
        actor = local_actor()
        with ft.db.read() as session:
            faces = sorted(session.scalars(select(Face.id)))
            images = session.scalar(select(func.count()).select_from(StoredImage)) or 0
        assert sorted(ft.gallery.index().ids().tolist()) == faces  # every stored face indexed, and only those
        assert ft.gallery.persisted_ids() == set(faces)
        assert ft.verify_audit(actor).ok
        assert ft.erasure.pending() == []
        return len(faces), images
    finally:
        ft.close()


@pytest.fixture
def data(samples_store: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "data"
    shutil.copytree(samples_store, copy)
    return copy


@pytest.mark.slow
def test_sigkill_during_a_backup_leaves_no_archive_and_an_intact_directory(data: Path, tmp_path: Path) -> None:
    dest = tmp_path / "b.tar"
    killed = cli(data, "backup", "create", str(dest), crash_at="backup_blobs")
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    assert not dest.exists() and list(tmp_path.glob(".b.tar.*.partial"))  # never half an archive as b.tar
    assert invariants(data) == (26, 22)
    done = cli(data, "backup", "create", str(dest))
    assert done.returncode == 0, done.stderr
    assert dest.exists() and not list((data / "tmp").glob("backup-*")) and not list(tmp_path.glob(".b.tar.*"))


@pytest.mark.slow
@pytest.mark.parametrize("point", ["restore_journaled", "restore_swapped"])
def test_sigkill_during_a_restore_is_finished_by_the_next_open(data: Path, tmp_path: Path, point: str) -> None:
    archive = tmp_path / "b.tar"
    assert cli(data, "backup", "create", str(archive)).returncode == 0
    ft = Facetrail.open(data, workers=1)
    ft.erasure.erase("test", find_biden(ft, local_actor()), request_id="REQ-1")
    ft.close()

    killed = cli(data, "backup", "restore", str(archive), crash_at=point)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    assert (data / ".restore" / "journal.json").exists()
    assert invariants(data) == (22, 20)  # the open finished the restore and re-applied the erasure
    ft = Facetrail.open(data, workers=1)
    try:
        assert find_biden(ft, local_actor()) == []
        restores = [e for e in ft.read_audit(local_actor(), limit=1000) if e.action == "backup.restore"]
        assert len(restores) == 1 and not (data / ".restore").exists()
    finally:
        ft.close()


@pytest.mark.slow
def test_sigkill_while_the_index_file_is_replaced_leaves_the_old_file_whole(data: Path) -> None:
    killed = cli(data, "index", "rebuild", crash_at="index_save")
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    assert list((data / "index").glob(".*.tmp"))  # the new file was written, not yet renamed
    assert invariants(data) == (26, 22)
    ft = Facetrail.open(data, workers=1)
    try:
        assert ft.gallery.last_sync is None or not ft.gallery.last_sync.rebuilt  # the old file loaded as it was
    finally:
        ft.close()
