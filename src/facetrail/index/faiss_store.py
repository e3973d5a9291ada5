"""Where the embedded index lives: a snapshot and a change log per model under the data directory
(`index/<model>.ftindex`, `index/<model>.ftlog`), sealed under the keyring's index key, beside a lock file that
lets one process at a time write them."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path

from facetrail.crypto.vault import OVERHEAD, Buffer, Vault, is_sealed
from facetrail.index.faiss_index import FILE_MAGIC, FaissIndex, IndexTuning, file_lock

INDEX_LABEL = "index"


class KeyringSealing:
    """The index file sealed (AES-GCM) under the keyring's current index key: one key for every file, replaced
    when an erasure purges the index (the old keys are then destroyed)."""

    overhead = OVERHEAD

    def __init__(self, vault: Vault) -> None:
        self.vault = vault

    def sealer(self) -> Callable[[bytes], bytes]:
        key = self.vault.key(self.vault.keyring.index_key())
        return lambda raw: self.vault.seal(key, INDEX_LABEL, raw)

    def opener(self) -> Callable[[bytes], bytes]:
        return self.vault.opener(INDEX_LABEL)

    def opener_into(self) -> Callable[[Buffer, memoryview], None]:
        return self.vault.opener_into(INDEX_LABEL)

    def renew(self) -> None:
        self.vault.keyring.rotate_index_key()

    def destroy_retired(self) -> None:
        self.vault.keyring.destroy_retired_index_keys()

    def retired(self) -> bool:
        return bool(self.vault.keyring.retired_index_keys())


class FaissStore:
    """The `IndexStore` of the embedded FAISS index."""

    def __init__(self, path: Path, dim: int, vault: Vault, tuning: IndexTuning | None = None) -> None:
        self.path = path
        self.dim = dim
        self.sealing = KeyringSealing(vault)
        self.tuning = tuning or IndexTuning()

    def open(self) -> FaissIndex | None:
        if not self.path.exists():
            return None
        return FaissIndex.load(self.path, self.dim, sealing=self.sealing, tuning=self.tuning)

    def create(self) -> FaissIndex:
        return FaissIndex(self.path, self.dim, sealing=self.sealing, tuning=self.tuning)

    def writing(self) -> AbstractContextManager[None]:
        """An exclusive lock (flock) on `<model>.lock`: a command-line ingestion beside a running server."""
        return file_lock(self.path.with_suffix(".lock"))

    def persisted_ids(self) -> set[int]:
        return {int(i) for i in FaissIndex.load(self.path, self.dim, sealing=self.sealing, tuning=self.tuning).ids()}

    def unsafe_at_rest(self) -> str | None:
        try:
            with open(self.path, "rb") as fh:
                head = fh.read(64)
        except FileNotFoundError:
            return None
        # A sequence of sealed frames (FILE_MAGIC, a frame's length, the frame); an earlier version's one sealed blob.
        first = head[len(FILE_MAGIC) + 8:] if head.startswith(FILE_MAGIC) else head
        return None if is_sealed(first) else "the index file was not encrypted"
