"""The gallery keeps the index in step with the store, and rebuilds it from the store when needed."""

from __future__ import annotations

from collections.abc import Collection
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import create_engine

from facetrail.accounts.roles import Actor
from facetrail.index.base import Hit
from facetrail.index.faiss_index import FaissIndex
from facetrail.index.gallery import Gallery
from facetrail.runtime import Facetrail
from tests.conftest import sample_bytes


def index_file(ft: Facetrail) -> Path:
    """The embedded index's file (index/faiss_store.py)."""
    return ft.data / "index" / f"{ft.gallery.model_id}.ftindex"


def result_ids(ft: Facetrail, actor: Actor, photo: str = "obama2.jpg") -> list[tuple[int, float]]:
    outcome = ft.search.search(actor, sample_bytes(photo), purpose="demo", case_ref="t", top_k=30, min_band="none")
    return [(r.face_id, r.score) for r in outcome.results]


def delete_behind_the_index(ft: Facetrail, face_id: int) -> None:
    """Delete a face from the store as another process would: the row goes and the generation moves on."""
    engine = create_engine(ft.db.url)  # a connection of its own, on SQLite or PostgreSQL
    try:
        with engine.begin() as conn:
            conn.exec_driver_sql(f"DELETE FROM faces WHERE id = {int(face_id)}")
            conn.exec_driver_sql("UPDATE meta SET value = CAST(CAST(value AS INTEGER) + 1 AS TEXT) "
                                 "WHERE key = 'index_generation'")
    finally:
        engine.dispose()


def test_rebuilt_index_returns_the_same_results(samples_ft: Facetrail, actor: Actor) -> None:
    before = result_ids(samples_ft, actor)
    report = samples_ft.rebuild_index(actor)
    assert report.rebuilt and report.added == len(samples_ft.gallery.index())
    assert result_ids(samples_ft, actor) == before
    assert len(before) == 26


@pytest.mark.usefixtures("faiss_only")
def test_missing_index_file_is_rebuilt_on_open(samples_ft: Facetrail, actor: Actor) -> None:
    before = result_ids(samples_ft, actor)
    samples_ft.close()
    index_file(samples_ft).unlink()
    reopened = Facetrail.open(samples_ft.data, workers=1)
    assert result_ids(reopened, actor) == before
    assert reopened.gallery.last_sync is not None and reopened.gallery.last_sync.rebuilt
    reopened.close()


@pytest.mark.usefixtures("faiss_only")
def test_corrupt_index_file_is_rebuilt_on_open(samples_ft: Facetrail, actor: Actor) -> None:
    before = result_ids(samples_ft, actor)
    samples_ft.close()
    raw = bytearray(index_file(samples_ft).read_bytes())
    raw[-40] ^= 0x55  # inside the last sealed frame
    index_file(samples_ft).write_bytes(bytes(raw))
    reopened = Facetrail.open(samples_ft.data, workers=1)
    assert result_ids(reopened, actor) == before
    assert "damaged" in reopened.gallery.last_sync.reason  # type: ignore[union-attr]  # the AES-GCM tag
    reopened.close()


def test_stale_index_catches_up_with_the_store(samples_ft: Facetrail, actor: Actor) -> None:
    """A face deleted from the store by another process disappears from this process's results."""
    before = result_ids(samples_ft, actor)
    victim = before[0][0]
    delete_behind_the_index(samples_ft, victim)
    after = result_ids(samples_ft, actor)
    assert victim not in [face_id for face_id, _ in after]
    assert after == before[1:]


class ListIndex:
    """A second engine, brute force over numpy arrays, persisted in a dict: the gallery must need nothing else
    than the `VectorIndex` and `IndexStore` Protocols to keep it in step with the store."""

    def __init__(self, persisted: set[int]) -> None:
        self.persisted = persisted
        self.vectors: dict[int, tuple[np.ndarray, int]] = {}
        self.generation = 0
        self.purges = 0

    def __len__(self) -> int:
        return len(self.vectors)

    def ids(self) -> np.ndarray:
        return np.array(sorted(self.vectors), dtype=np.int64)

    def add(self, ids: np.ndarray, vectors: np.ndarray, partitions: np.ndarray) -> None:
        for face_id, vector, partition in zip(ids.tolist(), vectors, partitions.tolist(), strict=True):
            self.vectors[face_id] = (vector, partition)

    def remove(self, ids: Collection[int]) -> int:
        return sum(self.vectors.pop(int(i), None) is not None for i in ids)

    def search(self, vector: np.ndarray, k: int, partitions: Collection[int] | None = None) -> list[Hit]:
        hits = [Hit(face_id, float(np.linalg.norm(v - vector))) for face_id, (v, p) in self.vectors.items()
                if partitions is None or p in partitions]
        return sorted(hits, key=lambda h: h.distance)[:k]

    def count(self, partitions: Collection[int] | None = None) -> int:
        return sum(partitions is None or p in partitions for _, p in self.vectors.values())

    def set_generation(self, generation: int) -> None:
        self.generation = generation

    def persist(self) -> None:
        self.persisted.clear()
        self.persisted.update(self.vectors)

    def purge(self) -> None:
        self.purges += 1
        self.persist()

    def refresh(self) -> int:
        return 0  # one process: nothing persisted elsewhere

    def settle(self) -> None:
        pass  # nothing runs in the background


class ListStore:
    def __init__(self) -> None:
        self.persisted: set[int] = set()
        self.created: list[ListIndex] = []

    def open(self) -> ListIndex | None:
        return None  # nothing survives this engine's process: the gallery rebuilds from the store

    def create(self) -> ListIndex:
        self.created.append(ListIndex(self.persisted))
        return self.created[-1]

    def writing(self) -> AbstractContextManager[None]:
        return nullcontext()

    def persisted_ids(self) -> set[int]:
        return set(self.persisted)

    def unsafe_at_rest(self) -> str | None:
        return None


def test_the_gallery_keeps_any_engine_behind_the_protocol_in_step(samples_ft: Facetrail, actor: Actor) -> None:
    faiss_results = result_ids(samples_ft, actor)
    store = ListStore()
    gallery = Gallery(samples_ft.db, store, samples_ft.vault, model_id=samples_ft.gallery.model_id,
                      dim=samples_ft.gallery.dim)
    samples_ft.search.gallery = gallery
    assert result_ids(samples_ft, actor) == faiss_results  # rebuilt from the store: the same 26 results
    assert gallery.last_sync is not None and gallery.last_sync.reason == "index missing"
    assert gallery.persisted_ids() == {face_id for face_id, _ in faiss_results}

    victim = faiss_results[0][0]
    samples_ft.erasure.gallery = gallery
    samples_ft.erasure.erase(actor.name, [victim], request_id=None)
    assert store.created[-1].purges == 1 and victim not in gallery.persisted_ids()
    assert [face_id for face_id, _ in result_ids(samples_ft, actor)] == [f for f, _ in faiss_results[1:]]


@pytest.mark.usefixtures("faiss_only")
def test_an_approximate_index_through_the_gallery(samples_ft: Facetrail, actor: Actor) -> None:
    """Above `index_approximate_above` the gallery's index is an inverted file: sealed, persisted, reopened and
    caught up with the store like the exact one, with the same results (a small gallery is visited whole)."""
    before = result_ids(samples_ft, actor)
    samples_ft.close()
    ft = Facetrail.open(samples_ft.data, workers=1, index_approximate_above=5, index_nprobe=1)
    ft.rebuild_index(actor)
    index = ft.gallery.index()
    assert isinstance(index, FaissIndex) and index.approximate and len(index) == len(before)
    assert result_ids(ft, actor) == before
    ft.close()
    reopened = Facetrail.open(samples_ft.data, workers=1, index_approximate_above=5, index_nprobe=1)
    index = reopened.gallery.index()
    assert isinstance(index, FaissIndex) and index.approximate
    assert reopened.gallery.last_sync is None or not reopened.gallery.last_sync.rebuilt, "the sealed file opened"
    victim = before[0][0]
    delete_behind_the_index(samples_ft, victim)
    assert result_ids(reopened, actor) == before[1:]
    reopened.close()
