"""The index snapshot is written and read a frame at a time: large indexes round-trip across many frames, a
snapshot taken while changes go on holds the index as it was, and no frame can be dropped, repeated, reordered,
spliced from another snapshot or followed by anything."""

from __future__ import annotations

import mmap
import resource
import threading
from pathlib import Path

import numpy as np
import pytest

from facetrail.crypto.keyring import Keyring
from facetrail.crypto.master import LocalMasterKey, new_key_bytes
from facetrail.crypto.vault import Vault, is_sealed
from facetrail.errors import IndexCorruptError
from facetrail.index import faiss_index
from facetrail.index.faiss_index import FaissIndex, IndexTuning
from facetrail.index.faiss_store import FaissStore
from tests.index.snapshot_files import file_of, frames_of

DIM = 8


def vectors(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(n, DIM)).astype(np.float32)


@pytest.fixture
def store(tmp_path: Path) -> FaissStore:
    vault = Vault(Keyring(tmp_path / "keys" / "keyring.db", LocalMasterKey(new_key_bytes(), "test")))
    return FaissStore(tmp_path / "index" / "model.ftindex", DIM, vault, IndexTuning(approximate_above=300))


def spread_ids(n: int) -> np.ndarray:
    """n ids over three blocks of templates (65,536 ids each) and beyond."""
    return np.unique(np.linspace(1, 3 * 65_536 + 500, n).astype(np.int64))


def test_a_large_index_round_trips_over_many_frames(store: FaissStore, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(faiss_index, "FRAME_BYTES", 4096)  # partitions and the inverted file over many frames
    ids = spread_ids(600)
    vs = vectors(len(ids), seed=1)
    index = store.create()
    index.add(ids, vs, ids % 3)
    assert index.approximate
    index.set_generation(5)
    with store.writing():
        index.persist()
    frames = frames_of(store.path.read_bytes())
    # header, 197 frames of partitions (8 bytes an id up to the largest), 3 blocks of 65,536 templates and part of
    # a fourth (512 frames a block), the inverted file
    assert len(frames) > 1 + 197 + 3 * 512 and all(is_sealed(f) for f in frames)
    loaded = store.open()
    assert loaded is not None and loaded.approximate and loaded.generation == 5
    assert np.array_equal(loaded.ids(), ids)
    # Each frame is decrypted in place, its prefix over the end of the frame before, which is put back: every
    # template comes back as written, those at the frames' edges too.
    assert np.array_equal(loaded._vec.get(ids), vs)
    for probe in vs[::37]:
        assert loaded.search(probe, 5) == index.search(probe, 5)
        assert loaded.search(probe, 5, partitions={1}) == index.search(probe, 5, partitions={1})


@pytest.mark.parametrize("damage", ["drop", "repeat", "swap", "splice", "trailing", "torn"])
def test_a_snapshot_with_frames_dropped_repeated_reordered_or_spliced_is_refused(store: FaissStore,
                                                                                  damage: str) -> None:
    ids = spread_ids(40)
    index = store.create()
    index.add(ids, vectors(len(ids), seed=2), ids % 2)
    with store.writing():
        index.persist()
    first = frames_of(store.path.read_bytes())
    index.add(np.array([7], dtype=np.int64), vectors(1, seed=3), np.array([1]))
    with store.writing():
        index.compact()  # another snapshot of the same index, under the same key
    second = frames_of(store.path.read_bytes())
    assert len(first) == len(second) >= 5
    frames = list(first)
    if damage == "drop":
        del frames[3]
    elif damage == "repeat":
        frames.insert(3, frames[3])
    elif damage == "swap":
        frames[2], frames[3] = frames[3], frames[2]
    elif damage == "splice":
        frames[3] = second[3]  # a well-sealed frame of the right number, from another snapshot
    raw = file_of(frames)
    if damage == "trailing":
        raw += b"\0" * 8
    elif damage == "torn":
        raw = raw[:-100]
    store.path.write_bytes(raw)
    with pytest.raises(IndexCorruptError):
        store.open()
    store.path.write_bytes(file_of(first))
    reopened = store.open()
    assert reopened is not None and np.array_equal(reopened.ids(), ids), "the undamaged file opens"


def _mapped_kib(path: Path) -> int | None:
    """How much of `path` this process has mapped in memory now (KiB resident), None if it has no mapping of it."""
    found = None
    lines = Path("/proc/self/smaps").read_text().splitlines()
    for i, line in enumerate(lines):
        if line.endswith(" " + str(path)):
            rss = next(entry for entry in lines[i + 1:] if entry.startswith("Rss:"))
            found = (found or 0) + int(rss.split()[1])
    return found


@pytest.mark.skipif(not Path("/proc/self/smaps").exists(), reason="needs Linux's /proc/self/smaps")
def test_a_snapshot_is_read_from_a_mapping_that_lets_go_of_what_it_has_read(
        store: FaissStore, monkeypatch: pytest.MonkeyPatch) -> None:
    """Frames are decrypted straight from a read-only mapping of the file (no copy of it read into memory first);
    the pages read are let go of as the load goes (the mapping never holds much of the file, however large), and
    nothing of the file stays mapped once it is loaded, nor after a load that failed."""
    monkeypatch.setattr(faiss_index, "FRAME_BYTES", 65_536)
    monkeypatch.setattr(faiss_index._FrameReader, "DROP_BYTES", 262_144)
    ids = spread_ids(600)
    vs = vectors(len(ids), seed=12)
    index = store.create()
    index.add(ids, vs, ids % 3)
    with store.writing():
        index.persist()
    size_kib = store.path.stat().st_size // 1024
    assert size_kib > 6_000  # three blocks and more of 65,536 templates of 8 values
    seen: list[int | None] = []
    unsealer_into = faiss_index.FaissIndex._unsealer_into

    def watching(self: FaissIndex) -> tuple[faiss_index.OpenInto, int]:
        open_into, sealing_bytes = unsealer_into(self)

        def open_and_look(sealed: faiss_index.Buffer, out: memoryview) -> None:
            seen.append(_mapped_kib(store.path))
            open_into(sealed, out)
        return open_and_look, sealing_bytes

    monkeypatch.setattr(faiss_index.FaissIndex, "_unsealer_into", watching)
    loaded = store.open()
    assert loaded is not None and np.array_equal(loaded._vec.get(ids), vs)
    assert len(seen) > 100 and all(kib is not None for kib in seen), "each frame is read from the mapped file"
    assert max(kib or 0 for kib in seen) < 1024, f"the mapping held {max(kib or 0 for kib in seen)} KiB of the file"
    assert _mapped_kib(store.path) is None, "the file is unmapped once loaded"

    frames = frames_of(store.path.read_bytes())
    del frames[len(frames) // 2]
    store.path.write_bytes(file_of(frames))
    with pytest.raises(IndexCorruptError):
        store.open()
    assert _mapped_kib(store.path) is None, "nor after a failed load"


def _block_makers() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "index-blocks"]


def test_a_block_made_ahead_has_its_pages_mapped_before_it_is_written() -> None:
    """`map_pages_now` (madvise through ctypes, which leaves the interpreter to the other threads): writing the
    block afterwards costs no page fault, where a block mapped as it is written takes one per 4 KiB page."""
    rows = faiss_index.Rows(256, base_pages=True)

    def faults_writing(block: np.ndarray) -> int:
        before = resource.getrusage(resource.RUSAGE_THREAD).ru_minflt
        block[:] = 1.0
        return resource.getrusage(resource.RUSAGE_THREAD).ru_minflt - before

    assert faults_writing(rows.new_block()) >= 65_536 * 256 * 4 // 2 ** 21  # 16,384 base pages (or 32 huge ones)
    mapped = mmap.mmap(-1, 65_536 * 256 * 4, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    if not faiss_index.map_pages_now(mapped):
        pytest.skip("this kernel cannot map a range's pages at once (MADV_POPULATE_WRITE, Linux 5.14)")
    assert faults_writing(np.frombuffer(mapped, dtype=np.float32)) < 100
    assert faults_writing(rows.new_block(populated=True)) < 100


def test_an_inverted_files_blocks_are_made_ahead_and_a_failed_load_stops_making_them(
        store: FaissStore, monkeypatch: pytest.MonkeyPatch) -> None:
    """Loading an inverted file, its full template blocks are made (mapped at once) in a thread a few blocks ahead
    of the filling: they hold the templates as written, and a load that fails part way (a damaged frame, or memory
    that cannot be mapped) stops that thread and raises."""
    monkeypatch.setattr(faiss_index, "FRAME_BYTES", 65_536)
    ids = spread_ids(600)  # three full blocks and part of a fourth
    vs = vectors(len(ids), seed=11)
    index = store.create()
    index.add(ids, vs, ids % 3)
    assert index.approximate
    with store.writing():
        index.persist()
    made: list[bool] = []
    new_block = faiss_index.Rows.new_block

    def recording(rows: faiss_index.Rows, *, populated: bool = False) -> np.ndarray:
        made.append(populated)
        return new_block(rows, populated=populated)

    monkeypatch.setattr(faiss_index.Rows, "new_block", recording)
    loaded = store.open()
    assert loaded is not None and np.array_equal(loaded.ids(), ids)
    assert sorted(made) == [False, True, True, True]  # the partial last block is mapped as it is written
    for probe in vs[::53]:
        assert loaded.search(probe, 3) == index.search(probe, 3)
    assert not _block_makers()

    good = frames_of(store.path.read_bytes())
    frames = list(good)
    del frames[len(frames) // 2]  # a frame missing in the middle of the templates
    store.path.write_bytes(file_of(frames))
    with pytest.raises(IndexCorruptError):
        store.open()
    assert not _block_makers()

    def failing(rows: faiss_index.Rows, *, populated: bool = False) -> np.ndarray:
        if populated and made.count(True) >= 1:  # the second block: the first was made and filled
            raise MemoryError("cannot map a block")
        return recording(rows, populated=populated)

    store.path.write_bytes(file_of(good))
    made.clear()
    monkeypatch.setattr(faiss_index.Rows, "new_block", failing)
    with pytest.raises(MemoryError):
        store.open()
    assert made == [True] and not _block_makers()

    # No thread to be had (a process limit): the load maps its blocks itself, as it fills them, and succeeds.
    monkeypatch.setattr(faiss_index.Rows, "new_block", recording)
    start = threading.Thread.start

    def refused(thread: threading.Thread) -> None:
        if thread.name == "index-blocks":
            raise RuntimeError("can't start new thread")
        start(thread)

    monkeypatch.setattr(threading.Thread, "start", refused)
    made.clear()
    reloaded = store.open()
    assert reloaded is not None and np.array_equal(reloaded.ids(), ids) and made == [False] * 4


def test_a_snapshot_taken_before_a_change_writes_the_index_as_it_was(tmp_path: Path) -> None:
    """The snapshot is taken under the lock and written outside it: a change to a template block after it was
    taken goes to a copy of that block, and the file holds the block as it was."""
    ids = np.arange(1, 51, dtype=np.int64)
    vs = vectors(50, seed=4)
    index = FaissIndex(tmp_path / "f.ftindex", DIM)
    index.add(ids, vs, np.ones(50, dtype=np.int64))
    snapshot = index._snapshot()
    index.add(np.array([10, 60], dtype=np.int64), np.full((2, DIM), 9.0, dtype=np.float32), np.array([2, 2]))
    index._write_files(snapshot)
    loaded = FaissIndex.load(tmp_path / "f.ftindex", DIM)
    assert np.array_equal(loaded.ids(), ids)
    assert loaded.search(vs[9], 1)[0].face_id == 10 and loaded.search(vs[9], 1)[0].distance == pytest.approx(0)
    assert index.search(np.full(DIM, 9.0, dtype=np.float32), 2)[0].distance == pytest.approx(0)
    assert sorted(h.face_id for h in index.search(np.full(DIM, 9.0, dtype=np.float32), 2)) == [10, 60]
    for face_id, v in zip(ids, vs, strict=True):  # the block written after the snapshot kept every other row
        if face_id != 10:
            assert index.search(v, 1)[0].face_id == face_id


def test_a_block_copied_for_a_write_keeps_the_rows_written_before(tmp_path: Path) -> None:
    """A block frozen for a snapshot is copied when it is next written, up to the highest row
    written so far (the rest of a block is never-written zeros): every earlier row survives, in memory and after
    the next load."""
    ids = np.array([1, 2, 65_535, 65_536, 70_000], dtype=np.int64)
    vs = vectors(5, seed=6)
    index = FaissIndex(tmp_path / "r.ftindex", DIM)
    index.add(ids, vs, np.ones(5, dtype=np.int64))
    index.persist()
    loaded = FaissIndex.load(tmp_path / "r.ftindex", DIM)
    loaded.add(np.array([3, 70_001], dtype=np.int64), vectors(2, seed=7), np.ones(2, dtype=np.int64))
    loaded._snapshot()  # freezes the blocks again
    loaded.add(np.array([4], dtype=np.int64), vectors(1, seed=8), np.ones(1, dtype=np.int64))
    loaded.persist()
    again = FaissIndex.load(tmp_path / "r.ftindex", DIM)
    for face_id, v in [*zip(ids, vs, strict=True), (3, vectors(2, seed=7)[0]), (70_001, vectors(2, seed=7)[1]),
                       (4, vectors(1, seed=8)[0])]:
        for ix in (loaded, again):
            hit = ix.search(v, 1)[0]
            assert hit.face_id == face_id and hit.distance == pytest.approx(0, abs=1e-5)


def test_appending_while_a_snapshot_is_written_writes_in_place_and_leaves_the_snapshot_as_taken(
        tmp_path: Path) -> None:
    """An ingestion appends ids above those a snapshot holds: no block is copied for it (the memory of a long
    ingestion stays flat), and the file holds the ids of the moment the snapshot was taken."""
    ids = np.arange(1, 51, dtype=np.int64)
    vs = vectors(50, seed=9)
    index = FaissIndex(tmp_path / "p.ftindex", DIM)
    index.add(ids, vs, np.ones(50, dtype=np.int64))
    block = index._vec.blocks[0]
    snapshot = index._snapshot()
    index.add(np.arange(51, 61, dtype=np.int64), vectors(10, seed=10), np.ones(10, dtype=np.int64))
    assert index._vec.blocks[0] is block, "appended in place"
    index._write_files(snapshot)
    assert np.array_equal(FaissIndex.load(tmp_path / "p.ftindex", DIM).ids(), ids)
    assert index.search(vectors(10, seed=10)[3], 1)[0].face_id == 54
    index.add(np.array([5], dtype=np.int64), vectors(1, seed=11), np.ones(1, dtype=np.int64))
    assert index._vec.blocks[0] is not block, "a row the snapshot holds: written to a copy"
