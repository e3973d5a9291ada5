"""The embedded index: FAISS exact L2 search with true removal, persisted in one checksummed file.

The file is sealed as a whole (AES-GCM, crypto/) when the owner passes a `Sealing` (faiss_store.py): the
vectors are usable in memory, as a search needs them, but never in clear on disk; `purge` renews the key.
Inside: 8-byte magic, 4-byte header length, JSON header (dim, count, generation, sha256 of the body), then
the body: the serialised FAISS index followed by the partition of each id. The file is written to a
temporary name, fsynced and renamed, so readers see the old or the new file whole.
"""

from __future__ import annotations

import hashlib
import json
import struct
import threading
from collections.abc import Collection
from pathlib import Path
from typing import Any, Protocol

import faiss
import numpy as np
from numpy.typing import NDArray

from facetrail.crashpoints import crash_point
from facetrail.errors import FacetrailError, IndexCorruptError
from facetrail.fsutil import atomic_write
from facetrail.index.base import Hit

MAGIC = b"FTINDEX1"


class Sealing(Protocol):
    """How the index file is encrypted at rest: under one key at a time."""

    def seal(self, raw: bytes) -> bytes: ...

    def unseal(self, sealed: bytes) -> bytes: ...

    def renew(self) -> None:
        """Seal under a new key from now on."""
        ...

    def destroy_retired(self) -> None:
        """Destroy the keys that files were sealed under before the last `renew`."""
        ...


class FaissIndex:
    """Exact search (IndexFlatL2 in an IndexIDMap2). Thread-safe: one lock around every operation."""

    def __init__(self, path: Path, dim: int, *, sealing: Sealing | None = None) -> None:
        self.path = path
        self.dim = dim
        self._sealing = sealing
        self._lock = threading.RLock()
        self._index: Any = faiss.IndexIDMap2(faiss.IndexFlatL2(dim))
        self._partition: dict[int, int] = {}
        self._generation = 0
        self._selector_cache: dict[frozenset[int], tuple[int, Any]] = {}
        self._version = 0

    # -- persistence -------------------------------------------------------------------------
    @classmethod
    def load(cls, path: Path, dim: int, *, sealing: Sealing | None = None) -> FaissIndex:
        """Read an index file; raise IndexCorruptError if it is unreadable, truncated, altered or sealed
        under a key that is gone."""
        index = cls(path, dim, sealing=sealing)
        try:
            raw = path.read_bytes()
        except OSError as exc:
            raise IndexCorruptError(f"cannot read index file: {exc}") from exc
        if sealing is not None:
            try:
                raw = sealing.unseal(raw)
            except FacetrailError as exc:
                raise IndexCorruptError(f"index file cannot be decrypted: {exc}") from exc
        if len(raw) < 12 or raw[:8] != MAGIC:
            raise IndexCorruptError("index file has no valid header")
        (header_len,) = struct.unpack("<I", raw[8:12])
        try:
            header = json.loads(raw[12:12 + header_len])
            body = raw[12 + header_len:]
            if hashlib.sha256(body).hexdigest() != header["sha256"]:
                raise IndexCorruptError("index file checksum mismatch")
            if header["dim"] != dim:
                raise IndexCorruptError(f"index holds {header['dim']}-d vectors, model needs {dim}-d")
            faiss_len = header["faiss_bytes"]
            loaded = faiss.deserialize_index(np.frombuffer(body[:faiss_len], dtype=np.uint8))
            parts = np.frombuffer(body[faiss_len:], dtype=np.int64).reshape(-1, 2)
        except IndexCorruptError:
            raise
        except (ValueError, KeyError, RuntimeError, TypeError) as exc:
            raise IndexCorruptError(f"index file unreadable: {exc}") from exc
        index._index = loaded
        index._partition = {int(i): int(p) for i, p in parts}
        index._generation = int(header["generation"])
        if len(index._partition) != index._index.ntotal:
            raise IndexCorruptError("index file is inconsistent (ids and partitions differ)")
        return index

    def persist(self) -> None:
        """Write the file atomically: a crash leaves the previous file or the new one, never half of one."""
        with self._lock:
            faiss_bytes = faiss.serialize_index(self._index).tobytes()
            parts = np.array(sorted(self._partition.items()), dtype=np.int64).reshape(-1, 2)
            body = faiss_bytes + parts.tobytes()
            header = json.dumps({
                "dim": self.dim, "count": len(self._partition), "generation": self._generation,
                "faiss_bytes": len(faiss_bytes), "sha256": hashlib.sha256(body).hexdigest(),
            }).encode()
            raw = MAGIC + struct.pack("<I", len(header)) + header + body
            atomic_write(self.path, self._sealing.seal(raw) if self._sealing is not None else raw,
                         before_rename=lambda: crash_point("index_save"))

    def purge(self) -> None:
        """persist() under a new key, then destroy the keys of the earlier files: no copy of one (a backup's)
        can be opened any more. A crash in between leaves the old keys retired, destroyed by the next purge.
        Unsealed (tests only), the new file just replaces the old one."""
        with self._lock:
            if self._sealing is not None:
                self._sealing.renew()
            self.persist()
            if self._sealing is not None:
                self._sealing.destroy_retired()

    # -- contents ----------------------------------------------------------------------------
    @property
    def generation(self) -> int:
        return self._generation

    def set_generation(self, generation: int) -> None:
        with self._lock:
            self._generation = generation

    def __len__(self) -> int:
        return int(self._index.ntotal)

    def ids(self) -> NDArray[np.int64]:
        with self._lock:
            return np.fromiter(self._partition.keys(), dtype=np.int64, count=len(self._partition))

    def add(self, ids: NDArray[np.int64], vectors: NDArray[np.float32], partitions: NDArray[np.int64]) -> None:
        if len(ids) == 0:
            return
        vectors = np.ascontiguousarray(vectors, dtype=np.float32).reshape(-1, self.dim)
        ids = np.ascontiguousarray(ids, dtype=np.int64)
        with self._lock:
            present = [int(i) for i in ids if int(i) in self._partition]
            if present:
                self._remove_locked(present)
            self._index.add_with_ids(vectors, ids)
            for face_id, part in zip(ids.tolist(), np.asarray(partitions).tolist(), strict=True):
                self._partition[int(face_id)] = int(part)
            self._changed()

    def remove(self, ids: Collection[int]) -> int:
        with self._lock:
            return self._remove_locked(ids)

    def _remove_locked(self, ids: Collection[int]) -> int:
        wanted = np.array(sorted({int(i) for i in ids}), dtype=np.int64)
        if len(wanted) == 0:
            return 0
        removed = int(self._index.remove_ids(faiss.IDSelectorBatch(wanted)))
        for face_id in wanted.tolist():
            self._partition.pop(face_id, None)
        self._changed()
        return removed

    def _changed(self) -> None:
        self._version += 1
        self._selector_cache.clear()

    # -- search ------------------------------------------------------------------------------
    def search(self, vector: NDArray[np.float32], k: int,
               partitions: Collection[int] | None = None) -> list[Hit]:
        query = np.ascontiguousarray(vector, dtype=np.float32).reshape(1, self.dim)
        with self._lock:
            if self._index.ntotal == 0 or k <= 0:
                return []
            params = None
            if partitions is not None:
                selector = self._selector(frozenset(int(p) for p in partitions))
                if selector is None:
                    return []
                params = faiss.SearchParameters()
                params.sel = selector
            k = min(k, int(self._index.ntotal))
            distances, labels = self._index.search(query, k, params=params)
        return [
            # IndexFlatL2 reports squared distances.
            Hit(face_id=int(label), distance=float(np.sqrt(max(0.0, float(dist)))))
            for dist, label in zip(distances[0], labels[0], strict=True)
            if label >= 0
        ]

    def _selector(self, allowed: frozenset[int]) -> Any:
        cached = self._selector_cache.get(allowed)
        if cached is not None:
            return cached[1]
        ids = np.array([i for i, p in self._partition.items() if p in allowed], dtype=np.int64)
        selector = faiss.IDSelectorBatch(ids) if len(ids) else None
        self._selector_cache[allowed] = (self._version, selector)
        return selector
