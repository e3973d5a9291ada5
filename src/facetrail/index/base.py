"""The vector index interface: the embedded FAISS index and a distributed engine both meet it.

`VectorIndex` is one model's templates; `IndexStore` is where such an index is persisted. The gallery (gallery.py)
keeps an index in step with the store through these two alone: how an engine persists, locks and forgets is
its own business (faiss_index.py and faiss_store.py for the embedded one).
"""

from __future__ import annotations

from collections.abc import Collection
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Protocol

import numpy as np
from numpy.typing import NDArray


@dataclass(frozen=True)
class Hit:
    """A face id and its Euclidean distance to the query template (smaller = more similar)."""

    face_id: int
    distance: float


Batch = tuple[NDArray[np.int64], NDArray[np.float32], NDArray[np.int64]]


def checked_batch(ids: NDArray[np.int64], vectors: NDArray[np.float32], partitions: NDArray[np.int64],
                  dim: int) -> Batch:
    """What `VectorIndex.add` receives, as contiguous arrays of the right types; ValueError when the lengths
    differ or an id is negative (every engine refuses the same batches)."""
    vectors = np.ascontiguousarray(vectors, dtype=np.float32).reshape(-1, dim)
    ids = np.ascontiguousarray(ids, dtype=np.int64)
    partitions = np.asarray(partitions, dtype=np.int64)
    if len(ids) != len(vectors) or len(ids) != len(partitions):
        raise ValueError(f"{len(ids)} ids, {len(vectors)} vectors and {len(partitions)} partitions differ")
    if len(ids) and ids.min() < 0:
        raise ValueError("face ids must not be negative")
    return ids, vectors, partitions


class VectorIndex(Protocol):
    """Face templates by face id, each tagged with a partition (its source id) for filtering."""

    @property
    def generation(self) -> int:
        """The store generation this index reflects (see store.db.get_generation)."""
        ...

    def __len__(self) -> int: ...

    def ids(self) -> NDArray[np.int64]: ...

    def add(self, ids: NDArray[np.int64], vectors: NDArray[np.float32], partitions: NDArray[np.int64]) -> None:
        """Add templates; an id already present is replaced."""
        ...

    def remove(self, ids: Collection[int]) -> int:
        """Remove these ids for good (no tombstones); return how many were present."""
        ...

    def search(self, vector: NDArray[np.float32], k: int,
               partitions: Collection[int] | None = None) -> list[Hit]:
        """The k nearest templates, limited to the given partitions when given, nearest first."""
        ...

    def count(self, partitions: Collection[int] | None = None) -> int:
        """How many templates a search limited to these partitions reaches (all when None)."""
        ...

    def set_generation(self, generation: int) -> None: ...

    def persist(self) -> None:
        """Make the contents and generation durable, whole: after a crash the index is found as persisted
        before or as now, never half of either (what came later is caught up from the store)."""
        ...

    def purge(self) -> None:
        """Persist after removals made for an erasure, so that no earlier persisted copy of the index (a
        backup's included) can give back a removed template: the embedded index rewrites its files under a new
        key and destroys the keys of the earlier files; an engine that only marks deletions compacts them.
        On return the removals are durable and no process can search the removed ids; the rewrite may go on in
        the background until `settle`."""
        ...

    def refresh(self) -> int:
        """Apply what other processes persisted since this index was loaded or last refreshed, in
        O(what changed); return how many ids changed (0 for an engine that is always current)."""
        ...

    def settle(self) -> None:
        """Wait until work left in the background (a purge's rewrite) is done, and finish a purge that a
        process which died left unfinished; after it, `purge`'s promise about earlier copies holds."""
        ...


class IndexStore(Protocol):
    """Where one model's index is persisted (a sealed file, a collection on a server)."""

    def open(self) -> VectorIndex | None:
        """The persisted index, or None when none was persisted yet. Raises IndexCorruptError, naming the
        cause, when it is unusable (damaged, sealed under a destroyed key): the caller rebuilds it."""
        ...

    def create(self) -> VectorIndex:
        """A new, empty index; once persisted, it replaces the one persisted before."""
        ...

    def writing(self) -> AbstractContextManager[None]:
        """Held around persisting: one writer at a time, across processes."""
        ...

    def persisted_ids(self) -> set[int]:
        """The ids the persisted index holds (not those in memory): what a copy of it would give back."""
        ...

    def unsafe_at_rest(self) -> str | None:
        """Why the persisted index must be rebuilt at once, before any use (an earlier version persisted it in
        clear), or None."""
        ...
