"""The gallery: the vector index kept in step with the store, which stays the source of truth.

The persisted index records the store generation it reflects. On open, a missing or corrupt one is
rebuilt from the store's templates; a stale one is first refreshed with what other processes persisted
(VectorIndex.refresh, O(change)), and if still behind the store (a crash after a commit, a process that
committed without persisting yet) brought up to date by comparing face ids. Searches check the generation first, so a
long-running server sees what a command-line ingestion added. The gallery sees the index through
`VectorIndex` and `IndexStore` (base.py) only: files, locks and keys are the engine's.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Collection, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray
from sqlalchemy import Select, select
from sqlalchemy.orm import Session

from facetrail.crypto.vault import Vault
from facetrail.errors import IndexCorruptError
from facetrail.index.base import Hit, IndexStore, VectorIndex
from facetrail.store.db import Database, get_generation
from facetrail.store.models import Face
from facetrail.store.templates import open_templates

log = logging.getLogger(__name__)
BATCH = 5000


@dataclass(frozen=True)
class SyncReport:
    added: int
    removed: int
    rebuilt: bool
    reason: str = ""


class Gallery:
    def __init__(self, db: Database, store: IndexStore, vault: Vault, *, model_id: str, dim: int) -> None:
        self.db = db
        self.store = store
        self.vault = vault  # opens the templates in the store
        self.model_id = model_id
        self.dim = dim
        self._lock = threading.RLock()
        self._index: VectorIndex | None = None
        self.last_sync: SyncReport | None = None

    def index(self) -> VectorIndex:
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
            self._index = self.store.open()
        except IndexCorruptError as exc:
            log.warning("index unusable (%s); rebuilding it from the store", exc)
            self.last_sync = self.rebuild(reason=str(exc))
            return
        if self._index is None:
            self.last_sync = self.rebuild(reason="index missing")
            return
        self.sync()

    def sync(self) -> SyncReport:
        """Make the index hold exactly the store's faces of this model; persist it if anything changed."""
        with self._lock:
            report = self._catch_up()
            if report.added or report.removed or report.reason:
                with self.store.writing():
                    self._catch_up()  # another process may have committed meanwhile
                    assert self._index is not None
                    self._index.persist()
            return report

    def _catch_up(self) -> SyncReport:
        """Bring the in-memory index to the store's generation (no file written)."""
        with self._lock:
            index = self._index
            assert index is not None
            index.refresh()  # what other processes persisted since: O(change)
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
        """A new index from every template in the store, persisted whole."""
        with self._lock:
            index = self.store.create()
            with self.db.read() as session:
                generation = get_generation(session)
                rows = session.scalars(self._searchable()).all()
                for chunk in _chunks(np.fromiter(rows, dtype=np.int64, count=len(rows))):
                    self._add_from_store(session, index, chunk)
            index.set_generation(generation)
            with self.store.writing():
                index.persist()
            self._index = index
            return SyncReport(added=len(index), removed=0, rebuilt=True, reason=reason)

    def secure_at_rest(self) -> None:
        """An index an earlier version persisted in clear is replaced by a sealed one, at once (it holds
        usable templates, and a backup would copy it as it is)."""
        reason = self.store.unsafe_at_rest()
        if reason is not None:
            with self._lock:
                self.last_sync = self.rebuild(reason=reason)

    def _searchable(self) -> Select[int]:
        """Ids of the faces searches may reach: this model's, not restricted (Art. 18)."""
        return select(Face.id).where(Face.model_id == self.model_id, Face.restricted.is_(False))

    def _add_from_store(self, session: Session, index: VectorIndex, ids: NDArray[np.int64]) -> None:
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

    def persist(self) -> None:
        """Make the index durable (VectorIndex.persist), first caught up with the store under the writers'
        lock, so a process holding an older index never writes back faces that another process erased
        meanwhile. Ingestion calls it every `index_save_every` images and at the end of a batch, so that
        little is left to catch up after a crash."""
        with self._lock:
            if self._index is not None:
                with self.store.writing():
                    self._catch_up()
                    self._index.persist()

    def purge(self) -> None:
        """After an erasure committed: the index follows the store and is purged (VectorIndex.purge), so that
        no earlier persisted copy of it can give back an erased template."""
        with self._lock:
            index = self.index()
            with self.store.writing():
                self._catch_up()
                index.purge()

    def remove_committed(self, face_ids: Collection[int], generation: int | None = None) -> int:
        """An erasure deleted these faces from the store, committed as `generation`: they leave the index in
        O(their number) when it was at the generation before (else it follows the store), and the index is
        purged (VectorIndex.purge): unsearchable by any process on return, earlier copies unreadable once
        `settle` returns. Returns how many were removed here."""
        with self._lock:
            if self._index is None:
                self._open()
            index = self._index
            assert index is not None
            removed = 0
            if generation is not None and index.generation == generation - 1:
                removed = index.remove(face_ids)
                index.set_generation(generation)
            with self.store.writing():
                self._catch_up()
                index.purge()
            return removed

    def settle(self) -> None:
        """Wait for the index's work in the background (VectorIndex.settle), loading the index if need be (a
        purge that a dead process left unfinished is finished here)."""
        with self._lock:
            self.index().settle()

    def close(self) -> None:
        """Persist, and let work in the background (a compaction) finish: the process may exit after this."""
        with self._lock:
            self.persist()
            if self._index is not None:
                self._index.settle()

    def writing(self) -> AbstractContextManager[None]:
        """Held while reading the persisted index whole (a backup): no process persists it meanwhile."""
        return self.store.writing()

    def unsafe_at_rest(self) -> str | None:
        """Why the persisted index may not be copied as it is (it is in clear), or None."""
        return self.store.unsafe_at_rest()

    def persisted_ids(self) -> set[int]:
        """The face ids the persisted index holds, not those in memory: what a copy of it would give back."""
        return self.store.persisted_ids()

    def search(self, vector: NDArray[np.float32], k: int, partitions: Collection[int] | None) -> list[Hit]:
        return self.index().search(vector, k, partitions)

    def count(self, partitions: Collection[int] | None) -> int:
        """How many faces a search of these partitions (sources) compares the query with."""
        return self.index().count(partitions)


def _chunks(ids: NDArray[np.int64]) -> Iterator[NDArray[np.int64]]:
    for start in range(0, len(ids), BATCH):
        yield ids[start:start + BATCH]
