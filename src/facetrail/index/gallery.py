"""The gallery: the vector index kept in step with the store, which stays the source of truth.

The index file records the store generation it reflects. On open, a missing or corrupt file is
rebuilt from the store's templates; a stale one (a crash after a commit, another process that
ingested) is brought up to date by comparing face ids. Searches check the generation first, so a
long-running server sees what a command-line ingestion added.
"""

from __future__ import annotations

import fcntl
import logging
import threading
from collections.abc import Collection, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from numpy.typing import NDArray
from sqlalchemy import Select, select
from sqlalchemy.orm import Session

from facetrail.crypto.vault import Vault, is_sealed
from facetrail.errors import IndexCorruptError
from facetrail.fsutil import private_dir, private_opener
from facetrail.index.base import Hit
from facetrail.index.faiss_index import FaissIndex
from facetrail.store.db import Database, get_generation
from facetrail.store.models import Face
from facetrail.store.templates import open_templates

log = logging.getLogger(__name__)
BATCH = 5000
INDEX_LABEL = "index"


@dataclass(frozen=True)
class SyncReport:
    added: int
    removed: int
    rebuilt: bool
    reason: str = ""


class Gallery:
    def __init__(self, db: Database, path: Path, vault: Vault, *, model_id: str, dim: int) -> None:
        self.db = db
        self.path = path
        self.vault = vault
        self.model_id = model_id
        self.dim = dim
        self._lock = threading.RLock()
        self._index: FaissIndex | None = None
        self.last_sync: SyncReport | None = None

    @contextmanager
    def file_lock(self) -> Iterator[None]:
        """Serialise index writers across processes (CLI ingestion beside a running server)."""
        private_dir(self.path.parent)
        with open(self.path.with_suffix(".lock"), "a+", opener=private_opener) as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)

    def index(self) -> FaissIndex:
        """The index, loaded (or rebuilt) and in step with the store."""
        with self._lock:
            if self._index is None:
                self._open()
            else:
                self.sync()
            assert self._index is not None
            return self._index

    def _open(self) -> None:
        try:
            self._index = FaissIndex.load(self.path, self.dim, seal=self._seal, unseal=self._unseal)
        except IndexCorruptError as exc:
            if self.path.exists():
                log.warning("index file unusable (%s); rebuilding it from the store", exc)
            self.last_sync = self.rebuild(reason=str(exc) if self.path.exists() else "index file missing")
            return
        self.sync()

    def sync(self) -> SyncReport:
        """Make the index hold exactly the store's faces of this model; save it if anything changed."""
        with self._lock:
            report = self._catch_up()
            if report.added or report.removed or report.reason:
                with self.file_lock():
                    self._catch_up()  # another process may have committed meanwhile
                    assert self._index is not None
                    self._index.save()
            return report

    def _catch_up(self) -> SyncReport:
        """Bring the in-memory index to the store's generation (no file written)."""
        with self._lock:
            index = self._index
            assert index is not None
            with self.db.read() as session:
                generation = get_generation(session)
                if generation == index.generation:
                    return SyncReport(0, 0, False)
                rows = session.scalars(self._searchable()).all()
                wanted = np.fromiter(rows, dtype=np.int64, count=len(rows))
                have = index.ids()
                missing = np.setdiff1d(wanted, have, assume_unique=True)
                extra = np.setdiff1d(have, wanted, assume_unique=True)
                removed = index.remove(extra.tolist())
                for chunk in _chunks(missing):
                    self._add_from_store(session, index, chunk)
            index.set_generation(generation)
            report = SyncReport(added=len(missing), removed=removed, rebuilt=False, reason="caught up")
            self.last_sync = report
            return report

    def rebuild(self, reason: str = "requested") -> SyncReport:
        """A new index from every template in the store, saved atomically."""
        with self._lock:
            index = FaissIndex(self.path, self.dim, seal=self._seal, unseal=self._unseal)
            with self.db.read() as session:
                generation = get_generation(session)
                rows = session.scalars(self._searchable()).all()
                for chunk in _chunks(np.fromiter(rows, dtype=np.int64, count=len(rows))):
                    self._add_from_store(session, index, chunk)
            index.set_generation(generation)
            with self.file_lock():
                index.save()
            self._index = index
            return SyncReport(added=len(index), removed=0, rebuilt=True, reason=reason)

    def seal_cleartext_file(self) -> None:
        """An index file an earlier version wrote in clear is replaced by a sealed one, at once (it holds
        usable templates, and a backup would copy it as it is)."""
        try:
            with open(self.path, "rb") as fh:
                head = fh.read(64)
        except FileNotFoundError:
            return
        if not is_sealed(head):
            with self._lock:
                self.last_sync = self.rebuild(reason="the index file was not encrypted")

    def _seal(self, raw: bytes) -> bytes:
        """The index file is sealed under the keyring's current index key (replaced at every erasure)."""
        return self.vault.seal(self.vault.key(self.vault.keyring.index_key()), INDEX_LABEL, raw)

    def _unseal(self, sealed: bytes) -> bytes:
        return self.vault.open(INDEX_LABEL, sealed)

    def _searchable(self) -> Select[int]:
        """Ids of the faces searches may reach: this model's, not restricted (Art. 18)."""
        return select(Face.id).where(Face.model_id == self.model_id, Face.restricted.is_(False))

    def _add_from_store(self, session: Session, index: FaissIndex, ids: NDArray[np.int64]) -> None:
        rows = session.execute(
            select(Face.id, Face.source_id, Face.template).where(Face.id.in_(ids.tolist()))
        ).all()
        if not rows:
            return
        index.add(
            np.array([r[0] for r in rows], dtype=np.int64),
            np.stack(open_templates(self.vault, [r[2] for r in rows], self.dim)),
            np.array([r[1] for r in rows], dtype=np.int64),
        )

    def add_committed(self, ids: NDArray[np.int64], vectors: NDArray[np.float32],
                      partitions: NDArray[np.int64], generation: int) -> None:
        """Add faces that were just committed as `generation`. If another writer committed in
        between, the index is left for sync() to reconcile instead."""
        with self._lock:
            if self._index is None:
                self._open()
                return
            if self._index.generation == generation - 1:
                self._index.add(ids, vectors, partitions)
                self._index.set_generation(generation)

    def save(self) -> None:
        """Write the index, first caught up with the store under the file lock, so a process holding an
        older index never writes back faces that another process erased meanwhile."""
        with self._lock:
            if self._index is not None:
                with self.file_lock():
                    self._catch_up()
                    self._index.save()

    def saved_ids(self) -> set[int]:
        """The face ids in the index file as saved (decrypted), not in memory: what a copy of the file holds."""
        return {int(i) for i in FaissIndex.load(self.path, self.dim, unseal=self._unseal).ids()}

    def search(self, vector: NDArray[np.float32], k: int, partitions: Collection[int] | None) -> list[Hit]:
        return self.index().search(vector, k, partitions)


def _chunks(ids: NDArray[np.int64]) -> Iterator[NDArray[np.int64]]:
    for start in range(0, len(ids), BATCH):
        yield ids[start:start + BATCH]
