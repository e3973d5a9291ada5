"""A change of vision model: templates of two models never mix in one index, and `facetrail index reembed`
moves every stored face to the new model, resuming after a kill."""

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
from facetrail.errors import ConflictError, IndexCorruptError
from facetrail.index.faiss_index import FaissIndex, IndexTuning
from facetrail.index.faiss_store import KeyringSealing
from facetrail.runtime import Facetrail, local_actor
from facetrail.store.models import Face, Person
from facetrail.store.templates import open_templates
from facetrail.vision.composite import MODEL_IDS, VisionModel
from tests.conftest import sample_bytes

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


@pytest.fixture
def data(samples_store: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "data"
    shutil.copytree(samples_store, copy)
    return copy


def test_an_index_file_of_another_model_is_refused(data: Path) -> None:
    """Same template length (128), other model: the index file made for dlib is never used for YuNet + dlib."""
    index_dir = data / "index"
    shutil.copy(index_dir / f"{DLIB}.ftindex", index_dir / f"{YUNET_DLIB}.ftindex")
    ft = Facetrail.open(data, workers=1, vision_model="yunet-dlib")
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
    before = Facetrail.open(data, workers=1)
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
    ft = Facetrail.open(data, workers=1)
    try:
        with ft.db.read() as session:
            template = session.scalars(select(Face.template)).first()
        assert ft.suppressions.add(None, open_templates(ft.vault, [template], 128), ["*"]) == 1
    finally:
        ft.close()
    intel = Facetrail.open(data, workers=1, vision_model="yunet-intel")
    try:
        with pytest.raises(ConflictError, match="opt-out templates of another model \\(1 of dlib-resnet-v1\\)"):
            intel.reembed(local_actor())
        assert model_counts(intel) == {DLIB: sum(model_counts(intel).values())}
    finally:
        intel.close()
