"""A vision model that cannot be loaded (a model file missing or damaged) stops an ingestion or a search with its
cause, however the photos are analysed, and nothing is stored; and an error of any kind raised in a vision process
comes back to the ingestion as what it was, not as a crash of that process."""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import func, select

from facetrail.errors import FacetrailError, InvalidValueError, MediaError, ModelUnavailableError
from facetrail.ingest import photo, workers
from facetrail.ingest.photo import ImageAnalysis
from facetrail.runtime import Facetrail
from facetrail.store.models import StoredImage
from facetrail.vision.backend import VisionConfig
from tests.conftest import SAMPLES, damaged_install, sample_bytes
from tests.ingest import stall

DAMAGED = "face-reidentification-retail-0095.bin"


def test_facetrails_errors_come_back_whole_from_a_pickle() -> None:
    """A vision process sends its errors back pickled: InvalidValueError's constructor takes two arguments."""
    for error in (InvalidValueError("model", "not a model file facetrail ships"), ModelUnavailableError("damaged"),
                  MediaError("not an image"), FacetrailError("analysis failed")):
        back = pickle.loads(pickle.dumps(error))  # noqa: S301 - made here
        assert type(back) is type(error) and str(back) == str(error)
    back = pickle.loads(pickle.dumps(InvalidValueError("model", "m")))  # noqa: S301 - made here
    assert (back.field, back.message) == ("model", "m")


def test_an_error_that_cannot_be_pickled_comes_back_from_a_vision_process_as_what_it_was(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Sent back as it was, it would break the pool on arrival: every image in flight would be run again alone and
    this one reported as having killed its process."""
    monkeypatch.setattr(photo, "analyze_in_worker", stall.analyze_or_misbehave)
    pool: workers.WorkerPool[bytes] = workers.WorkerPool(1, VisionConfig(), 120, data=lambda job: job, threads=2)
    items = [sample_bytes("obama.jpg"), sample_bytes("biden.jpg") + stall.ODD_ERROR, sample_bytes("two_people.jpg")]
    outcomes = [outcome for _job, outcome in pool.analyse(iter(items))]
    assert isinstance(outcomes[0], ImageAnalysis) and len(outcomes[0].faces) == 1
    assert isinstance(outcomes[2], ImageAnalysis) and len(outcomes[2].faces) == 2
    assert type(outcomes[1]) is FacetrailError, outcomes[1]
    assert str(outcomes[1]) == "analysis failed (OddError: code 7: the library gave up)"


def run_cli(install: Path, data: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """`python -m facetrail.cli` run from the damaged copy of the package."""
    env = {**os.environ, "PYTHONPATH": str(install), "FACETRAIL_DATA": str(data)}
    return subprocess.run([sys.executable, "-m", "facetrail.cli", *args], env=env, capture_output=True, text=True,
                          timeout=300, check=False)


@pytest.mark.parametrize("workers_option", ["1", "2"])
def test_a_damaged_model_file_stops_the_ingestion_and_the_search_with_its_cause(tmp_path: Path,
                                                                                 workers_option: str) -> None:
    """In this process (--workers 1) as in a vision process (--workers 2): not one error per photo, nor 'the
    analysis process died' on each, but one error naming the file, exit code 1, and nothing stored."""
    install, data = damaged_install(tmp_path), tmp_path / "data"
    assert run_cli(install, data, "init").returncode == 0
    added = run_cli(install, data, "source", "add", "--name", "club", "--controller", "Club", "--purpose", "demo",
                    "--basis", "consent", "--art9", "a", "--evidence", "forms", "--jurisdiction", "FR",
                    "--retention-days", "30")
    assert added.returncode == 0, added.stderr
    ingested = run_cli(install, data, "ingest", "--source", "1", "--workers", workers_option, str(SAMPLES))
    assert ingested.returncode == 1, (ingested.stdout, ingested.stderr)
    assert f"{DAMAGED} has SHA-256" in ingested.stderr and "reinstall facetrail" in ingested.stderr
    assert "died" not in ingested.stdout + ingested.stderr
    ft = Facetrail.open(data, workers=1)
    try:
        with ft.db.read() as session:
            assert session.scalar(select(func.count()).select_from(StoredImage)) == 0
    finally:
        ft.close()
    searched = run_cli(install, data, "search", "--purpose", "demo", "--case", "c", str(SAMPLES / "obama2.jpg"))
    assert searched.returncode == 1 and f"{DAMAGED} has SHA-256" in searched.stderr  # not 2: no bad input
