"""The same behaviour from every engine behind `IndexStore` and `VectorIndex`: the embedded FAISS index (a sealed
file) and Milvus (milvus-lite, the embedded build with the cluster's client), each through its real store."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import numpy as np
import pytest

from facetrail.config import get_settings
from facetrail.crypto.keyring import Keyring
from facetrail.crypto.master import LocalMasterKey, new_key_bytes
from facetrail.crypto.vault import Vault
from facetrail.index.base import IndexStore, VectorIndex
from facetrail.index.engines import open_index_store

DIM = 8
MODEL = "test-model-v1"


def vectors(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(n, DIM)).astype(np.float32)


def exact_nearest(query: np.ndarray, ids: np.ndarray, rows: np.ndarray, k: int) -> list[int]:
    distances = np.linalg.norm(rows - query, axis=1)
    return [int(ids[i]) for i in np.argsort(distances, kind="stable")[:k]]


@pytest.fixture(params=["faiss", "milvus"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[IndexStore]:
    settings = get_settings(data=tmp_path / "data", index_engine=request.param)
    vault = Vault(Keyring(tmp_path / "keys" / "keyring.db", LocalMasterKey(new_key_bytes(), "test")))
    with ExitStack() as closing:
        yield open_index_store(settings, vault, model_id=MODEL, dim=DIM, closing=closing)


def filled(store: IndexStore, n: int = 100) -> VectorIndex:
    """ids 1..n: the first half in source 1, the rest in source 2; persisted at generation 3."""
    index = store.create()
    index.add(np.arange(1, n + 1, dtype=np.int64), vectors(n), np.repeat([1, 2], n // 2))
    index.set_generation(3)
    with store.writing():
        index.persist()
    return index


def test_nothing_persisted_yet_opens_as_none(store: IndexStore) -> None:
    assert store.open() is None and store.unsafe_at_rest() is None


def test_search_is_exact_nearest_first_with_true_distances(store: IndexStore) -> None:
    index = filled(store)
    rows, ids = vectors(100), np.arange(1, 101)
    for probe in (0, 41, 99):
        hits = index.search(rows[probe], 5)
        assert [h.face_id for h in hits] == exact_nearest(rows[probe], ids, rows, 5)
        assert hits[0].distance == pytest.approx(0.0, abs=1e-3)
        assert hits[1].distance == pytest.approx(float(np.linalg.norm(rows[hits[1].face_id - 1] - rows[probe])),
                                                 rel=1e-4)


def test_partition_filter(store: IndexStore) -> None:
    index = filled(store)
    v = vectors(100)[41]  # id 42 is in source 1
    assert {h.face_id for h in index.search(v, 10, partitions={2})} <= set(range(51, 101))
    assert index.search(v, 10, partitions={3}) == [] and index.search(v, 10, partitions=set()) == []
    assert len(index.search(v, 10, partitions={1, 2})) == 10 and index.search(v, 0) == []


def test_removal_is_real_and_counted(store: IndexStore) -> None:
    index = filled(store)
    assert index.remove([42, 999]) == 1 and index.remove([42]) == 0 and index.remove([]) == 0
    assert len(index) == 99 and 42 not in index.ids()
    assert all(h.face_id != 42 for h in index.search(vectors(100)[41], 99))


def test_count_is_what_a_search_in_those_partitions_reaches(store: IndexStore) -> None:
    index = filled(store)
    assert index.count() == 100 and index.count({1}) == 50 and index.count({1, 2}) == 100
    assert index.count({3}) == 0 and index.count(set()) == 0
    index.remove([1, 2, 99])
    assert index.count({1}) == 48 and index.count({2}) == 49 and index.count() == 97


def test_re_adding_an_id_replaces_it_in_its_new_partition(store: IndexStore) -> None:
    index = filled(store)
    index.add(np.array([42], dtype=np.int64), np.zeros((1, DIM), dtype=np.float32), np.array([2]))
    assert len(index) == 100
    assert index.search(np.zeros(DIM, dtype=np.float32), 1, partitions={2})[0].face_id == 42
    assert 42 not in {h.face_id for h in index.search(np.zeros(DIM, dtype=np.float32), 100, partitions={1})}


def test_persisted_contents_and_generation_reopen(store: IndexStore) -> None:
    filled(store)
    reopened = store.open()
    assert reopened is not None and reopened.generation == 3 and len(reopened) == 100
    assert store.persisted_ids() == set(range(1, 101))
    assert reopened.search(vectors(100)[7], 1)[0].face_id == 8


def test_purge_keeps_the_living_and_drops_the_removed(store: IndexStore) -> None:
    index = filled(store)
    index.remove(range(1, 11))
    index.set_generation(4)
    with store.writing():
        index.purge()
    assert store.persisted_ids() == set(range(11, 101))
    reopened = store.open()
    assert reopened is not None and reopened.generation == 4
    assert [h.face_id for h in reopened.search(vectors(100)[20], 1, partitions={1})] == [21]


def test_a_new_index_replaces_the_persisted_one_once_persisted(store: IndexStore) -> None:
    filled(store)
    fresh = store.create()
    fresh.add(np.array([500], dtype=np.int64), vectors(1, seed=9), np.array([7]))
    assert store.persisted_ids() == set(range(1, 101))  # not yet persisted: the old one stands
    fresh.set_generation(9)
    with store.writing():
        fresh.persist()
    assert store.persisted_ids() == {500}
    reopened = store.open()
    assert reopened is not None and reopened.generation == 9


def test_bad_input_is_refused_and_changes_nothing(store: IndexStore) -> None:
    index = filled(store)
    with pytest.raises(ValueError, match="differ"):
        index.add(np.array([1, 2], dtype=np.int64), vectors(3), np.array([1, 1]))
    with pytest.raises(ValueError, match="negative"):
        index.add(np.array([-1], dtype=np.int64), vectors(1), np.array([1]))
    assert len(index) == 100
