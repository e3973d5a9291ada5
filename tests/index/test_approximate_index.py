"""The embedded index above its exact size: an inverted file (IVF) trained on the gallery's own vectors, with
real removal and a vectorised partition filter. Small sizes, real FAISS, synthetic templates clustered like
dlib's (bench/synthetic.py)."""

from __future__ import annotations

import math
import mmap
from contextlib import ExitStack
from dataclasses import replace
from pathlib import Path

import faiss
import numpy as np
import pytest
from bench.synthetic import Synthetic, synthetic
from pydantic import ValidationError

from facetrail.config import get_settings
from facetrail.crypto.keyring import Keyring
from facetrail.crypto.master import LocalMasterKey, new_key_bytes
from facetrail.crypto.vault import Vault
from facetrail.errors import IndexCorruptError
from facetrail.index import faiss_index
from facetrail.index.engines import open_index_store
from facetrail.index.faiss_index import (
    FAST_SCAN_ONE_THREAD,
    FAST_SCAN_SPLIT_CELLS,
    FaissIndex,
    IndexTuning,
    compact_codes,
    inverted_file,
    nlist_for,
    pq_for,
)

N = 6000
TUNING = IndexTuning(approximate_above=2000, nprobe=96, model_id="dlib-resnet-v1")


@pytest.fixture(scope="module")
def data() -> Synthetic:
    return synthetic(N, probes=60, seed=7)


def build(path: Path, data: Synthetic, tuning: IndexTuning = TUNING) -> FaissIndex:
    index = FaissIndex(path, 128, tuning=tuning)
    for start in range(0, N, 1500):  # in batches, as ingestion adds: the switch happens on the way
        ids = data.ids[start:start + 1500]
        index.add(ids, data.vectors[ids - 1], ids % 5)
    return index


@pytest.fixture
def ivf(tmp_path: Path, data: Synthetic) -> FaissIndex:
    return build(tmp_path / "ivf.ftindex", data)


@pytest.fixture(scope="module")
def exact(tmp_path_factory: pytest.TempPathFactory, data: Synthetic) -> FaissIndex:
    return build(tmp_path_factory.mktemp("exact") / "exact.ftindex", data, IndexTuning(approximate_above=10 ** 9))


def test_switches_to_ivf_past_the_threshold_and_back_below_half(tmp_path: Path, data: Synthetic) -> None:
    index = FaissIndex(tmp_path / "x.ftindex", 128, tuning=TUNING)
    index.add(data.ids[:1999], data.vectors[:1999], np.zeros(1999, dtype=np.int64))
    assert not index.approximate
    index.add(data.ids[1999:2000], data.vectors[1999:2000], np.zeros(1, dtype=np.int64))
    assert index.approximate and len(index) == 2000
    index.remove(data.ids[:1001].tolist())
    assert not index.approximate and len(index) == 999
    assert sorted(index.ids().tolist()) == data.ids[1001:2000].tolist()
    hits = index.search(data.vectors[1500], 1)
    assert hits[0].face_id == 1501 and hits[0].distance == pytest.approx(0.0, abs=1e-3)


def test_a_tiny_threshold_still_trains(tmp_path: Path, data: Synthetic) -> None:
    index = FaissIndex(tmp_path / "tiny.ftindex", 128, tuning=IndexTuning(approximate_above=3, nprobe=1))
    for face_id in range(1, 9):  # one face at a time, as ingestion adds them
        index.add(np.array([face_id], dtype=np.int64), data.vectors[face_id - 1:face_id], np.array([1]))
        assert index.approximate == (face_id >= 3)
        assert index.search(data.vectors[face_id - 1], 1, {1})[0].face_id == face_id


def test_same_top_result_as_exact_for_planted_mates(ivf: FaissIndex, exact: FaissIndex, data: Synthetic) -> None:
    assert ivf.approximate and not exact.approximate
    for probe, mate in zip(data.probes, data.mates, strict=True):
        approx_hits, exact_hits = ivf.search(probe, 10), exact.search(probe, 10)
        assert approx_hits[0].face_id == exact_hits[0].face_id
        assert approx_hits[0].distance == pytest.approx(exact_hits[0].distance, rel=1e-5)
        if mate in [h.face_id for h in exact_hits]:
            assert mate in [h.face_id for h in approx_hits]
        # The inverted file keeps vectors whole: the distances it returns are exact ones.
        true = [float(np.linalg.norm(probe - data.vectors[h.face_id - 1])) for h in approx_hits]
        assert [h.distance for h in approx_hits] == pytest.approx(true, rel=1e-4)


def _owners(index: FaissIndex) -> list[type]:
    """What holds the memory of each block of the index's templates."""
    owners = []
    for block in index._vec.blocks:
        owner: object = block
        while isinstance(owner, np.ndarray) and owner.base is not None:
            owner = owner.base
        owners.append(type(owner.obj if isinstance(owner, memoryview) else owner))
    return owners


def test_an_inverted_files_templates_are_kept_in_base_pages(tmp_path: Path, data: Synthetic,
                                                            exact: FaissIndex) -> None:
    """An inverted file's blocks of templates are anonymous mappings, which ask the kernel for no huge pages (whose
    compaction made loading a 1M-face index wait: Rows.new_block); an exact index's stay numpy's, which do, for its
    scans. As loaded, as grown, and once the index switches, with the same templates."""
    assert _owners(exact) == [np.ndarray]
    index = build(tmp_path / "ivf.ftindex", data)
    assert index.approximate and _owners(index) == [np.ndarray]  # its first block was made while it was exact
    far = np.array([3 * faiss_index.BLOCK + 5], dtype=np.int64)  # an id three blocks further
    index.add(far, data.vectors[:1], np.zeros(1, dtype=np.int64))
    assert _owners(index) == [np.ndarray, mmap.mmap, mmap.mmap, mmap.mmap]
    index.persist()
    loaded = FaissIndex.load(tmp_path / "ivf.ftindex", 128, tuning=TUNING)
    assert loaded.approximate and _owners(loaded) == [mmap.mmap] * 4
    assert np.array_equal(loaded._vec.get(data.ids), data.vectors[data.ids - 1])
    assert np.array_equal(loaded._vec.get(far), data.vectors[:1])
    assert not loaded._vec.blocks[2].any()  # the blocks between: zeros
    assert loaded.search(data.vectors[0], 2)[0].face_id in {1, int(far[0])}


def test_a_removed_id_is_never_returned(ivf: FaissIndex, data: Synthetic) -> None:
    gone = data.mates[:30]
    assert ivf.remove(gone.tolist()) == 30
    assert ivf.approximate, "still the inverted file: nothing was rebuilt or compacted"
    for probe in data.probes[:30]:
        for partitions in (None, {0, 1, 2, 3, 4}):
            returned = {h.face_id for h in ivf.search(probe, 50, partitions)}
            assert returned.isdisjoint(gone.tolist())
    for face_id in gone:  # its own vector as the query: the nearest possible
        assert int(face_id) not in {h.face_id for h in ivf.search(data.vectors[face_id - 1], 20)}
    assert len(ivf) == N - 30 and not np.isin(gone, ivf.ids()).any()
    assert ivf.remove(gone.tolist()) == 0


def test_codes_of_removed_faces_take_no_place_in_the_shortlist(ivf: FaissIndex, exact: FaissIndex,
                                                                data: Synthetic) -> None:
    kept = data.ids[data.ids % 5 == 0]  # 1,200 of 6,000 left: their codes are a fifth of the inverted file's
    assert ivf.remove(data.ids[data.ids % 5 != 0].tolist()) == N - len(kept)
    assert ivf.approximate, "still the inverted file: the removed codes are still in it until a compaction"
    for probe in data.probes[:5]:
        hits = ivf.search(probe, 400)  # more than the live faces among the 1,000 nearest codes
        assert len(hits) == 400 and all(h.face_id % 5 == 0 for h in hits)
        assert hits[0].face_id == next(h for h in exact.search(probe, 50) if h.face_id % 5 == 0).face_id


def test_removal_survives_a_retrain_and_a_round_trip(tmp_path: Path, data: Synthetic) -> None:
    index = FaissIndex(tmp_path / "r.ftindex", 128, tuning=TUNING)
    index.add(data.ids[:2000], data.vectors[:2000], np.ones(2000, dtype=np.int64))
    trained_at = nlist_for(2000)
    index.remove([5, 6, 7])
    index.add(data.ids[2000:], data.vectors[2000:], np.ones(N - 2000, dtype=np.int64))  # > 2x 2000 - 3: retrain
    assert index.approximate and len(index) == N - 3
    index.set_generation(3)
    index.persist()
    loaded = FaissIndex.load(tmp_path / "r.ftindex", 128, tuning=TUNING)
    assert loaded.approximate and loaded.generation == 3 and len(loaded) == N - 3
    assert nlist_for(N - 3) != trained_at
    for face_id in (5, 6, 7):
        assert face_id not in {h.face_id for h in loaded.search(data.vectors[face_id - 1], 20)}
    assert loaded.search(data.vectors[99], 1)[0].face_id == 100
    loaded.remove([100])
    assert 100 not in {h.face_id for h in loaded.search(data.vectors[99], 20)}


def test_partition_filter_reaches_a_small_partition_whole(ivf: FaissIndex, exact: FaissIndex,
                                                          data: Synthetic) -> None:
    small = data.ids[::200]  # 30 faces moved into partition 9
    ivf.add(small, data.vectors[small - 1], np.full(len(small), 9))
    for probe in data.probes[:10]:
        hits = ivf.search(probe, 30, {9})
        assert sorted(h.face_id for h in hits) == sorted(small.tolist()), "every face of it, none outside"
    assert ivf.search(data.probes[0], 5, {42}) == []
    one = ivf.search(data.probes[0], 10, {3})
    assert one and all(int(h.face_id) % 5 == 3 for h in one)
    assert one[0].face_id == next(h for h in exact.search(data.probes[0], 100) if h.face_id % 5 == 3).face_id


def test_re_adding_an_id_replaces_it_in_the_inverted_file(ivf: FaissIndex, data: Synthetic) -> None:
    ivf.add(np.array([42], dtype=np.int64), data.vectors[4999:5000], np.array([7]))
    assert len(ivf) == N
    hits = ivf.search(data.vectors[4999], 2)
    assert {h.face_id for h in hits} == {42, 5000}
    assert ivf.search(data.vectors[41], 1)[0].face_id != 42


def test_an_index_of_another_model_is_refused(ivf: FaissIndex, tmp_path: Path) -> None:
    ivf.persist()
    other = IndexTuning(model_id="intel-reid-0095")
    with pytest.raises(IndexCorruptError, match="model 'dlib-resnet-v1'"):
        FaissIndex.load(tmp_path / "ivf.ftindex", 128, tuning=other)
    with pytest.raises(IndexCorruptError, match="128-d"):
        FaissIndex.load(tmp_path / "ivf.ftindex", 256, tuning=other)
    assert len(FaissIndex.load(tmp_path / "ivf.ftindex", 128, tuning=TUNING)) == N


def test_bad_input_is_refused(ivf: FaissIndex, data: Synthetic) -> None:
    with pytest.raises(ValueError, match="negative"):
        ivf.add(np.array([-1], dtype=np.int64), data.vectors[:1], np.array([0]))
    with pytest.raises(ValueError, match="differ"):
        ivf.add(np.array([1, 2], dtype=np.int64), data.vectors[:1], np.array([0]))
    assert len(ivf) == N


def test_cells_follow_the_gallery_trained_on_and_a_search_visits_a_share_of_them(
        tmp_path: Path, data: Synthetic, exact: FaissIndex) -> None:
    # A shortlist of 100 of 6,000 faces: a search visits more cells only below 18 (a filter's rule).
    tuning = IndexTuning(approximate_above=4096, nprobe=8, probe_share=0.25, shortlist=100, cells_per_sqrt=4.0)
    index = build(tmp_path / "share.ftindex", data, tuning)  # trained on the 4,500 faces of the crossing batch
    assert isinstance(index._engine, faiss.IndexIVFPQFastScan)
    assert index._engine.nlist == nlist_for(4500, tuning.cells_per_sqrt) == 268
    assert index.cells_visited() == math.ceil(0.25 * 268)
    index.tuning = replace(tuning, nprobe=200)  # the floor
    assert index.cells_visited() == 200
    index.tuning = replace(tuning, probe_share=1.0, nprobe=1000)  # never more than there are
    assert index.cells_visited() == 268
    index.tuning = tuning
    found = [{h.face_id for h in index.search(p, 10)} for p in data.probes]
    truth = [{h.face_id for h in exact.search(p, 10)} for p in data.probes]
    recall = np.mean([len(f & t) / len(t) for f, t in zip(found, truth, strict=True)])
    assert recall >= 0.95, recall
    index.tuning = replace(tuning, probe_share=0.01, nprobe=1)  # 18 cells of 268: neighbours are missed
    found = [{h.face_id for h in index.search(p, 10)} for p in data.probes]
    assert np.mean([len(f & t) / len(t) for f, t in zip(found, truth, strict=True)]) < recall
    assert not FaissIndex(tmp_path / "empty.ftindex", 128, tuning=tuning).cells_visited()


def test_the_share_of_cells_comes_from_the_settings(tmp_path: Path, data: Synthetic) -> None:
    settings = get_settings(data=tmp_path / "data", index_approximate_above=2000, index_nprobe=1,
                            index_probe_share=0.2)
    vault = Vault(Keyring(tmp_path / "keys" / "keyring.db", LocalMasterKey(new_key_bytes(), "test")))
    with ExitStack() as closing:
        index = open_index_store(settings, vault, model_id="dlib-resnet-v1", dim=128, closing=closing).create()
        assert isinstance(index, FaissIndex)
        index.add(data.ids[:3000], data.vectors[:3000], np.ones(3000, dtype=np.int64))
        assert index.approximate and index.cells_visited() == math.ceil(0.2 * nlist_for(3000, 1.3))
    for wrong in (0.0, 1.5):
        with pytest.raises(ValidationError, match="index_probe_share"):
            get_settings(data=tmp_path / "data", index_probe_share=wrong)


@pytest.mark.parametrize(("dim", "codes"), [(128, 64), (256, 128)])
def test_the_codes_keep_two_dimensions_a_sub_quantiser_whatever_the_model(tmp_path: Path, dim: int,
                                                                          codes: int) -> None:
    """dlib's 128-d and the Intel model's 256-d templates: one 4-bit sub-quantiser for every two dimensions (with
    four, the 256-d templates lost recall at 1M), unless the tuning names a number."""
    rng = np.random.default_rng(3)
    vectors = rng.standard_normal((4500, dim)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    ids = np.arange(1, 4501, dtype=np.int64)
    for tuning, expected in ((IndexTuning(approximate_above=4096), codes),
                             (IndexTuning(approximate_above=4096, pq=32), 32)):
        index = FaissIndex(tmp_path / f"{dim}-{tuning.pq}.ftindex", dim, tuning=tuning)
        index.add(ids, vectors, ids % 5)
        assert isinstance(index._engine, faiss.IndexIVFPQFastScan)
        assert index._engine.M == expected == pq_for(dim, tuning.pq)
        assert index.search(vectors[7], 1)[0].face_id == 8  # the codes are re-ranked against the templates


def test_a_gallery_whose_search_would_be_capped_gets_compact_rotated_codes(tmp_path: Path, exact: FaissIndex,
                                                                           data: Synthetic) -> None:
    """Trained at 2,000 faces, retrained at 5,000 past the cap (half the cells hold more than `max_scanned` codes):
    an OPQ rotation (orthogonal: the distances stay) and one 4-bit sub-quantiser for every four dimensions. These
    templates' variance falls along their axes, the case the rotation is for: it finds the planted mates as exact
    search does, never a removed face, and the same after a round trip through the files."""
    tuning = replace(TUNING, max_scanned=2000)
    assert not compact_codes(2000, tuning) and compact_codes(5000, tuning) and not compact_codes(5000, TUNING)
    path = tmp_path / "compact.ftindex"
    index = FaissIndex(path, 128, tuning=tuning)
    for start, end in ((0, 2000), (2000, 5000), (5000, N)):
        ids = data.ids[start:end]
        index.add(ids, data.vectors[ids - 1], ids % 5)
        assert index.approximate and isinstance(index._engine, faiss.IndexPreTransform) == (end > 2000)
    engine = index._engine
    assert isinstance(engine, faiss.IndexPreTransform) and engine.chain.size() == 1
    assert inverted_file(engine).M == pq_for(128, compact=True) == 32 == pq_for(128) // 2
    rotation = faiss.downcast_VectorTransform(engine.chain.at(0))
    assert isinstance(rotation, faiss.OPQMatrix)
    matrix = faiss.vector_to_array(rotation.A).reshape(128, 128)
    assert np.allclose(matrix @ matrix.T, np.eye(128), atol=1e-4)
    index.tuning = replace(tuning, nprobe=1, max_scanned=1000)  # a compact code counts half against the cap
    assert index.cells_visited() == int(1000 / (N / inverted_file(engine).nlist / 2))
    index.tuning = tuning
    found = 0
    for probe, mate in zip(data.probes, data.mates, strict=True):
        hits, exact_hits = index.search(probe, 10), exact.search(probe, 10)
        assert hits[0].face_id == exact_hits[0].face_id
        found += mate in [h.face_id for h in hits]
    assert found >= sum(m in [h.face_id for h in exact.search(p, 10)] for p, m in zip(data.probes, data.mates,
                                                                                      strict=True)) - 1
    gone = data.mates[:10].tolist()
    index.remove(gone)
    index.set_generation(2)
    index.persist()
    loaded = FaissIndex.load(path, 128, tuning=tuning)
    assert isinstance(loaded._engine, faiss.IndexPreTransform)
    for probe in data.probes[:20]:
        hits = [h.face_id for h in loaded.search(probe, 10)]
        assert hits == [h.face_id for h in index.search(probe, 10)] and not set(hits) & set(gone)
    for face_id in gone:  # its own template as the query: the nearest possible
        assert face_id not in {h.face_id for h in loaded.search(data.vectors[face_id - 1], 20)}


def test_past_max_scanned_a_search_visits_fewer_cells_and_still_finds_its_mates(tmp_path: Path) -> None:
    """`max_scanned` caps the codes one search scans on average: with a quarter of the gallery as the cap, a
    quarter of the cells are visited instead of half, and the planted mates' identities are still found first."""
    data = synthetic(8000, dim=32, probes=50, seed=11)
    tuning = IndexTuning(approximate_above=4000, nprobe=1, probe_share=0.5)
    index = FaissIndex(tmp_path / "a.ftindex", 32, tuning=tuning)
    index.add(data.ids, data.vectors, np.ones(len(data.ids), dtype=np.int64))
    assert index.approximate
    nlist = index._engine.nlist
    assert index.cells_visited() == math.ceil(nlist / 2)
    index.tuning = replace(tuning, max_scanned=len(index) // 4)
    assert index.cells_visited() == pytest.approx(nlist / 4, abs=1)
    found = np.array([index.search(p, 1)[0].face_id for p in data.probes])
    assert np.mean(data.identity[found - 1] == data.identity[data.mates - 1]) >= 0.9  # a face of the same identity
    index.tuning = replace(tuning, max_scanned=1)
    assert index.cells_visited() == 1, "never fewer than nprobe"


def test_one_search_split_over_threads_finds_what_one_thread_finds(tmp_path: Path, data: Synthetic,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """`index_search_threads` above 1 spreads one query's cells over the threads (FAISS's fast scan splits the
    queries of a batch otherwise): the same nearest faces, the same filter, never a removed id. Each thread keeps
    its own reservoir of candidates, so a shortlist can differ at its margin: at most a rare 10th hit. One thread
    scans into one heap rather than FAISS's default for a shortlist (which batches queries): the same answers."""
    tuning = IndexTuning(approximate_above=4096, nprobe=8, probe_share=0.25, shortlist=100, cells_per_sqrt=4.0)
    index = build(tmp_path / "threads.ftindex", data, tuning)
    assert isinstance(index._engine, faiss.IndexIVFPQFastScan)
    gone = data.mates[:20]
    index.remove(gone.tolist())
    answers = {}
    for threads in (1, 2):
        index.tuning = replace(tuning, search_threads=threads)
        answers[threads] = [[h.face_id for h in index.search(p, 10, partitions)]
                            for p in data.probes for partitions in (None, {2})]
        assert index._engine.implem == 0  # set back after each search: it would go into the snapshot
    monkeypatch.setattr(faiss_index, "FAST_SCAN_ONE_THREAD", 0)  # FAISS's own choice
    index.tuning = replace(tuning, search_threads=1)
    default = [[h.face_id for h in index.search(p, 10, partitions)] for p in data.probes for partitions in (None, {2})]
    one, two = answers[1], answers[2]
    assert [hits[:5] for hits in one] == [hits[:5] for hits in default]
    assert np.mean([len(set(a) & set(b)) / len(a) for a, b in zip(one, default, strict=True)]) >= 0.99
    # Either scan honours the selector itself (the re-ranking would hide a search that did not).
    bitmap, _ = index._filter(frozenset({2}))
    params = faiss.SearchParametersIVF()
    params.sel = faiss.IDSelectorBitmap(len(bitmap), faiss.swig_ptr(bitmap))
    params.nprobe = index.cells_visited()
    for implem, threads in ((FAST_SCAN_ONE_THREAD, 1), (FAST_SCAN_SPLIT_CELLS, 2)):
        index._engine.implem, before = implem, faiss.omp_get_max_threads()
        faiss.omp_set_num_threads(threads)
        try:
            _, labels = index._engine.search(data.probes[:20], 100, params=params)
        finally:
            index._engine.implem = 0
            faiss.omp_set_num_threads(before)
        found = labels[labels >= 0]
        assert len(found) > 1000 and set((found % 5).tolist()) == {2} and not np.isin(found, gone).any()
    assert [hits[:5] for hits in one] == [hits[:5] for hits in two]
    assert np.mean([len(set(a) & set(b)) / len(a) for a, b in zip(one, two, strict=True)]) >= 0.99
    returned = {face_id for hits in two for face_id in hits}
    assert returned.isdisjoint(gone.tolist()) and len(returned) > 100
    assert all(face_id % 5 == 2 for hits in two[1::2] for face_id in hits)
