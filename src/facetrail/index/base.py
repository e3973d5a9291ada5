"""The vector index interface: the embedded FAISS index and a distributed engine both meet it."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from typing import Protocol

import numpy as np
from numpy.typing import NDArray


@dataclass(frozen=True)
class Hit:
    """A face id and its Euclidean distance to the query template (smaller = more similar)."""

    face_id: int
    distance: float


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

    def set_generation(self, generation: int) -> None: ...

    def save(self) -> None:
        """Persist atomically: a crash leaves the previous file or the new one, never half of one."""
        ...
