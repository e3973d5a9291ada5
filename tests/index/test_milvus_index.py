"""The Milvus engine on milvus-lite: deletion is hidden at once and made real by the purge, which rewrites only the
source buckets that had deletions; the collection records its model and generation; a rebuild replaces it whole."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from facetrail.errors import FacetrailError, IndexCorruptError
from facetrail.index.milvus_index import DIRTY, MilvusIndex, MilvusStore, MilvusTuning

DIM = 16
BUCKETS = 4


def vectors(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(n, DIM)).astype(np.float32)


def tuning(tmp_path: Path, model_id: str = "model-a") -> MilvusTuning:
    return MilvusTuning(uri=str(tmp_path / "milvus-lite.db"), buckets=BUCKETS, model_id=model_id)


def files_holding(root: Path, needle: bytes) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file() and needle in p.read_bytes())


@pytest.fixture
def store(tmp_path: Path) -> Iterator[MilvusStore]:
    opened = MilvusStore(tuning(tmp_path), DIM, tmp_path / "model.lock")
    yield opened
    opened.close()


@pytest.fixture
def index(store: MilvusStore) -> MilvusIndex:
    """ids 1..200 in sources 1..8 (buckets 1, 2, 3, 0, 1, 2, 3, 0), flushed to segment files."""
    ix = store.create()
    ix.add(np.arange(1, 201, dtype=np.int64), vectors(200), np.repeat(np.arange(1, 9), 25))
    ix.set_generation(1)
    with store.writing():
        ix.persist()
    return ix


def test_removed_ids_are_never_returned_before_the_purge_nor_by_another_client(
        index: MilvusIndex, store: MilvusStore, tmp_path: Path) -> None:
    rows = vectors(200)
    erased = [7, 8, 30, 31]  # sources 1 and 2
    assert {h.face_id for h in index.search(rows[6], 3)} >= {7}
    assert index.remove(erased) == 4
    # The window: the rows are only marked deleted (their vectors are still in the segment files) ...
    lite = Path(store.tuning.uri)
    assert files_holding(lite, rows[6].tobytes()) != []
    # ... yet no read returns them, through this client or another one on the same server.
    other = MilvusStore(tuning(tmp_path), DIM, tmp_path / "model.lock")
    try:
        again = other.open()
        assert again is not None
        for reader in (index, again):
            assert not set(erased) & set(reader.ids().tolist()) and len(reader) == 196
            for face in erased:
                for partitions in (None, {1}, {1, 2}, {2, 5}):
                    assert face not in {h.face_id for h in reader.search(rows[face - 1], 200, partitions)}
    finally:
        other.close()


def test_the_purge_rewrites_only_the_buckets_with_deletions_and_no_byte_of_the_removed_is_left(
        index: MilvusIndex, store: MilvusStore) -> None:
    rows = vectors(200)
    before = dict(index._partitions(fresh=True))
    index.remove([7, 30])  # sources 1 and 2: buckets 1 and 2
    assert index._dirty() == {1, 2}
    with store.writing():
        index.purge()
    after = index._partitions(fresh=True)
    assert after[0] == before[0] and after[3] == before[3]  # untouched
    assert after[1] != before[1] and after[2] != before[2] and all(len(names) == 1 for names in after.values())
    assert index._dirty() == set()
    lite = Path(store.tuning.uri)
    assert files_holding(lite, rows[6].tobytes()) == [] and files_holding(lite, rows[29].tobytes()) == []
    assert files_holding(lite, rows[8].tobytes()) != []  # a living neighbour of the same bucket is still there
    assert store.persisted_ids() == set(range(1, 201)) - {7, 30}
    assert [h.face_id for h in index.search(rows[8], 1, {1})] == [9]


def test_a_purge_by_another_process_rewrites_what_this_one_marked(index: MilvusIndex, store: MilvusStore,
                                                                   tmp_path: Path) -> None:
    """The marked buckets are recorded in the collection, not in the marking process's memory."""
    rows = vectors(200)
    index.remove([101])  # source 5: bucket 1
    other = MilvusStore(tuning(tmp_path), DIM, tmp_path / "model.lock")
    try:
        again = other.open()
        assert again is not None and again._dirty() == {1}
        with other.writing():
            again.purge()
    finally:
        other.close()
    assert files_holding(Path(store.tuning.uri), rows[100].tobytes()) == []


def test_an_unpersisted_change_reopens_with_no_generation(index: MilvusIndex, store: MilvusStore) -> None:
    """Changes reach the engine at once; until persisted the collection says it reflects no store generation,
    so that a process that crashed in between leaves an index the gallery compares with the store."""
    index.add(np.array([500], dtype=np.int64), vectors(1, seed=5), np.array([3]))
    reopened = store.open()
    assert reopened is not None and reopened.generation == -1 and 500 in reopened.ids()
    index.set_generation(2)
    index.persist()
    reopened = store.open()
    assert reopened is not None and reopened.generation == 2


def test_a_collection_of_another_model_or_dimension_is_refused(index: MilvusIndex, store: MilvusStore,
                                                                tmp_path: Path) -> None:
    assert index.generation == 1
    wrong = MilvusStore(tuning(tmp_path, model_id="model-b"), DIM, tmp_path / "model.lock")
    wrong.alias = store.alias  # model-a's collection, opened for model-b
    narrow = MilvusStore(tuning(tmp_path), DIM // 2, tmp_path / "model.lock")
    try:
        with pytest.raises(IndexCorruptError, match="model 'model-a'"):
            wrong.open()
        with pytest.raises(IndexCorruptError, match="16-d vectors"):
            narrow.open()
    finally:
        wrong.close()
        narrow.close()


def test_a_rebuild_replaces_the_collection_and_drops_the_old_one_with_its_files(
        index: MilvusIndex, store: MilvusStore) -> None:
    lite = Path(store.tuning.uri)
    old = index.collection
    assert any(old in str(p) for p in lite.rglob("*.parquet"))
    fresh = store.create()
    fresh.add(np.array([1], dtype=np.int64), vectors(1, seed=3), np.array([1]))
    fresh.set_generation(7)
    fresh.persist()
    assert old not in store.client.list_collections()
    assert not any(old in str(p) for p in lite.rglob("*"))
    assert files_holding(lite, vectors(200)[150].tobytes()) == []
    reopened = store.open()
    assert reopened is not None and reopened.collection == fresh.collection and reopened.generation == 7


def test_an_unknown_index_type_or_an_unreachable_server_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(FacetrailError, match="unknown Milvus index type 'DISKANN'"):
        MilvusStore(MilvusTuning(uri=str(tmp_path / "x.db"), index_type="DISKANN"), DIM, tmp_path / "l")
    started = time.monotonic()
    with pytest.raises(FacetrailError, match="cannot reach the Milvus server at http://127.0.0.1:9"):
        MilvusStore(MilvusTuning(uri="http://127.0.0.1:9"), DIM, tmp_path / "l")
    assert time.monotonic() - started < 60


def test_dirty_buckets_survive_as_a_property(index: MilvusIndex) -> None:
    index.remove([1])
    props = index.client.describe_collection(index.collection)["properties"]
    assert props[DIRTY] == "1"


def test_a_purge_cut_off_mid_rewrite_leaves_no_duplicate_and_is_finished_by_the_next(
        index: MilvusIndex, store: MilvusStore) -> None:
    """As a crash leaves it: bucket 1 still marked, its new partition holding a copy of part of its rows."""
    rows = vectors(200)
    index.remove([2])
    half = f"b1_{'0' * 12}"
    index.client.create_partition(index.collection, half)
    index.client.insert(index.collection, [{"id": i, "source": 1, "vector": rows[i - 1].tolist()}
                                           for i in range(3, 13)], partition_name=half)
    index._parts = None
    hits = [h.face_id for h in index.search(rows[4], 10, {1, 5})]
    assert hits[0] == 5 and len(hits) == len(set(hits)) == 10  # the copies are not returned twice
    assert len(index.ids()) == 199 and 2 not in index.ids()
    with store.writing():
        index.purge()
    assert len(index._partitions(fresh=True)[1]) == 1 and len(index) == 199 and index._dirty() == set()
    assert files_holding(Path(store.tuning.uri), rows[1].tobytes()) == []


def test_two_rebuilds_of_a_missing_collection_at_once_keep_the_first_published(
        store: MilvusStore, tmp_path: Path) -> None:
    """Two processes that open a data directory with no collection each rebuild one: the second to persist takes
    the first one's, which that process goes on using, instead of dropping it from under it."""
    other = MilvusStore(tuning(tmp_path), DIM, tmp_path / "model.lock")
    try:
        assert store.open() is None and other.open() is None  # both find none, then rebuild
        first, second = store.create(), other.create()
        rows = vectors(60)
        for ix in (first, second):
            ix.add(np.arange(1, 51, dtype=np.int64), rows[:50], np.repeat(np.arange(1, 6), 10))
            ix.set_generation(3)
        with store.writing():
            first.persist()
        ours = second.collection
        with other.writing():
            second.persist()
        assert second.collection == first.collection != ours
        assert not other.client.has_collection(ours)  # the one not published is dropped, its files with it
        assert second.generation == 3
        first.add(np.array([51], dtype=np.int64), rows[50:51], np.array([1]))  # the first still writes
        assert second.search(rows[50], 1)[0].face_id == 51
        assert sorted(int(i) for i in store.open().ids()) == list(range(1, 52))
    finally:
        other.close()


def test_a_rebuild_started_before_another_process_published_one_keeps_that_one(
        store: MilvusStore, tmp_path: Path) -> None:
    """The second process finds no collection, the first publishes its rebuild, then the second starts its own:
    that one replaces nothing, so the first's stays."""
    other = MilvusStore(tuning(tmp_path), DIM, tmp_path / "model.lock")
    try:
        assert store.open() is None and other.open() is None
        first = store.create()
        first.add(np.arange(1, 11, dtype=np.int64), vectors(10), np.ones(10, dtype=np.int64))
        with store.writing():
            first.persist()
        second = other.create()  # after the first was published
        with other.writing():
            second.persist()
        assert second.collection == first.collection and len(first) == 10
    finally:
        other.close()


@pytest.mark.usefixtures("index")  # a collection published and in use
def test_an_index_whose_collection_another_process_rebuilt_follows_the_alias(
        store: MilvusStore, tmp_path: Path) -> None:
    """`facetrail index rebuild` in one process drops the collection a server in another is using: the server's
    index follows the alias to the new one on its next refresh (the gallery's, before each search)."""
    loaded = store.open()
    assert loaded is not None and loaded.refresh() == 0
    other = MilvusStore(tuning(tmp_path), DIM, tmp_path / "model.lock")
    try:
        rebuilt = other.create()
        rows = vectors(300, seed=1)
        rebuilt.add(np.arange(1000, 1100, dtype=np.int64), rows[:100], np.repeat(np.arange(1, 5), 25))
        rebuilt.set_generation(7)
        with other.writing():
            rebuilt.persist()
    finally:
        other.close()
    assert not store.client.has_collection(loaded.collection)  # dropped with its files
    assert loaded.refresh() == 1 and loaded.collection == rebuilt.collection and loaded.generation == 7
    assert loaded.search(rows[42], 1)[0].face_id == 1042
    assert loaded.count([1]) == 25 and loaded.refresh() == 0
