"""The search-latency benchmark (bench/search_latency.py): its bulk path leaves the synthetic faces as ingestion
would (a row each, the template sealed under its own data key, in the index at the store's generation, so the
server opens it with nothing to catch up, and a search's hits resolve to results), and it refuses an answer that
did not reach the whole collection or found someone else first. No timings are asserted: `make bench-latency`
reports them."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from bench.load import LoadTestError
from bench.search_latency import add_synthetic, check_answer, percentile
from sqlalchemy import func, select

from facetrail.crypto.vault import key_id_of
from facetrail.index.gallery import SyncReport
from facetrail.runtime import Facetrail
from facetrail.store.models import Face, StoredImage
from facetrail.store.templates import open_templates


def test_synthetic_faces_are_stored_sealed_and_indexed_so_that_searches_resolve_them(tmp_path: Path) -> None:
    data = tmp_path / "data"
    Facetrail.open(data, create=True, workers=1).close()
    assert add_synthetic(data, 300, batch=128) == 300  # three batches, the last one partial
    ft = Facetrail.open(data, workers=1)
    try:
        with ft.db.read() as session:
            rows = session.execute(select(Face.id, Face.key_id, Face.template, Face.source_id)
                                   .order_by(Face.id)).all()
            images = session.scalar(select(func.count()).select_from(StoredImage))
        assert len(rows) == 300 and images == 75
        assert len({r.key_id for r in rows}) == 300  # a data key of its own for each face
        assert all(key_id_of(r.template) == r.key_id for r in rows)
        vectors = np.stack(open_templates(ft.vault, [r.template for r in rows], ft.gallery.dim))
        assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
        assert ft.gallery.persisted_ids() == {r.id for r in rows}
        ft.gallery.index()
        assert ft.gallery.sync() == SyncReport(0, 0, False)  # at the store's generation: nothing to catch up
        source = rows[0].source_id
        hits = ft.gallery.search(vectors[7], 5, {source})
        assert hits[0].face_id == rows[7].id
        results = ft.search._resolve(hits, {source}, 300)
        assert [r.face_id for r in results] == [h.face_id for h in hits]
        assert results[0].source_name == "synthetic"
    finally:
        ft.close()


def _answer(gallery_size: int, best: str) -> dict[str, object]:
    return {"reach": {"gallery_size": gallery_size}, "results": [{"original_name": f"/photos/{best}"}]}


def test_an_answer_must_reach_the_collection_and_find_the_query_person_first() -> None:
    check_answer(_answer(1025, "obama.jpg"), 1025)
    with pytest.raises(LoadTestError, match="reached 25 faces"):
        check_answer(_answer(25, "obama.jpg"), 1025)
    with pytest.raises(LoadTestError, match="biden.jpg"):
        check_answer(_answer(1025, "biden.jpg"), 1025)
    with pytest.raises(LoadTestError, match="not a photo"):
        check_answer({"reach": {"gallery_size": 1025}, "results": []}, 1025)


def test_percentiles() -> None:
    assert percentile([3.0, 1.0, 2.0], 50) == 2.0
    assert math.isnan(percentile([], 50))
