"""The FAISS index: true removal, partition filtering, atomic and checksummed persistence."""

from __future__ import annotations

from pathlib import Path

import faiss
import numpy as np
import pytest

from facetrail.errors import IndexCorruptError
from facetrail.index.faiss_index import FaissIndex, IndexTuning

DIM = 8


def vectors(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(n, DIM)).astype(np.float32)


@pytest.fixture
def index(tmp_path: Path) -> FaissIndex:
    ix = FaissIndex(tmp_path / "faces.ftindex", DIM)
    ix.add(np.arange(1, 101, dtype=np.int64), vectors(100), np.repeat([1, 2], 50))
    return ix


def test_nearest_is_itself(index: FaissIndex) -> None:
    v = vectors(100)[41]
    hits = index.search(v, 3)
    assert hits[0].face_id == 42 and hits[0].distance == pytest.approx(0.0, abs=1e-3)
    assert hits[0].distance <= hits[1].distance <= hits[2].distance


def test_partition_filter(index: FaissIndex) -> None:
    v = vectors(100)[41]  # id 42 is in partition 1
    assert all(h.face_id > 50 for h in index.search(v, 10, partitions={2}))
    assert index.search(v, 10, partitions={3}) == []
    assert len(index.search(v, 10, partitions={1, 2})) == 10


def test_removal_is_real(index: FaissIndex) -> None:
    assert index.remove([42, 999]) == 1
    assert len(index) == 99
    assert 42 not in index.ids()
    assert all(h.face_id != 42 for h in index.search(vectors(100)[41], 99))


def test_re_adding_an_id_replaces_it(index: FaissIndex) -> None:
    index.add(np.array([42], dtype=np.int64), np.zeros((1, DIM), dtype=np.float32), np.array([2]))
    assert len(index) == 100
    assert index.search(np.zeros(DIM, dtype=np.float32), 1, partitions={2})[0].face_id == 42


def test_save_and_load_round_trip(index: FaissIndex, tmp_path: Path) -> None:
    index.set_generation(7)
    index.persist()
    loaded = FaissIndex.load(tmp_path / "faces.ftindex", DIM)
    assert loaded.generation == 7 and len(loaded) == 100
    v = vectors(100)[3]
    assert loaded.search(v, 5, partitions={1}) == index.search(v, 5, partitions={1})
    assert not list(tmp_path.glob(".*.tmp")), "no temporary file left behind"


@pytest.mark.parametrize("damage", ["truncate", "flip", "empty", "garbage"])
def test_damaged_file_is_detected(index: FaissIndex, tmp_path: Path, damage: str) -> None:
    index.persist()
    path = tmp_path / "faces.ftindex"
    raw = bytearray(path.read_bytes())
    if damage == "truncate":
        raw = raw[: len(raw) // 2]
    elif damage == "flip":
        raw[-100] ^= 0xFF
    elif damage == "empty":
        raw = bytearray()
    else:
        raw = bytearray(b"not an index at all")
    path.write_bytes(bytes(raw))
    with pytest.raises(IndexCorruptError):
        FaissIndex.load(path, DIM)


def test_wrong_dimension_is_detected(index: FaissIndex, tmp_path: Path) -> None:
    index.persist()
    with pytest.raises(IndexCorruptError, match="8-d"):
        FaissIndex.load(tmp_path / "faces.ftindex", 16)


def test_search_threads_are_set_for_the_call_and_restored(tmp_path: Path) -> None:
    ix = FaissIndex(tmp_path / "t.ftindex", DIM, tuning=IndexTuning(search_threads=1))
    ix.add(np.arange(1, 11, dtype=np.int64), vectors(10), np.zeros(10, dtype=np.int64))
    before = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(3)
    try:
        assert ix.search(vectors(10)[2], 1)[0].face_id == 3
        assert faiss.omp_get_max_threads() == 3, "the caller's setting is left as it was"
    finally:
        faiss.omp_set_num_threads(before)


def test_ids_across_template_blocks_round_trip(tmp_path: Path) -> None:
    """Templates are kept in blocks of 65,536 ids: ids on both sides of a block's edge, far apart, added out of
    order, are found, saved and loaded (the loaded blocks are views of the file until written)."""
    ids = np.array([200_001, 65_536, 65_535, 3, 131_072], dtype=np.int64)
    vs = vectors(5, seed=4)
    ix = FaissIndex(tmp_path / "b.ftindex", DIM)
    ix.add(ids, vs, np.array([1, 2, 1, 2, 1]))
    ix.persist()
    loaded = FaissIndex.load(tmp_path / "b.ftindex", DIM)
    for face_id, v in zip(ids, vs, strict=True):
        assert loaded.search(v, 1)[0].face_id == face_id
    loaded.add(np.array([65_534], dtype=np.int64), vs[:1] + 10, np.array([2]))  # writes into a loaded block
    assert loaded.search(vs[0] + 10, 1)[0].face_id == 65_534
    assert loaded.search(vs[0], 1)[0].face_id == 200_001
    assert sorted(loaded.ids().tolist()) == sorted([*ids.tolist(), 65_534])
