"""The embedded index's store: a sealed file per model, and an erasure's purge that leaves no earlier copy of it
readable, even when cut off half-way."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from facetrail.crypto.keyring import Keyring
from facetrail.crypto.master import LocalMasterKey, new_key_bytes
from facetrail.crypto.vault import Vault
from facetrail.errors import IndexCorruptError
from facetrail.index.faiss_index import MAGIC, Buffer, FaissIndex, OpenInto
from facetrail.index.faiss_store import FaissStore

DIM = 8


@pytest.fixture
def store(tmp_path: Path) -> FaissStore:
    vault = Vault(Keyring(tmp_path / "keys" / "keyring.db", LocalMasterKey(new_key_bytes(), "test")))
    return FaissStore(tmp_path / "index" / "model.ftindex", DIM, vault)


def filled(store: FaissStore) -> FaissIndex:
    index = store.create()
    vectors = np.random.default_rng(0).normal(size=(10, DIM)).astype(np.float32)
    index.add(np.arange(1, 11, dtype=np.int64), vectors, np.ones(10, dtype=np.int64))
    with store.writing():
        index.persist()
    return index


def an_earlier_copy_opens(store: FaissStore, copy: bytes, tmp_path: Path) -> bool:
    (tmp_path / "copy.ftindex").write_bytes(copy)
    try:
        FaissIndex.load(tmp_path / "copy.ftindex", DIM, sealing=store.sealing)
    except IndexCorruptError:
        return False
    return True


def test_nothing_persisted_yet_opens_as_none_and_a_damaged_file_is_refused(store: FaissStore) -> None:
    assert store.open() is None and store.unsafe_at_rest() is None
    filled(store)
    raw = bytearray(store.path.read_bytes())
    raw[-40] ^= 0x55  # inside the last sealed frame
    store.path.write_bytes(bytes(raw))
    with pytest.raises(IndexCorruptError, match="decrypted"):
        store.open()


def test_the_file_is_sealed_and_reopens_with_its_ids(store: FaissStore) -> None:
    filled(store)
    raw = store.path.read_bytes()
    assert MAGIC not in raw and store.unsafe_at_rest() is None
    reopened = store.open()
    assert reopened is not None and sorted(reopened.ids().tolist()) == list(range(1, 11))
    assert store.persisted_ids() == set(range(1, 11))


def test_a_file_in_clear_from_an_earlier_version_is_unsafe_at_rest(store: FaissStore) -> None:
    clear = FaissIndex(store.path, DIM)
    clear.add(np.array([1], dtype=np.int64), np.ones((1, DIM), dtype=np.float32), np.array([1]))
    store.path.parent.mkdir(parents=True)
    clear.persist()
    assert store.unsafe_at_rest() == "the index file was not encrypted"


def test_purge_leaves_no_earlier_copy_readable(store: FaissStore, tmp_path: Path) -> None:
    index = filled(store)
    backup = store.path.read_bytes()
    assert an_earlier_copy_opens(store, backup, tmp_path)
    index.remove([3])
    with store.writing():
        index.purge()
    assert store.persisted_ids() == set(range(1, 11)) - {3}, "durable as removed on return"
    index.settle()  # the rewrite under the new key ran in the background
    assert not an_earlier_copy_opens(store, backup, tmp_path)  # its key is destroyed
    assert store.persisted_ids() == set(range(1, 11)) - {3}
    assert store.sealing.vault.keyring.retired_index_keys() == []


def test_a_purge_cut_off_after_renewing_the_key_is_finished_by_the_next(store: FaissStore, tmp_path: Path) -> None:
    index = filled(store)
    backup = store.path.read_bytes()
    index.remove([3])
    store.sealing.renew()  # then the process dies: the file on disk is still under the old key, which still opens
    assert store.persisted_ids() == set(range(1, 11))
    reopened = store.open()
    assert reopened is not None
    reopened.remove([3])
    with store.writing():
        reopened.purge()
    reopened.settle()
    assert not an_earlier_copy_opens(store, backup, tmp_path)
    assert store.persisted_ids() == set(range(1, 11)) - {3}
    assert store.sealing.vault.keyring.retired_index_keys() == []


def test_a_purge_whose_process_died_before_the_rewrite_is_finished_by_settle(store: FaissStore,
                                                                            tmp_path: Path) -> None:
    """The removal reached the log under the new key, then the process died: the snapshot and the log's older
    records are still under the retired key until the next settle rewrites them and destroys it."""
    index = filled(store)
    backup = store.path.read_bytes()
    index.remove([3])
    store.sealing.renew()
    with store.writing():
        index.persist()  # the removal, durable under the new key; no rewrite yet
    assert store.persisted_ids() == set(range(1, 11)) - {3}
    assert an_earlier_copy_opens(store, backup, tmp_path) and store.sealing.retired()
    survivor = store.open()
    assert survivor is not None
    survivor.settle()
    assert not store.sealing.retired() and not an_earlier_copy_opens(store, backup, tmp_path)
    assert store.persisted_ids() == set(range(1, 11)) - {3}


def test_an_open_that_a_purge_overtakes_reads_the_new_files(store: FaissStore,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """Another process opens the index while an erasure's purge rewrites it: it has read the old file when the
    purge replaces it and destroys the key it was sealed under. The open reads the new file instead of failing
    (a failure would make that process rebuild the whole index from the store)."""
    writer = filled(store)
    writer.remove([3])
    unsealer = FaissIndex._unsealer_into
    overtaken: list[bool] = []

    def purge_first(self: FaissIndex) -> tuple[OpenInto, int]:
        unseal, overhead = unsealer(self)

        def overtake(data: Buffer, out: memoryview) -> None:
            if not overtaken:  # between reading the file's first frame and decrypting it
                overtaken.append(True)
                with store.writing():
                    writer.purge()
                writer.settle()
            unseal(data, out)
        return overtake, overhead

    monkeypatch.setattr(FaissIndex, "_unsealer_into", purge_first)
    reopened = store.open()
    assert overtaken and reopened is not None and sorted(reopened.ids().tolist()) == [1, 2, *range(4, 11)]


def test_a_file_that_stays_undecryptable_is_still_refused(store: FaissStore, monkeypatch: pytest.MonkeyPatch) -> None:
    filled(store)
    reads: list[int] = []
    unsealer = FaissIndex._unsealer_into

    def damaging(self: FaissIndex) -> tuple[OpenInto, int]:
        reads.append(1)  # one file read
        unseal, overhead = unsealer(self)
        return (lambda data, out: unseal(bytes(data[:-1]) + bytes([data[-1] ^ 1]), out)), overhead

    monkeypatch.setattr(FaissIndex, "_unsealer_into", damaging)
    with pytest.raises(IndexCorruptError):
        store.open()
    assert len(reads) == 1  # the file did not change: no second read
