"""The per-item time limit: a file whose analysis hangs, or kills its worker, is reported and the rest of the
batch is ingested (real worker processes, killed and replaced)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from sqlalchemy import select

from facetrail.accounts.roles import Actor
from facetrail.ingest import photo
from facetrail.runtime import Facetrail
from facetrail.sources.inputs import from_upload
from facetrail.store.models import Face
from tests.conftest import add_source, sample_bytes
from tests.ingest import stall


@pytest.mark.slow
def test_a_hanging_or_crashing_file_is_reported_and_the_batch_goes_on(tmp_path: Path, actor: Actor,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(photo, "analyze_in_worker", stall.analyze_or_misbehave)
    ft = Facetrail.open(tmp_path / "data", create=True, workers=2, item_time_limit_s=25)
    try:
        source = add_source(ft)
        files = {
            "obama.jpg": sample_bytes("obama.jpg"),
            "hangs.jpg": sample_bytes("obama2.jpg") + stall.STALL,  # a valid JPEG with a marker after its end
            "biden.jpg": sample_bytes("biden.jpg"),
            "dies.jpg": sample_bytes("biden2.jpg") + stall.DIE,
            "two_people.jpg": sample_bytes("two_people.jpg"),
        }
        started = time.monotonic()
        items = [item for n, d in files.items() for item in from_upload(n, d, ft.input_limits)]
        report = ft.ingest.ingest(actor, source, items)
        elapsed = time.monotonic() - started
        errors = {e.name: e.cause for e in report.errors}
        assert set(errors) == {"hangs.jpg", "dies.jpg"}, errors
        assert "time limit" in errors["hangs.jpg"] and "died" in errors["dies.jpg"]
        assert report.images_added == 3 and report.faces_added == 4
        assert elapsed < 300  # bounded by the limit and a few restarts, not by the hanging file
        with ft.db.read() as session:
            stored = sorted(session.scalars(select(Face.id)))
        assert sorted(ft.gallery.index().ids().tolist()) == stored and len(stored) == 4
    finally:
        ft.close()
