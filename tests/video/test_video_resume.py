"""A video ingestion killed with SIGKILL resumes: a re-run keeps what was committed (each video whole) and
does the rest, with the end state of an uninterrupted run."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import func, select

from facetrail.crashpoints import CRASH_ENV
from facetrail.runtime import Facetrail
from facetrail.store.models import Face, StoredImage, Track, Video
from tests.video.clips import WDA

INGEST = """
import json, sys
from pathlib import Path
from facetrail.runtime import Facetrail, local_actor
from facetrail.sources.inputs import from_paths
data = Path(sys.argv[1])
ft = Facetrail.open(data, create=True, workers=1, video_sample_fps=1.0)
if not ft.sources.list(local_actor()):
    ft.sources.add(local_actor(), name="clips", controller="Test Controller", purposes=["demo"],
                   legal_basis="consent", art9_condition="a", evidence_ref="consent/1", jurisdictions=["FR"],
                   retention_days=365)
report = ft.ingest.ingest(local_actor(), 1, from_paths([Path(p) for p in sys.argv[2:]], ft.input_limits))
print(json.dumps(report.counts()))
ft.close()
"""
CLIPS = [str(WDA[0]), str(WDA[1])]


def ingest(data: Path, crash_at: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != CRASH_ENV}
    if crash_at is not None:
        env[CRASH_ENV] = crash_at
    return subprocess.run([sys.executable, "-c", INGEST, str(data), *CLIPS], capture_output=True, text=True,
                          env=env, timeout=300)


def counts(data: Path) -> tuple[int, int, int, int, int]:
    ft = Facetrail.open(data, workers=1)
    try:
        with ft.db.read() as session:
            rows = tuple(session.scalar(select(func.count()).select_from(table)) or 0
                         for table in (Video, Track, StoredImage, Face))
        if not rows[3]:
            return (*rows, 0)  # type: ignore[return-value]  # no face yet: no index file either
        ft.gallery.index()  # loaded, in step with the store (it catches up with whatever a crash left behind)
        ft.gallery.persist()
        return (*rows, len(ft.gallery.persisted_ids()))  # type: ignore[return-value]
    finally:
        ft.close()


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory: pytest.TempPathFactory) -> tuple[int, int, int, int, int]:
    data = tmp_path_factory.mktemp("uninterrupted") / "data"
    assert ingest(data).returncode == 0
    return counts(data)


@pytest.mark.parametrize("crash_at,committed", [("video_stored", 0), ("video_committed", 1)])
def test_a_killed_video_ingestion_resumes(tmp_path: Path, crash_at: str, committed: int,
                                          uninterrupted: tuple[int, int, int, int, int]) -> None:
    data = tmp_path / "data"
    killed = ingest(data, crash_at)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    assert counts(data)[0] == committed
    rerun = ingest(data)
    assert rerun.returncode == 0, rerun.stderr
    report = json.loads(rerun.stdout.strip().splitlines()[-1])
    assert report["videos_skipped"] == committed and report["videos_added"] == 2 - committed
    resumed = counts(data)
    assert resumed == uninterrupted  # videos, tracks, key frames, faces, index entries: as if never killed
    assert resumed[0] == 2 and resumed[3] == resumed[4] > 0
