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
import math
import os
import struct
import threading
from collections.abc import Collection, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
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
ABSENT = np.iinfo(np.int64).min  # no face under this id
HASHTABLE: int = faiss.DirectMap.Hashtable  # type: ignore[attr-defined]  # id -> list position (faiss stubs lack it)
MIN_CANDIDATES = 1000  # a filtered IVF search visits enough cells to meet about this many allowed faces
TRAIN_POINTS_PER_CELL = 64  # k-means sample for the inverted file: this many faces per cell at most


@dataclass(frozen=True)
class IndexTuning:
    """How the embedded index searches: exact up to `approximate_above` faces, an inverted file above (`nprobe`
    cells visited per query); FAISS threads for one search and for building; the model whose templates it holds
    (a file made for another model is refused). The defaults come from `make bench-scale` (BENCHMARKS.md): below
    about 300,000 faces exact search takes a few ms on one thread and misses nothing; above, 512 cells (about a
    fifth of them at 1M faces) keep recall@10 near 0.985 at a quarter of exact search's time."""

    approximate_above: int = 300_000
    nprobe: int = 512
    search_threads: int = 1
    build_threads: int = 0
    model_id: str | None = None
    seed: int = 1234


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
    """Exact search (IndexFlatL2 in an IndexIDMap2) up to `tuning.approximate_above` faces, an inverted file
    (IndexIVFFlat, trained on the gallery's own vectors) above. Thread-safe: one lock around every operation.

    The IVF index keeps every vector whole (flat codes), so the distances it returns are exact: the shortlist
    it ranks is every face in the `nprobe` cells nearest the query, and only which cells are visited is
    approximate. Removal is real in both (remove_ids; the IVF one through a hash table from id to list
    position, so it costs O(removed)): a removed id is never returned, from the moment `remove` returns.
    Each id's partition sits in a numpy array indexed by id, so a partition filter is built vectorised
    (a bitmap over ids) whatever the gallery size; it takes 8 bytes per id up to the largest (face ids are the
    store's dense row ids).
    """

    def __init__(self, path: Path, dim: int, *, sealing: Sealing | None = None,
                 tuning: IndexTuning | None = None) -> None:
        self.path = path
        self.dim = dim
        self.tuning = tuning or IndexTuning()
        self._sealing = sealing
        self._lock = threading.RLock()
        self._index: Any = _exact(dim)
        self._part = np.full(0, ABSENT, dtype=np.int64)  # partition of each id, by id; ABSENT where none
        self._generation = 0
        self._trained_for = 0  # gallery size the IVF index was trained at; 0 while exact
        self._selector_cache: dict[frozenset[int], tuple[Any, NDArray[np.uint8], int]] = {}

    # -- persistence -------------------------------------------------------------------------
    @classmethod
    def load(cls, path: Path, dim: int, *, sealing: Sealing | None = None,
             tuning: IndexTuning | None = None) -> FaissIndex:
        """Read an index file; raise IndexCorruptError if it is unreadable, truncated, altered, sealed
        under a key that is gone, or made for another model (its dimension or model id differ)."""
        index = cls(path, dim, sealing=sealing, tuning=tuning)
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
            made_for = header.get("model")
            if index.tuning.model_id is not None and made_for is not None and made_for != index.tuning.model_id:
                raise IndexCorruptError(f"index holds templates of model {made_for!r}, "
                                        f"not of {index.tuning.model_id!r}")
            faiss_len = header["faiss_bytes"]
            loaded = faiss.deserialize_index(np.frombuffer(body[:faiss_len], dtype=np.uint8))
            parts = np.frombuffer(body[faiss_len:], dtype=np.int64).reshape(-1, 2)
        except IndexCorruptError:
            raise
        except (ValueError, KeyError, RuntimeError, TypeError) as exc:
            raise IndexCorruptError(f"index file unreadable: {exc}") from exc
        index._index = loaded
        index._trained_for = int(header.get("trained_for", 0))
        index._generation = int(header["generation"])
        index._set_parts(parts[:, 0], parts[:, 1])
        if len(parts) != index._index.ntotal or len(np.unique(parts[:, 0])) != len(parts):
            raise IndexCorruptError("index file is inconsistent (ids and partitions differ)")
        ivf = _ivf(loaded)
        if ivf is not None and ivf.direct_map.type != HASHTABLE:
            ivf.set_direct_map_type(HASHTABLE)
        return index

    def persist(self) -> None:
        """Write the file atomically: a crash leaves the previous file or the new one, never half of one."""
        with self._lock:
            faiss_bytes = faiss.serialize_index(self._index).tobytes()
            ids = self.ids()
            body = faiss_bytes + np.stack([ids, self._part[ids]], axis=1).astype(np.int64).tobytes()
            header = json.dumps({
                "dim": self.dim, "count": len(ids), "generation": self._generation, "model": self.tuning.model_id,
                "trained_for": self._trained_for, "faiss_bytes": len(faiss_bytes),
                "sha256": hashlib.sha256(body).hexdigest(),
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

    @property
    def approximate(self) -> bool:
        """Whether the inverted file serves searches (above `tuning.approximate_above` faces)."""
        return _ivf(self._index) is not None

    def set_generation(self, generation: int) -> None:
        with self._lock:
            self._generation = generation

    def __len__(self) -> int:
        return int(self._index.ntotal)

    def ids(self) -> NDArray[np.int64]:
        with self._lock:
            return np.flatnonzero(self._part != ABSENT).astype(np.int64)

    def add(self, ids: NDArray[np.int64], vectors: NDArray[np.float32], partitions: NDArray[np.int64]) -> None:
        if len(ids) == 0:
            return
        vectors = np.ascontiguousarray(vectors, dtype=np.float32).reshape(-1, self.dim)
        ids = np.ascontiguousarray(ids, dtype=np.int64)
        if len(ids) != len(vectors) or len(ids) != len(partitions):
            raise ValueError(f"{len(ids)} ids, {len(vectors)} vectors and {len(partitions)} partitions differ")
        if ids.min() < 0:
            raise ValueError("face ids must not be negative")
        with self._lock:
            present = ids[self._present(ids)]
            if len(present):
                self._remove_locked(present)
            self._index.add_with_ids(vectors, ids)
            self._set_parts(ids, np.asarray(partitions, dtype=np.int64))
            self._changed()
            self._reshape()

    def remove(self, ids: Collection[int]) -> int:
        with self._lock:
            removed = self._remove_locked(np.fromiter((int(i) for i in ids), dtype=np.int64))
            if removed:
                self._reshape()
            return removed

    def _remove_locked(self, ids: NDArray[np.int64]) -> int:
        wanted = np.unique(ids)
        wanted = wanted[self._present(wanted)]
        if len(wanted) == 0:
            return 0
        if self.approximate:  # the hash table direct map finds each id: O(removed)
            removed = int(self._index.remove_ids(faiss.IDSelectorArray(wanted)))
        else:
            removed = int(self._index.remove_ids(faiss.IDSelectorBatch(wanted)))
        self._part[wanted] = ABSENT
        self._changed()
        return removed

    def _present(self, ids: NDArray[np.int64]) -> NDArray[np.bool_]:
        inside = (ids >= 0) & (ids < len(self._part))
        present = np.zeros(len(ids), dtype=bool)
        present[inside] = self._part[ids[inside]] != ABSENT
        return present

    def _set_parts(self, ids: NDArray[np.int64], parts: NDArray[np.int64]) -> None:
        if len(ids) == 0:
            return
        top = int(ids.max()) + 1
        if top > len(self._part):
            grown = np.full(max(top, 2 * len(self._part)), ABSENT, dtype=np.int64)
            grown[:len(self._part)] = self._part
            self._part = grown
        self._part[ids] = parts

    def _changed(self) -> None:
        self._selector_cache.clear()

    # -- exact or approximate ----------------------------------------------------------------
    def _reshape(self) -> None:
        """Switch to the inverted file when the gallery grows past the threshold, retrain it when it has
        grown fourfold since training (its cells would be too long), go back to exact below half the
        threshold."""
        n = len(self)
        threshold = self.tuning.approximate_above
        if not self.approximate:
            if n >= threshold:
                self._rebuild(approximate=True)
        elif n < threshold // 2:
            self._rebuild(approximate=False)
        elif n > 4 * self._trained_for:
            self._rebuild(approximate=True)

    def _rebuild(self, *, approximate: bool) -> None:
        ids, vectors = self._contents()
        with _threads(self.tuning.build_threads):
            if approximate:
                index = _trained_ivf(vectors, self.dim, seed=self.tuning.seed)
                self._trained_for = len(ids)
            else:
                index = _exact(self.dim)
                self._trained_for = 0
            index.add_with_ids(vectors, ids)
        self._index = index
        self._changed()

    def _contents(self) -> tuple[NDArray[np.int64], NDArray[np.float32]]:
        """Every id and its vector, in storage order."""
        ivf = _ivf(self._index)
        if ivf is None:
            ids = faiss.vector_to_array(self._index.id_map).astype(np.int64)
            vectors = self._index.index.reconstruct_n(0, self._index.ntotal)
            return ids, np.ascontiguousarray(vectors, dtype=np.float32)
        invlists = ivf.invlists
        id_parts, vector_parts = [], []
        for cell in range(ivf.nlist):
            size = invlists.list_size(cell)
            if size == 0:
                continue
            id_parts.append(faiss.rev_swig_ptr(invlists.get_ids(cell), size).copy())
            codes = faiss.rev_swig_ptr(invlists.get_codes(cell), size * invlists.code_size)
            vector_parts.append(np.frombuffer(codes.copy(), dtype=np.float32).reshape(size, self.dim))
        if not id_parts:
            return np.zeros(0, dtype=np.int64), np.zeros((0, self.dim), dtype=np.float32)
        return (np.concatenate(id_parts).astype(np.int64),
                np.ascontiguousarray(np.concatenate(vector_parts), dtype=np.float32))

    # -- search ------------------------------------------------------------------------------
    def search(self, vector: NDArray[np.float32], k: int,
               partitions: Collection[int] | None = None) -> list[Hit]:
        query = np.ascontiguousarray(vector, dtype=np.float32).reshape(1, self.dim)
        with self._lock:
            n = int(self._index.ntotal)
            if n == 0 or k <= 0:
                return []
            selected = n
            ivf = _ivf(self._index)
            params: Any = faiss.SearchParametersIVF() if ivf is not None else faiss.SearchParameters()
            if partitions is not None:
                selector, _bitmap, selected = self._selector(frozenset(int(p) for p in partitions))
                if selected == 0:
                    return []
                params.sel = selector
            if ivf is not None:
                # The cells nearest the query hold the filtered neighbours as likely as the others; more cells are
                # visited only where the filter would leave too few candidates in them (a small partition is then
                # searched whole).
                wanted = math.ceil(ivf.nlist * max(MIN_CANDIDATES, 4 * k) / selected)
                params.nprobe = min(ivf.nlist, max(self.tuning.nprobe, wanted))
            k = min(k, selected)
            with _threads(self.tuning.search_threads):
                distances, labels = self._index.search(query, k, params=params)
        return [
            # IndexFlatL2 and IndexIVFFlat report squared distances.
            Hit(face_id=int(label), distance=float(np.sqrt(max(0.0, float(dist)))))
            for dist, label in zip(distances[0], labels[0], strict=True)
            if label >= 0
        ]

    def count(self, partitions: Collection[int] | None = None) -> int:
        """Faces a search limited to these partitions reaches (from the search's own cached filter)."""
        with self._lock:
            if partitions is None:
                return int(self._index.ntotal)
            return self._selector(frozenset(int(p) for p in partitions))[2]

    def _selector(self, allowed: frozenset[int]) -> tuple[Any, NDArray[np.uint8], int]:
        """A bitmap over ids of the faces in these partitions (vectorised: no loop over faces), cached until
        the next change. The bitmap is returned beside the selector, which only points at it."""
        cached = self._selector_cache.get(allowed)
        if cached is not None:
            return cached
        mask = np.isin(self._part, np.fromiter(allowed, dtype=np.int64, count=len(allowed)))
        bitmap = np.packbits(mask, bitorder="little")
        entry = (faiss.IDSelectorBitmap(len(mask), faiss.swig_ptr(bitmap)), bitmap, int(mask.sum()))
        self._selector_cache[allowed] = entry
        return entry


def _exact(dim: int) -> Any:
    return faiss.IndexIDMap2(faiss.IndexFlatL2(dim))


def _ivf(index: Any) -> Any:
    return index if isinstance(index, faiss.IndexIVF) else None


def nlist_for(n: int) -> int:
    """Cells of the inverted file for n faces: about 4 sqrt(n) (4,000 at 1M), never more than the faces that
    train them."""
    return max(1, min(n, int(4 * math.sqrt(n))))


def _trained_ivf(vectors: NDArray[np.float32], dim: int, *, seed: int) -> Any:
    """An empty IVFFlat index whose cells are k-means centroids of (a sample of) these vectors."""
    n = len(vectors)
    nlist = nlist_for(n)
    quantizer = faiss.IndexFlatL2(dim)
    index = faiss.IndexIVFFlat(quantizer, dim, nlist, faiss.METRIC_L2)
    index.cp.seed = seed
    index.cp.niter = 10
    index.cp.max_points_per_centroid = TRAIN_POINTS_PER_CELL
    index.cp.min_points_per_centroid = 5  # small galleries have few faces per cell: no warning for them
    sample = min(n, TRAIN_POINTS_PER_CELL * nlist)
    rows = np.sort(np.random.default_rng(seed).choice(n, size=sample, replace=False))
    index.train(np.ascontiguousarray(vectors[rows]))
    index.set_direct_map_type(HASHTABLE)
    return index


@contextmanager
def _threads(count: int) -> Iterator[None]:
    """FAISS's OpenMP threads for one call (0: every core), set back afterwards. One query is fastest on one
    thread: spreading it over cores costs more in synchronisation than it saves (measured in BENCHMARKS.md)."""
    before = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(count if count > 0 else (os.cpu_count() or 1))
    try:
        yield
    finally:
        faiss.omp_set_num_threads(before)
