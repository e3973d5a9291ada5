"""The embedded index's change log: what one process persists another applies in O(change), a removed id is
never returned before or after compaction, and a crash in the middle of a write leaves a loadable index."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from bench.synthetic import Synthetic, synthetic

from facetrail.crashpoints import CRASH_ENV
from facetrail.crypto.keyring import Keyring
from facetrail.crypto.master import LocalMasterKey, new_key_bytes
from facetrail.crypto.vault import Vault
from facetrail.index.faiss_index import FaissIndex, IndexTuning
from facetrail.index.faiss_store import FaissStore

N = 6000
TUNING = IndexTuning(approximate_above=2000, nprobe=64, model_id="dlib-resnet-v1")
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def data() -> Synthetic:
    return synthetic(N + 500, probes=40, seed=11)


@pytest.fixture
def store(tmp_path: Path) -> FaissStore:
    vault = Vault(Keyring(tmp_path / "keys" / "keyring.db", LocalMasterKey(new_key_bytes(), "test")))
    return FaissStore(tmp_path / "index" / "dlib-resnet-v1.ftindex", 128, vault, TUNING)


def persisted(store: FaissStore, data: Synthetic, n: int = N) -> FaissIndex:
    index = store.create()
    ids = data.ids[:n]
    index.add(ids, data.vectors[ids - 1], ids % 5)
    index.set_generation(1)
    with store.writing():
        index.persist()
    return index


def test_a_commit_by_another_process_is_seen_by_refresh_in_order(store: FaissStore, data: Synthetic) -> None:
    writer = persisted(store, data)
    reader = store.open()
    assert reader is not None and reader.approximate and len(reader) == N and reader.generation == 1
    snapshot = store.path.stat().st_mtime_ns
    new = data.ids[N:N + 20]
    writer.add(new, data.vectors[new - 1], np.full(20, 9))
    writer.remove([1, 2, 3])
    writer.set_generation(2)
    with store.writing():
        writer.persist()
    assert store.path.stat().st_mtime_ns == snapshot, "a small change goes to the log, not the snapshot"
    assert reader.refresh() == 23 and reader.generation == 2 and len(reader) == N + 17
    assert reader.refresh() == 0
    hits = reader.search(data.vectors[new[4] - 1], 1, {9})
    assert hits[0].face_id == int(new[4]) and hits[0].distance == pytest.approx(0.0, abs=1e-3)
    for gone in (1, 2, 3):
        assert gone not in {h.face_id for h in reader.search(data.vectors[gone - 1], 20)}
    # The reader persists a change of its own after the writer's: the writer reads it back the same way.
    reader.remove([new[0]])
    reader.set_generation(3)
    with store.writing():
        reader.persist()
    assert writer.refresh() == 1 and writer.generation == 3 and int(new[0]) not in writer.ids()
    reloaded = store.open()
    assert reloaded is not None and sorted(reloaded.ids().tolist()) == sorted(writer.ids().tolist())


def test_a_record_from_another_history_is_left_to_the_store(store: FaissStore, data: Synthetic) -> None:
    """A reader whose generation is not where a record starts from does not apply it (the gallery then
    compares ids with the store); the ids it names are written again from the reader's state."""
    writer = persisted(store, data)
    reader = store.open()
    assert reader is not None
    reader.set_generation(5)  # as if it had caught up with the store past the writer
    writer.remove([10])
    writer.set_generation(2)
    with store.writing():
        writer.persist()
    assert reader.refresh() == 1 and reader.generation == 5 and 10 in reader.ids()
    with store.writing():
        reader.persist()
    assert 10 in store.persisted_ids()


def test_a_removed_id_is_never_returned_before_or_after_compaction(store: FaissStore, data: Synthetic) -> None:
    index = persisted(store, data)
    other = store.open()
    assert other is not None
    gone = data.mates[:25]
    index.remove(gone.tolist())
    index.set_generation(2)

    def never_returned(ix: FaissIndex) -> None:
        for face_id in gone:
            query = data.vectors[face_id - 1]
            for partitions in (None, {int(face_id) % 5}):
                assert int(face_id) not in {h.face_id for h in ix.search(query, 50, partitions)}

    never_returned(index)  # in memory: its code is still in the inverted file, behind the live bitmap
    with store.writing():
        index.persist()
    other.refresh()
    never_returned(other)
    assert not set(gone.tolist()) & store.persisted_ids()
    with store.writing():
        index.compact()
    never_returned(index)
    fresh = store.open()
    assert fresh is not None and fresh.approximate
    never_returned(fresh)
    assert other.refresh() > 0, "the other process reloads the rewritten snapshot"
    never_returned(other)
    assert len(other) == len(fresh) == N - 25


def test_a_torn_record_is_ignored_and_cut_off_by_the_next_writer(store: FaissStore, data: Synthetic) -> None:
    index = persisted(store, data, 3000)
    with open(store.path.with_suffix(".ftlog"), "ab") as fh:
        fh.write(b"\x00\x10\x00\x00half a record")  # a writer killed in the middle of an append
    reader = store.open()
    assert reader is not None and len(reader) == 3000
    index.remove([7])
    index.set_generation(2)
    with store.writing():
        index.persist()
    assert reader.refresh() == 1 and 7 not in reader.ids()


CRASH = """
import sys
import numpy as np
from pathlib import Path
from bench.synthetic import synthetic
from facetrail.crypto.keyring import Keyring
from facetrail.crypto.master import LocalMasterKey
from facetrail.crypto.vault import Vault
from facetrail.index.faiss_index import IndexTuning
from facetrail.index.faiss_store import FaissStore
root = Path(sys.argv[1])
vault = Vault(Keyring(root / "keys" / "keyring.db", LocalMasterKey(bytes.fromhex(sys.argv[2]), "test")))
store = FaissStore(root / "index" / "dlib-resnet-v1.ftindex", 128, vault,
                   IndexTuning(approximate_above=2000, nprobe=64, model_id="dlib-resnet-v1"))
index = store.open()
data = synthetic(6500, probes=40, seed=11)
index.remove([1, 2])
index.set_generation(2)
with store.writing():
    index.persist()
    index.compact()  # killed before the new snapshot replaces the old one
"""


@pytest.mark.parametrize("in_compaction", [True, False])
def test_a_crash_mid_write_leaves_a_loadable_index(tmp_path: Path, data: Synthetic, in_compaction: bool) -> None:
    """Killed (SIGKILL) in the middle of the compaction's snapshot write (index_compact), or of the log append
    before it (index_save, the first write reached). The index opens, as persisted before the write or after it."""
    master = new_key_bytes()
    vault = Vault(Keyring(tmp_path / "keys" / "keyring.db", LocalMasterKey(master, "test")))
    store = FaissStore(tmp_path / "index" / "dlib-resnet-v1.ftindex", 128, vault, TUNING)
    persisted(store, data)
    env = {**os.environ, CRASH_ENV: "index_compact" if in_compaction else "index_save", "PYTHONPATH": str(ROOT)}
    killed = subprocess.run([sys.executable, "-c", CRASH, str(tmp_path), master.hex()], env=env,
                            capture_output=True, text=True, timeout=300)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    assert list((tmp_path / "index").glob(".*.tmp")) or not in_compaction, "killed before the rename"
    reopened = store.open()
    assert reopened is not None and reopened.approximate
    if in_compaction:  # the log append before the compaction was fsynced: the removal survives
        assert len(reopened) == N - 2 and reopened.generation == 2
    else:  # killed before the fsync: the record may or may not have reached the file, whole or not at all
        assert len(reopened) in (N, N - 2)
    assert reopened.search(data.vectors[99], 1)[0].face_id == 100
    reopened.remove([100])
    reopened.set_generation(3)
    with store.writing():
        reopened.persist()
    again = store.open()
    assert again is not None and 100 not in again.ids()
