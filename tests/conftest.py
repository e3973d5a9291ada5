"""Shared fixtures: the real sample photos, real dlib, FAISS and SQLite in temporary data directories."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from bench.load import labelled_people as labelled_people  # shared with the load test: file -> people in it
from numpy.typing import NDArray

from facetrail.accounts.roles import Actor
from facetrail.cli import output
from facetrail.runtime import Facetrail, local_actor
from facetrail.sources.inputs import from_paths
from facetrail.store.templates import open_templates

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
SAMPLES = SHARED / "data" / "samples"
LFW = SHARED / "data" / "lfw" / "images"


def template_of(ft: Facetrail, sealed: bytes) -> NDArray[np.float32]:
    """A stored (sealed) template, decrypted and decoded."""
    return open_templates(ft.vault, [sealed], ft.gallery.dim)[0]


def sample_bytes(name: str) -> bytes:
    return (SAMPLES / name).read_bytes()


def add_source(ft: Facetrail, name: str = "samples", purposes: tuple[str, ...] = ("demo",)) -> int:
    source = ft.sources.add(
        local_actor(), name=name, controller="Test Controller", purposes=list(purposes), legal_basis="consent",
        art9_condition="a", evidence_ref="consent-records/1", jurisdictions=["FR", "US"], retention_days=365,
    )
    return source.id


@pytest.fixture(autouse=True)
def wide_console(monkeypatch: pytest.MonkeyPatch) -> None:
    """Rich folds long cells and messages to the terminal width (80 when there is no terminal): tests read
    what the CLI printed, not how it was laid out, so give them room for the longest sample path."""
    for console in (output.console, output.err_console):
        monkeypatch.setattr(console, "_width", 400)


@pytest.fixture
def actor() -> Actor:
    return local_actor()


@pytest.fixture
def ft(tmp_path: Path) -> Iterator[Facetrail]:
    """An empty Facetrail in a fresh data directory."""
    instance = Facetrail.open(tmp_path / "data", create=True, workers=1)
    yield instance
    instance.close()


@pytest.fixture(scope="session")
def samples_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A data directory holding all sample photos in source 1 (purpose 'demo'); copy it before changing it."""
    data = tmp_path_factory.mktemp("samples-store") / "data"
    instance = Facetrail.open(data, create=True, workers=1)
    source_id = add_source(instance)
    report = instance.ingest.ingest(local_actor(), source_id, from_paths([SAMPLES], instance.input_limits))
    assert not report.errors, report.errors
    instance.close()
    return data


@pytest.fixture
def samples_ft(samples_store: Path, tmp_path: Path) -> Iterator[Facetrail]:
    """A private copy of the samples store, opened."""
    data = tmp_path / "data"
    shutil.copytree(samples_store, data)
    instance = Facetrail.open(data, workers=1)
    yield instance
    instance.close()
