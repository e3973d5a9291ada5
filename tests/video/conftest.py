"""One store holding the four WDA clips and the Hamilton clip, ingested once per test session."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from facetrail.ingest.report import IngestReport
from facetrail.runtime import Facetrail, local_actor
from facetrail.sources.inputs import from_paths
from tests.conftest import add_source
from tests.video.clips import HAMILTON, SAMPLE_FPS, WDA


@dataclass
class VideoStore:
    data: Path
    source_id: int
    report: IngestReport


@pytest.fixture(scope="session")
def video_store(tmp_path_factory: pytest.TempPathFactory) -> VideoStore:
    """A data directory with the five clips in source 1 (purpose 'demo'); copy it before changing it."""
    data = tmp_path_factory.mktemp("video-store") / "data"
    ft = Facetrail.open(data, create=True, workers=1, video_sample_fps=SAMPLE_FPS)
    try:
        source_id = add_source(ft)
        report = ft.ingest.ingest(local_actor(), source_id, from_paths([*WDA, HAMILTON], ft.input_limits))
        assert not report.errors, report.errors
    finally:
        ft.close()
    return VideoStore(data, source_id, report)


@pytest.fixture(scope="module")
def video_ft(video_store: VideoStore, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Facetrail]:
    """The video store, copied for the module and opened (searches add records, nothing else changes)."""
    data = tmp_path_factory.mktemp("video-ft") / "data"
    shutil.copytree(video_store.data, data)
    ft = Facetrail.open(data, workers=1, video_sample_fps=SAMPLE_FPS)
    yield ft
    ft.close()


@pytest.fixture
def video_copy(video_store: VideoStore, tmp_path: Path) -> Iterator[Facetrail]:
    """A private copy of the video store, for a test that changes it (an erasure)."""
    data = tmp_path / "data"
    shutil.copytree(video_store.data, data)
    ft = Facetrail.open(data, workers=1, video_sample_fps=SAMPLE_FPS)
    yield ft
    ft.close()
