"""A change of vision model: templates of two models never mix in one index, a data directory whose faces are
all of another model is refused with the two ways out, and `facetrail index reembed` moves every stored face to
the new model, resuming after a kill. The data directory here is made with dlib, as before the default became
YuNet + Intel: the upgrade a dlib user goes through."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import func, select

from facetrail.crashpoints import CRASH_ENV
from facetrail.errors import ConflictError, IndexCorruptError, ModelUnavailableError
from facetrail.index.faiss_index import FaissIndex, IndexTuning
from facetrail.index.faiss_store import KeyringSealing
from facetrail.runtime import Facetrail, local_actor
from facetrail.sources.inputs import from_paths
from facetrail.store.models import Face, Person
from facetrail.store.templates import open_templates
from facetrail.vision import model_files
from facetrail.vision.composite import MODEL_IDS, VisionModel
from tests.conftest import SAMPLES, add_source, sample_bytes

DLIB, INTEL, YUNET_DLIB = (MODEL_IDS[VisionModel.DLIB], MODEL_IDS[VisionModel.YUNET_INTEL],
                           MODEL_IDS[VisionModel.YUNET_DLIB])


def cli(data: Path, *args: str, model: str, crash_at: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != CRASH_ENV}
    env["FACETRAIL_VISION_MODEL"] = model
    if crash_at is not None:
        env[CRASH_ENV] = crash_at
    return subprocess.run([sys.executable, "-m", "facetrail.cli", "--data", str(data), *args, "--json"],
                          capture_output=True, text=True, env=env, timeout=300)


def model_counts(ft: Facetrail) -> dict[str, int]:
    with ft.db.read() as session:
        return dict(session.execute(select(Face.model_id, func.count()).group_by(Face.model_id)).all())


def model_counts_at(data: Path) -> dict[str, int]:
    ft = Facetrail.open(data, workers=1, vision_model="dlib")
    try:
        return model_counts(ft)
    finally:
        ft.close()


@pytest.fixture(scope="module")
def dlib_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The sample photos ingested with dlib (on SQLite: the database is the directory's file)."""
    data = tmp_path_factory.mktemp("dlib-store") / "data"
    ft = Facetrail.open(data, create=True, workers=1, vision_model="dlib", db_url=f"sqlite:///{data / 'facetrail.db'}")
    try:
        source_id = add_source(ft)
        report = ft.ingest.ingest(local_actor(), source_id, from_paths([SAMPLES], ft.input_limits))
        assert not report.errors, report.errors
    finally:
        ft.close()
    return data


@pytest.fixture
def data(dlib_store: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    copy = tmp_path / "data"
    shutil.copytree(dlib_store, copy)
    monkeypatch.setenv("FACETRAIL_DB_URL", f"sqlite:///{copy / 'facetrail.db'}")  # also on a PostgreSQL run
    return copy


def test_a_dlib_data_directory_is_refused_by_the_default_model_with_the_ways_out(data: Path) -> None:
    """Opened with the default pipeline, a directory of dlib faces is refused (none of its faces could be
    searched, new ones would start a second template space), and the message names both ways out."""
    with pytest.raises(ConflictError) as refused:
        Facetrail.open(data, workers=1)
    message = str(refused.value)
    assert str(data) in message and f"26 of {DLIB}" in message and INTEL in message
    assert f"run `facetrail --data {data} index reembed`" in message and "set FACETRAIL_VISION_MODEL=dlib" in message
    env = {k: v for k, v in os.environ.items() if k != "FACETRAIL_VISION_MODEL"} | {"COLUMNS": "400"}
    for command in (["search", str(SAMPLES / "obama2.jpg"), "--purpose", "demo", "--case", "c-1"],
                    ["ingest", str(SAMPLES / "biden.jpg"), "--source", "1"]):
        run = subprocess.run([sys.executable, "-m", "facetrail.cli", "--data", str(data), *command],
                             capture_output=True, text=True, env=env, timeout=300)
        assert run.returncode != 0 and "index reembed" in run.stderr + run.stdout, run
        assert "FACETRAIL_VISION_MODEL=dlib" in run.stderr + run.stdout
    status = cli(data, "index", "status", model="yunet-intel")  # counting them is allowed
    assert status.returncode == 0, status.stderr
    assert json.loads(status.stdout)["faces_of_other_models"] == 26 and json.loads(status.stdout)["faces"] == 0
    kept = Facetrail.open(data, workers=1, vision_model="dlib")  # the model they were made with still opens
    try:
        assert len(kept.gallery.index()) == 26
    finally:
        kept.close()
    assert model_counts_at(data) == {DLIB: 26}  # nothing was changed by the refusals


def test_an_index_file_of_another_model_is_refused(data: Path) -> None:
    """Same template length (128), other model: the index file made for dlib is never used for YuNet + dlib."""
    index_dir = data / "index"
    shutil.copy(index_dir / f"{DLIB}.ftindex", index_dir / f"{YUNET_DLIB}.ftindex")
    ft = Facetrail.open(data, workers=1, vision_model="yunet-dlib", model_change=True)
    try:
        with pytest.raises(IndexCorruptError, match=f"holds templates of model '{DLIB}', not of '{YUNET_DLIB}'"):
            FaissIndex.load(index_dir / f"{YUNET_DLIB}.ftindex", 128, sealing=KeyringSealing(ft.vault),
                            tuning=IndexTuning(model_id=YUNET_DLIB))
        assert len(ft.gallery.index()) == 0  # rebuilt from the store's faces of this model: none yet
        assert "holds templates of model" in ft.gallery.last_sync.reason
        assert model_counts(ft) == {DLIB: sum(model_counts(ft).values())}
    finally:
        ft.close()


def test_reembed_resumes_after_a_kill_and_then_searches_with_the_new_model(data: Path) -> None:
    before = Facetrail.open(data, workers=1, vision_model="dlib")
    try:
        faces = sum(model_counts(before).values())
        with before.db.read() as session:
            people = dict(session.execute(select(Face.id, Face.person_id)).all())
    finally:
        before.close()
    assert faces >= 20

    killed = cli(data, "index", "reembed", model="yunet-intel", crash_at="reembed.image-committed")
    assert killed.returncode == -9, killed.stderr
    midway = Facetrail.open(data, workers=1, vision_model="yunet-intel")
    try:
        counts = model_counts(midway)
        assert 1 <= counts[INTEL] < faces and counts[INTEL] + counts[DLIB] == faces
        assert midway.faces_of_other_models() == counts[DLIB]  # told by `index status`
        assert len(midway.gallery.index()) == counts[INTEL]  # only this model's templates are searched
    finally:
        midway.close()

    done = cli(data, "index", "reembed", model="yunet-intel")
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["already"] == counts[INTEL] and report["faces"] == faces - counts[INTEL]
    assert report["not_found"] == [] and report["unavailable"] == [] and report["failed_images"] == {}
    assert sorted(p.name for p in (data / "index").glob("*.ftindex")) == [f"{INTEL}.ftindex"]

    ft = Facetrail.open(data, workers=1, vision_model="yunet-intel")
    try:
        assert model_counts(ft) == {INTEL: faces}
        assert len(ft.gallery.index()) == faces
        with ft.db.read() as session:
            rows = session.execute(select(Face.id, Face.template, Face.person_id)).all()
            assert {r.id: r.person_id for r in rows} == people  # clustering and names are kept
            assert set(session.scalars(select(Person.model_id))) <= {INTEL}
        vectors = open_templates(ft.vault, [r.template for r in rows], 256)
        assert all(abs(float(np.linalg.norm(v)) - 1) < 1e-4 for v in vectors)
        outcome = ft.search.search(local_actor(), sample_bytes("obama2.jpg"), purpose="demo", case_ref="case-1")
        assert outcome.calibrated and outcome.results  # the new model's own calibration and bands
        top = outcome.results[0]
        assert Path(top.original_name).name.startswith("obama") and top.band == "strong", top
    finally:
        ft.close()
    again = cli(data, "index", "reembed", model="yunet-intel")
    assert json.loads(again.stdout)["faces"] == 0  # nothing left to do


def test_reembed_refuses_while_opt_outs_of_the_old_model_exist(data: Path) -> None:
    ft = Facetrail.open(data, workers=1, vision_model="dlib")
    try:
        with ft.db.read() as session:
            template = session.scalars(select(Face.template)).first()
        assert ft.suppressions.add(None, open_templates(ft.vault, [template], 128), ["*"]) == 1
    finally:
        ft.close()
    intel = Facetrail.open(data, workers=1, vision_model="yunet-intel", model_change=True)
    try:
        with pytest.raises(ConflictError, match="opt-out templates of another model \\(1 of dlib-resnet-v1\\)"):
            intel.reembed(local_actor())
        assert model_counts(intel) == {DLIB: sum(model_counts(intel).values())}
    finally:
        intel.close()


def test_reembed_stops_at_a_damaged_model_file_and_resumes_once_it_is_repaired(
        data: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The installation's fault, not the images': not every image marked failed, but the job stopped with the cause,
    nothing changed, and the next run (the file repaired) does it all."""
    faces = sum(model_counts_at(data).values())
    monkeypatch.setitem(model_files.SHA256, "face-reidentification-retail-0095.bin", "0" * 64)
    intel = Facetrail.open(data, workers=1, vision_model="yunet-intel", model_change=True)
    try:
        with pytest.raises(ModelUnavailableError, match="face-reidentification-retail-0095.bin has SHA-256"):
            intel.reembed(local_actor())
        assert model_counts(intel) == {DLIB: faces}
    finally:
        intel.close()
    monkeypatch.undo()
    done = cli(data, "index", "reembed", model="yunet-intel")
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["already"] == 0 and report["faces"] == faces and report["failed_images"] == {}
