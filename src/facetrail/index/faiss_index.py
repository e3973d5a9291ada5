"""The embedded index: exact FAISS search for small galleries, an inverted file with a 4-bit PQ fast scan and
exact re-ranking above; persisted as a sealed snapshot plus a sealed change log beside it.

Memory: every template sits in arrays indexed by face id (`Rows`: blocks of 65,536 ids; face ids are the store's
dense row ids), with its partition (`_part`) and a bitmap of the live ids (`_alive`). The search engine is either an
exact search of `Rows` itself (FAISS's brute force, block by block, the live bitmap as its selector: no second
copy of the templates) or an IndexIVFPQFastScan whose shortlist is re-ranked exactly against `Rows` (past the size
where a search's scan is capped, behind an OPQ rotation with codes of half the size: `compact_codes`).

On disk (`<model>.ftindex` and `<model>.ftlog`, both sealed under the keyring's index key by `Sealing`):

- the snapshot: an 8-byte file magic, then frames, each an 8-byte length and one sealed frame. A frame's plaintext
  starts with its magic, the snapshot's epoch and the frame's number (so that no frame can be dropped, repeated,
  reordered or taken from another snapshot); frame 0 holds the JSON header (dim, generation, epoch, model, ...),
  then come the partition of every id, the dense vectors (block by block of `Rows`; a removed id's row is zeros)
  and, for the inverted file, FAISS's serialisation of it, each in frames of at most FRAME_BYTES (the header says
  how many). It is written and read a frame at a time, so that neither a 10M-face snapshot nor a small gallery's
  sits in memory whole beside the index; to a temporary name, fsynced, renamed.
- the change log: a sealed header naming the snapshot's epoch, then records, each a 4-byte length and a sealed
  record of the ids added (with vector and partition) and removed between two store generations. A record is
  appended and fsynced under the writers' lock; a torn last record is ignored, then cut off by the next writer.

`persist` appends the changes since the last one (O(change)); `refresh` applies the records other processes
appended (O(change)); the snapshot is rewritten (compaction) in a background thread when the log has grown to
half the snapshot, and by `purge`, under a new key, after which the old keys are destroyed (erasure).

FAISS itself is imported where it is first used (a search, an inverted file), not with this module: its import
takes about 80 ms, which every command paid, while a command that only adds to a small gallery (an ingestion, say)
never calls it.
"""

from __future__ import annotations

import fcntl
import functools
import hashlib
import json
import logging
import math
import mmap
import os
import queue
import secrets
import struct
import threading
from collections.abc import Callable, Collection, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, cast

import numpy as np
from numpy.typing import NDArray

from facetrail.crashpoints import crash_point
from facetrail.errors import FacetrailError, IndexCorruptError
from facetrail.fsutil import atomic_write, atomic_writer, private_dir, private_opener
from facetrail.index.base import Hit, checked_batch

log = logging.getLogger(__name__)
FILE_MAGIC = b"FTIXSNP3"  # in clear: the file is a sequence of sealed frames
MAGIC = b"FTINDEX3"  # inside each sealed frame
FRAME_BYTES = 16 << 20
"""A snapshot is written in frames of at most this: what saving it holds beside the index. A loading thread lets go
of the interpreter for each frame it decrypts, and waits to get it back while another thread computes
(`_FrameReader`): 1 MiB frames took a 1M-face load from 0.8 s alone to 5.5-5.7 s beside a thread computing in
Python, 16 MiB frames to 1.9-2.6 s (64 MiB: 1.8-2.2 s; ad hoc)."""
LOG_MAGIC = b"FTIXLOG1"
RECORD_MAGIC = b"FTIXREC1"
ABSENT = np.iinfo(np.int64).min  # no face under this id
TRAIN_POINTS_PER_CELL = 64  # k-means sample for the inverted file: this many faces per cell at most
COMPACT_MIN_BYTES = 8 << 20  # the log is folded into the snapshot once it passes this and half the snapshot


@dataclass(frozen=True)
class IndexTuning:
    """How the embedded index searches: exact up to `approximate_above` faces, an inverted file above with a 4-bit PQ
    fast scan (`pq` sub-quantisers; 0: one for every two dimensions, `pq_for`) whose `shortlist` nearest codes are
    re-ranked exactly. The inverted file has `cells_per_sqrt` sqrt(n) cells for the n faces it was trained on, and a
    search visits `probe_share` of them, at least `nprobe`: the neighbours ranked 4th to 10th of a face template are
    mostly other people's faces at nearly the same distance, spread over many cells, so recall@10 follows the share
    of cells visited more than their number (and fewer, longer cells are faster to scan). Past `max_scanned /
    probe_share` faces, fewer cells are visited, as many as hold `max_scanned` codes on average, so that the time of
    a search stops growing with the gallery (recall@10 then falls slowly; BENCHMARKS.md); an inverted file trained
    for more faces than that has compact codes (`compact_codes`), half the bytes, which count half against
    `max_scanned`: twice the cells for the same bytes scanned. FAISS threads for one
    search and for building; the model whose templates it holds (a file made for another model is refused). The
    defaults come from `make bench-scale` (BENCHMARKS.md)."""

    approximate_above: int = 300_000
    nprobe: int = 512
    shortlist: int = 1000
    pq: int = 0
    cells_per_sqrt: float = 1.3
    probe_share: float = 0.5
    max_scanned: int = 1_600_000
    search_threads: int = 1
    build_threads: int = 0
    model_id: str | None = None
    seed: int = 1234


Buffer = bytes | bytearray | memoryview
OpenInto = Callable[[Buffer, memoryview], None]
"""Writes a record's plaintext into a buffer of exactly its size, or raises."""


class Sealing(Protocol):
    """How the index files are encrypted at rest: under one key at a time."""

    overhead: int
    """How much longer a sealed record is than its plaintext."""

    def sealer(self) -> Callable[[bytes], bytes]:
        """Seals records under the current key, looked up once (for the records of one file write)."""
        ...

    def opener(self) -> Callable[[bytes], bytes]:
        """Opens records, each key looked up once (for the records of one file read); raises FacetrailError."""
        ...

    def opener_into(self) -> OpenInto:
        """As `opener`, each record's plaintext written into a buffer (`overhead` bytes shorter than the record)."""
        ...

    def renew(self) -> None:
        """Seal under a new key from now on."""
        ...

    def destroy_retired(self) -> None:
        """Destroy the keys that files were sealed under before the last `renew`."""
        ...

    def retired(self) -> bool:
        """Whether keys retired by `renew` still exist (a purge to finish)."""
        ...


@contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """An exclusive flock on `path` (the writers' lock of one index, across processes and threads)."""
    private_dir(path.parent)
    with open(path, "a+", opener=private_opener) as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


class FaissIndex:
    """Thread-safe (one lock around every operation). Removal is immediate and O(removed): the id leaves the live
    bitmap, which a search passes to FAISS as its selector whenever the engine holds a code it must skip, and
    against which re-ranking checks the shortlist every time; the engine keeps the removed vector or code until the
    next compaction, which drops it before the snapshot is written (a purge always compacts)."""

    def __init__(self, path: Path, dim: int, *, sealing: Sealing | None = None,
                 tuning: IndexTuning | None = None) -> None:
        self.path = path
        self.log_path = path.with_suffix(".ftlog")
        self.lock_path = path.with_suffix(".lock")
        self.dim = dim
        self.tuning = tuning or IndexTuning()
        self._sealing = sealing
        self._lock = threading.RLock()
        self._vec = Rows(dim)
        self._part: NDArray[np.int64] = np.full(0, ABSENT, dtype=np.int64)
        self._alive: NDArray[np.uint8] = np.zeros(0, dtype=np.uint8)  # packed bitmap over ids
        self._count = 0
        self._engine: Any = None  # the inverted file; None while exact (FAISS searches the templates' blocks)
        self._stale: set[int] = set()  # removed ids whose vectors or codes the engine still holds
        self._trained_for = 0
        self._generation = 0
        self._filters: dict[int, list[Any]] = {}  # partition -> [bitmap, count], kept up to date once built
        # Persistence: the snapshot this index descends from, how far into its log it has read, the generation
        # the files reach, and the ids changed in memory since.
        self._epoch: str | None = None
        self._log_offset = 0
        self._file_gen = 0
        self._dirty: list[NDArray[np.int64]] = []
        self._snapshot_bytes = 0
        self._loaded_stat: tuple[int, int, int] | None = None  # the snapshot file this index was read from
        self._log_seen: tuple[int, int] | None = None  # the log file (inode, size) when last read
        self._reshaped = False
        self._compactor: threading.Thread | None = None
        self._compact_error: BaseException | None = None

    # -- contents ----------------------------------------------------------------------------
    @property
    def generation(self) -> int:
        return self._generation

    @property
    def approximate(self) -> bool:
        """Whether the inverted file serves searches (above `tuning.approximate_above` faces)."""
        if self._engine is None:
            return False
        import faiss

        return isinstance(inverted_file(self._engine), faiss.IndexIVF)

    def set_generation(self, generation: int) -> None:
        with self._lock:
            self._generation = generation

    def __len__(self) -> int:
        return self._count

    def ids(self) -> NDArray[np.int64]:
        with self._lock:
            return np.flatnonzero(self._part != ABSENT).astype(np.int64)

    def add(self, ids: NDArray[np.int64], vectors: NDArray[np.float32], partitions: NDArray[np.int64]) -> None:
        if len(ids) == 0:
            return
        ids, vectors, partitions = checked_batch(ids, vectors, partitions, self.dim)
        with self._lock:
            self._add_locked(ids, vectors, partitions)
            self._dirty.append(ids.copy())
            self._reshape()

    def _add_locked(self, ids: NDArray[np.int64], vectors: NDArray[np.float32],
                    partitions: NDArray[np.int64]) -> None:
        ids, first = np.unique(ids[::-1], return_index=True)  # the last of repeated ids wins
        vectors, partitions = vectors[::-1][first], partitions[::-1][first]
        present = ids[self._present(ids)]
        if len(present):
            self._remove_locked(present)
        stale = [int(i) for i in ids if int(i) in self._stale] if self._stale else []
        if stale:  # the inverted file must not hold two codes under one id: drop the old one now (rare)
            import faiss

            self._engine.remove_ids(faiss.IDSelectorBatch(np.array(stale, dtype=np.int64)))
            self._stale.difference_update(stale)
        self._grow(int(ids.max()) + 1)
        self._vec.set(ids, vectors)
        self._part[ids] = partitions
        _set_bits(self._alive, ids, True)
        for partition, (bitmap, _count) in self._filters.items():
            mine = ids[partitions == partition]
            _set_bits(bitmap, mine, True)
            self._filters[partition][1] += len(mine)
        self._count += len(ids)
        if self._engine is not None:
            self._engine.add_with_ids(vectors, ids)

    def remove(self, ids: Collection[int]) -> int:
        with self._lock:
            wanted = np.fromiter((int(i) for i in ids), dtype=np.int64)
            removed = self._remove_locked(wanted)
            if removed:
                self._dirty.append(wanted)
                self._reshape()
            return removed

    def _remove_locked(self, ids: NDArray[np.int64]) -> int:
        wanted = np.unique(ids)
        wanted = wanted[self._present(wanted)]
        if len(wanted) == 0:
            return 0
        _set_bits(self._alive, wanted, False)
        parts = self._part[wanted]
        for partition, entry in self._filters.items():
            mine = wanted[parts == partition]
            _set_bits(entry[0], mine, False)
            entry[1] -= len(mine)
        self._part[wanted] = ABSENT
        self._count -= len(wanted)
        if self._engine is not None:  # O(removed): the inverted file drops their codes at the next compaction
            self._stale.update(int(i) for i in wanted)
        return len(wanted)

    def _present(self, ids: NDArray[np.int64]) -> NDArray[np.bool_]:
        inside = (ids >= 0) & (ids < len(self._part))
        present = np.zeros(len(ids), dtype=bool)
        present[inside] = self._part[ids[inside]] != ABSENT
        return present

    def _grow(self, top: int) -> None:
        self._vec.grow(top)
        if top <= len(self._part):
            return
        size = max(top, 2 * len(self._part), 1024)
        size = (size + 7) // 8 * 8
        part = np.full(size, ABSENT, dtype=np.int64)
        part[:len(self._part)] = self._part
        self._part = part
        self._alive = _grown(self._alive, size // 8)
        for entry in self._filters.values():
            entry[0] = _grown(entry[0], size // 8)

    # -- exact or approximate ----------------------------------------------------------------
    def _reshape(self) -> None:
        """Switch to the inverted file when the gallery grows past the threshold, retrain it when it has
        doubled since training (its cells would be too long), go back to exact below half the threshold."""
        n = len(self)
        threshold = self.tuning.approximate_above
        if not self.approximate:
            if n >= threshold:
                self._rebuild(approximate=True)
        elif n < threshold // 2:
            self._rebuild(approximate=False)
        elif n > 2 * self._trained_for:
            self._rebuild(approximate=True)

    def _rebuild(self, *, approximate: bool) -> None:
        ids = self.ids()
        engine = None
        if approximate:
            with _threads(self.tuning.build_threads):
                engine = _trained_ivf(self._vec, ids, self.dim, self.tuning)
                _fill(engine, self._vec, ids)
        self._trained_for = len(ids) if approximate else 0
        self._engine = engine
        self._vec.base_pages = approximate
        self._stale.clear()
        self._reshaped = True

    # -- search ------------------------------------------------------------------------------
    def search(self, vector: NDArray[np.float32], k: int,
               partitions: Collection[int] | None = None) -> list[Hit]:
        query = np.ascontiguousarray(vector, dtype=np.float32).reshape(1, self.dim)
        with self._lock:
            if self._count == 0 or k <= 0:
                return []
            if partitions is None:
                bitmap, selected = self._alive, self._count
            else:
                bitmap, selected = self._filter(frozenset(int(p) for p in partitions))
            if selected == 0:
                return []
            k = min(k, selected)
            if not self.approximate:
                with _threads(self.tuning.search_threads):
                    return self._exact_search(query, k, bitmap)
            import faiss

            params = faiss.SearchParametersIVF()
            if self._stale or selected < self._count:
                # Some codes are of removed faces or outside these partitions: the fast scan skips them. It reads
                # every code's id to do so, so a selector admitting every code the engine holds is left out.
                params.sel = faiss.IDSelectorBitmap(len(bitmap), faiss.swig_ptr(bitmap))
            # A filter leaving few faces in the nearest cells: more cells are visited (a small partition whole).
            nlist = inverted_file(self._engine).nlist
            wanted = math.ceil(nlist * 4 * self.tuning.shortlist / selected)
            params.nprobe = max(self.cells_visited(), min(nlist, wanted))
            depth = min(selected, max(self.tuning.shortlist, k))
            with _threads(self.tuning.search_threads) as threads, _scan_for_one_query(self._engine, threads):
                _, labels = self._engine.search(query, depth, params=params)
            candidates = np.sort(labels[0][labels[0] >= 0])  # sorted: Rows.get reads them a block at a time
            if len(candidates) > 1:  # one code per id in the engine; a repeat would be dropped all the same
                candidates = candidates[np.concatenate(([True], candidates[1:] != candidates[:-1]))]
            candidates = candidates[_get_bits(bitmap, candidates)]  # removed, or outside the filter: never returned
            diff = self._vec.get(candidates) - query
            distances = np.einsum("ij,ij->i", diff, diff)
            if len(candidates) > k:
                top = np.argpartition(distances, k - 1)[:k]
                candidates, distances = candidates[top], distances[top]
            order = np.lexsort((candidates, distances))
            return _hits(candidates[order], distances[order])

    def _exact_search(self, query: NDArray[np.float32], k: int, bitmap: NDArray[np.uint8]) -> list[Hit]:
        """Exact search: FAISS compares the query with every template of each block whose id the bitmap selects
        (the ids of a block are its rows, so the bitmap's bytes for that block are its selector), and the blocks'
        top k are merged. No second copy of the templates is kept for it."""
        import faiss

        ids: list[NDArray[np.int64]] = []
        squared: list[NDArray[np.float32]] = []
        for number, block in enumerate(self._vec.blocks):
            start = number * BLOCK
            rows = min(BLOCK, len(bitmap) * 8 - start)
            if rows <= 0:
                break
            bits = bitmap[start // 8:(start + rows + 7) // 8]
            if not bits.any():
                continue
            distances = np.empty(k, dtype=np.float32)
            labels = np.empty(k, dtype=np.int64)
            selector = faiss.IDSelectorBitmap(rows, faiss.swig_ptr(bits))
            faiss.knn_L2sqr(faiss.swig_ptr(query), faiss.swig_ptr(block), self.dim, 1, rows, k,
                            faiss.swig_ptr(distances), faiss.swig_ptr(labels), None, selector)
            found = labels >= 0
            ids.append(labels[found] + start)
            squared.append(distances[found])
        if not ids:
            return []
        every, every_squared = np.concatenate(ids), np.concatenate(squared)
        order = np.lexsort((every, every_squared))[:k]
        return _hits(every[order], every_squared[order])

    def cells_visited(self) -> int:
        """Inverted-file cells one unfiltered search visits (0 when exact): `probe_share` of them, fewer when
        they hold more than `max_scanned` codes on average (counted at full size: a compact code, half the bytes,
        counts half), at least `nprobe`, at most all."""
        if not self.approximate:
            return 0
        scan = inverted_file(self._engine)
        nlist = int(scan.nlist)
        wanted = math.ceil(self.tuning.probe_share * nlist)
        if self.tuning.max_scanned > 0:
            import faiss

            size = scan.M / pq_for(self.dim, self.tuning.pq) if isinstance(scan, faiss.IndexIVFPQFastScan) else 1.0
            per_cell = max(1.0, self._engine.ntotal / nlist * size)
            wanted = min(wanted, int(self.tuning.max_scanned / per_cell))
        return min(nlist, max(self.tuning.nprobe, wanted))

    def count(self, partitions: Collection[int] | None = None) -> int:
        """Faces a search limited to these partitions reaches (from the search's own incremental filters)."""
        with self._lock:
            if partitions is None:
                return self._count
            return self._filter(frozenset(int(p) for p in partitions))[1]

    def _filter(self, allowed: frozenset[int]) -> tuple[NDArray[np.uint8], int]:
        """A bitmap over ids of the live faces in these partitions: each partition's bitmap is built once
        (vectorised) and then kept up to date by add and remove, so a change costs O(changed ids)."""
        entries = []
        for partition in allowed:
            entry = self._filters.get(partition)
            if entry is None:
                mask = np.zeros(len(self._alive) * 8, dtype=bool)
                mask[:len(self._part)] = self._part == partition
                entry = self._filters[partition] = [np.packbits(mask, bitorder="little"), int(mask.sum())]
            entries.append(entry)
        if len(entries) == 1:
            return entries[0][0], entries[0][1]
        bitmap = np.zeros_like(self._alive)
        for entry in entries:
            np.bitwise_or(bitmap, entry[0], out=bitmap)
        return bitmap, sum(entry[1] for entry in entries)

    # -- persistence: snapshot ---------------------------------------------------------------
    @classmethod
    def load(cls, path: Path, dim: int, *, sealing: Sealing | None = None,
             tuning: IndexTuning | None = None) -> FaissIndex:
        """Read the snapshot and apply its log; raise IndexCorruptError if the snapshot is unreadable, truncated,
        altered, sealed under a key that is gone, or made for another model (its dimension or model id differ)."""
        for attempt in range(READ_ATTEMPTS):
            files = _stats(path, path.with_suffix(".ftlog"))
            index = cls(path, dim, sealing=sealing, tuning=tuning)
            try:
                index._load_snapshot()
                index._read_log()
                return index
            except IndexCorruptError:
                # A purge in another thread or process may have replaced the files while they were read and
                # destroyed the key they were read under: read the new ones. Files that did not change are bad.
                if attempt + 1 == READ_ATTEMPTS or _stats(path, path.with_suffix(".ftlog")) == files:
                    raise
        raise AssertionError("unreachable")

    def _load_snapshot(self) -> None:
        try:
            fh = open(self.path, "rb")
        except OSError as exc:
            raise IndexCorruptError(f"cannot read index file: {exc}") from exc
        with fh:
            st = os.fstat(fh.fileno())
            self._snapshot_bytes = st.st_size
            self._loaded_stat = (st.st_ino, st.st_mtime_ns, st.st_size)
            try:
                frames = _FrameReader(fh, *self._unsealer_into())
                header = frames.header()
                if header["dim"] != self.dim:
                    raise IndexCorruptError(f"index holds {header['dim']}-d vectors, model needs {self.dim}-d")
                made_for = header.get("model")
                if self.tuning.model_id is not None and made_for is not None and made_for != self.tuning.model_id:
                    raise IndexCorruptError(f"index holds templates of model {made_for!r}, "
                                            f"not of {self.tuning.model_id!r}")
                size, faiss_len = int(header["size"]), int(header["faiss_bytes"])
                if int(header["block"]) != BLOCK:
                    raise IndexCorruptError("index file has another block size")
                part = np.empty(size, dtype=np.int64)
                frames.fill(part.view(np.uint8))
                vec = Rows(self.dim, base_pages=bool(faiss_len))
                with _BlocksAhead(vec, size // BLOCK if vec.base_pages else 0) as ahead:
                    for start in range(0, size, BLOCK):  # decrypted a frame at a time into each block
                        count = min(BLOCK, size - start)
                        # rows above `count` (the last block's): zero pages, mapped if ever written
                        block = ahead.take() if count == BLOCK and vec.base_pages else vec.new_block()
                        frames.fill(block[:count].reshape(-1).view(np.uint8))
                        vec.append(block, count)
                engine = None
                if faiss_len:
                    serialised = np.empty(faiss_len, dtype=np.uint8)
                    frames.fill(serialised)
                    import faiss

                    engine = faiss.deserialize_index(serialised)
                    del serialised
                frames.end()
            except IndexCorruptError:
                raise
            except (ValueError, KeyError, RuntimeError, TypeError) as exc:
                raise IndexCorruptError(f"index file unreadable: {exc}") from exc
        self._part, self._vec = part, vec
        self._alive = np.packbits(part != ABSENT, bitorder="little")
        self._count = int(np.count_nonzero(part != ABSENT))
        if int(header["count"]) != self._count:
            raise IndexCorruptError("index file is inconsistent (its count and its ids differ)")
        self._generation = self._file_gen = int(header["generation"])
        self._epoch = str(header["epoch"])
        self._trained_for = int(header.get("trained_for", 0))
        if engine is not None:
            if engine.ntotal != self._count:
                raise IndexCorruptError("index file is inconsistent (its inverted file and its ids differ)")
        self._engine = engine

    def _snapshot(self) -> _Snapshot:
        """What the snapshot will hold, taken under the lock: the partitions and the inverted file copied, the
        vector blocks frozen (a later change copies the block it writes to, `Rows.set`), so that the files are
        written outside the lock while searches and changes go on."""
        engine = np.zeros(0, dtype=np.uint8)
        if self._engine is not None:
            import faiss

            if self._stale:  # no removed face's code may reach the file
                self._engine.remove_ids(faiss.IDSelectorBatch(np.array(sorted(self._stale), dtype=np.int64)))
                self._stale.clear()
            engine = faiss.serialize_index(self._engine)
        size = (int(self.ids().max()) + 1 if self._count else 0)
        epoch = secrets.token_hex(16)
        header = {
            "dim": self.dim, "count": self._count, "size": size, "generation": self._generation, "epoch": epoch,
            "model": self.tuning.model_id, "trained_for": self._trained_for, "faiss_bytes": len(engine),
            "block": BLOCK, "frame_bytes": FRAME_BYTES,
        }
        return _Snapshot(header=header, part=self._part[:size].copy(), blocks=self._vec.frozen(size), engine=engine)

    def _write_files(self, snapshot: _Snapshot) -> int:
        """The snapshot, then an empty log of its epoch; a crash in between leaves the new snapshot beside the
        old log, which names the old epoch and is ignored. Returns the log's size."""
        epoch = bytes.fromhex(snapshot.header["epoch"])
        written = len(FILE_MAGIC)
        seal = self._sealer()
        with atomic_writer(self.path, before_rename=_before_snapshot_rename) as fh:
            fh.write(FILE_MAGIC)
            for number, payload in enumerate(snapshot.frames()):
                sealed = seal(b"".join([MAGIC, epoch, struct.pack("<Q", number), payload]))
                fh.write(struct.pack("<Q", len(sealed)))
                fh.write(sealed)
                written += 8 + len(sealed)
                del sealed
        self._snapshot_bytes = written
        self._loaded_stat = self._snapshot_stat()
        head = self._seal(LOG_MAGIC + snapshot.header["epoch"].encode())
        atomic_write(self.log_path, struct.pack("<I", len(head)) + head)
        return 4 + len(head)

    def compact(self) -> None:
        """Rewrite the snapshot with everything and start an empty log (the caller holds the writers' lock)."""
        with self._lock:
            self._read_log()
            snapshot = self._snapshot()
            epoch, generation = snapshot.header["epoch"], snapshot.header["generation"]
            dirty, self._dirty = self._dirty, []
        try:
            offset = self._write_files(snapshot)
        except BaseException:
            with self._lock:
                self._dirty = dirty + self._dirty
            raise
        with self._lock:
            self._epoch, self._log_offset, self._file_gen = epoch, offset, generation
            self._reshaped = False

    def persist(self) -> None:
        """Make the contents and generation durable: the changes since the last call appended to the log as one
        fsynced record (O(change)); the whole snapshot when there is none yet. After a crash the index is found
        as persisted before or as now, never half of either. The caller holds the writers' lock."""
        with self._lock:
            if self._compact_error is not None:  # retried by the next compaction; an erasure's settle raises it
                log.warning("index compaction failed: %s", self._compact_error)
                self._compact_error = None
            if self._epoch is None or not self.path.exists():
                self.compact()
                return
            self._read_log()
            if self._log_offset == 0:  # no log of our snapshot's epoch (a crash between the two writes)
                head = self._seal(LOG_MAGIC + str(self._epoch).encode())
                atomic_write(self.log_path, struct.pack("<I", len(head)) + head)
                self._log_offset = 4 + len(head)
            ids = np.unique(np.concatenate(self._dirty)) if self._dirty else np.zeros(0, dtype=np.int64)
            if len(ids) == 0 and self._generation == self._file_gen:
                return
            live = ids[self._present(ids)]
            gone = ids[~self._present(ids)]
            header = json.dumps({"epoch": self._epoch, "from": self._file_gen, "to": self._generation,
                                 "added": len(live), "removed": len(gone)}).encode()
            plain = b"".join([RECORD_MAGIC, struct.pack("<I", len(header)), header, live.tobytes(),
                              self._part[live].tobytes(), self._vec.get(live).tobytes(), gone.tobytes()])
            record = self._seal(plain)
            with open(self.log_path, "r+b") as fh:
                fh.truncate(self._log_offset)  # a torn record left by a crashed writer goes
                fh.seek(self._log_offset)
                fh.write(struct.pack("<I", len(record)) + record)
                fh.flush()
                crash_point("index_save")
                os.fsync(fh.fileno())
            self._log_offset += 4 + len(record)
            self._file_gen = self._generation
            self._dirty = []
            if self._reshaped or self._log_offset > max(COMPACT_MIN_BYTES, self._snapshot_bytes // 2):
                self._compact_in_background(purge=False)

    def refresh(self) -> int:
        """Apply the records other processes appended to the log since this index last read it; returns the
        number of ids they changed. A snapshot replaced by another process is reloaded whole."""
        with self._lock:
            return self._read_log()

    def _read_log(self) -> int:
        try:
            fh = open(self.log_path, "rb")
        except FileNotFoundError:
            return 0
        with fh:
            st = os.fstat(fh.fileno())
            seen = (st.st_ino, st.st_size)
            if seen == self._log_seen and self._log_offset:
                return 0  # nothing appended since the last read: no decryption on a search's path
            self._log_seen = seen
            epoch = self._log_epoch(fh)
            if epoch != self._epoch:
                if self._epoch is not None and self._snapshot_stat() != self._loaded_stat:
                    return self._reload()  # another process rewrote the snapshot (a compaction)
                self._log_offset = 0  # a log left from before our snapshot (a crash between the two writes)
                return 0
            if self._log_offset == 0:
                self._log_offset = fh.tell()
            size = os.fstat(fh.fileno()).st_size
            if size <= self._log_offset:
                return 0
            fh.seek(self._log_offset)
            tail = fh.read(size - self._log_offset)
        changed, position = 0, 0
        while position + 4 <= len(tail):
            (length,) = struct.unpack("<I", tail[position:position + 4])
            if position + 4 + length > len(tail):
                break  # being written, or torn by a crash
            try:
                plain = self._unseal(tail[position + 4:position + 4 + length])
            except IndexCorruptError:
                break
            changed += self._apply(plain)
            position += 4 + length
        self._log_offset += position
        return changed

    def _log_epoch(self, fh: Any) -> str | None:
        """The epoch the log's header names (the file positioned after it), or None if it is unreadable."""
        head = fh.read(4)
        if len(head) < 4:
            return None
        (length,) = struct.unpack("<I", head)
        try:
            plain = self._unseal(fh.read(length))
        except IndexCorruptError:
            return None
        if not plain.startswith(LOG_MAGIC):
            return None
        return plain[len(LOG_MAGIC):].decode()

    def _snapshot_stat(self) -> tuple[int, int, int] | None:
        return _stats(self.path)[0]

    def _reload(self) -> int:
        """Another process rewrote the snapshot: read it and its log again, in place of this index's contents.
        Changes made here and not persisted are left for the caller to catch up (the store has them)."""
        fresh = FaissIndex(self.path, self.dim, sealing=self._sealing, tuning=self.tuning)
        try:
            fresh._load_snapshot()
        except IndexCorruptError:
            return 0
        fresh._read_log()
        for name in ("_vec", "_part", "_alive", "_count", "_engine", "_stale", "_trained_for", "_generation",
                     "_epoch", "_log_offset", "_file_gen", "_snapshot_bytes", "_loaded_stat", "_dirty"):
            setattr(self, name, getattr(fresh, name))
        self._filters = {}
        return self._count

    def _apply(self, plain: bytes) -> int:
        if not plain.startswith(RECORD_MAGIC):
            raise IndexCorruptError("index log holds a record of another kind")
        (header_len,) = struct.unpack("<I", plain[8:12])
        header = json.loads(plain[12:12 + header_len])
        if header["epoch"] != self._epoch:
            return 0
        start, added, removed = 12 + header_len, int(header["added"]), int(header["removed"])
        ids = np.frombuffer(plain, dtype=np.int64, count=added, offset=start)
        parts = np.frombuffer(plain, dtype=np.int64, count=added, offset=start + added * 8)
        vectors = np.frombuffer(plain, dtype=np.float32, count=added * self.dim,
                                offset=start + added * 16).reshape(added, self.dim)
        gone = np.frombuffer(plain, dtype=np.int64, count=removed, offset=start + added * (16 + self.dim * 4))
        touched = np.concatenate([ids, gone])
        if header["from"] == self._generation:
            # This index is where the record starts from: the record brings it to the record's generation.
            self._remove_locked(gone)
            if added:
                self._add_locked(ids, np.ascontiguousarray(vectors), parts.copy())
            self._reshape()
            self._generation = int(header["to"])
            if self._dirty:  # changes of our own not persisted yet: these ids are now as the record has them
                self._dirty.append(touched.copy())
        else:
            # Not this index's history: the store catches it up; the ids stay marked so that the next record
            # written from here sets them as this index holds them.
            self._dirty.append(touched.copy())
        self._file_gen = int(header["to"])
        return len(touched)

    def _seal(self, raw: bytes) -> bytes:
        return self._sealer()(raw)

    def _sealer(self) -> Callable[[bytes], bytes]:
        """Seals what one file write holds, under the key of the moment (looked up once: a snapshot has many
        frames)."""
        if self._sealing is not None:
            return self._sealing.sealer()
        return lambda raw: raw + hashlib.sha256(raw).digest()

    def _unseal(self, data: bytes) -> bytes:
        return self._unsealer()(data)

    def _unsealer_into(self) -> tuple[OpenInto, int]:
        """As `_unsealer`, writing each record's plaintext into a buffer; with how much shorter than the record."""
        if self._sealing is None:
            return _checked_into, CHECKSUM_BYTES
        opener = self._sealing.opener_into()

        def unseal_into(data: Buffer, out: memoryview) -> None:
            try:
                opener(data, out)
            except FacetrailError as exc:
                raise IndexCorruptError(f"index file cannot be decrypted: {exc}") from exc
        return unseal_into, self._sealing.overhead

    def _unsealer(self) -> Callable[[bytes], bytes]:
        """Opens what one file read holds, each key looked up once for it (and never kept beyond it: a key an
        erasure destroys opens nothing afterwards)."""
        if self._sealing is None:
            return _checked
        opener = self._sealing.opener()

        def unseal(data: bytes) -> bytes:
            try:
                return opener(data)
            except FacetrailError as exc:
                raise IndexCorruptError(f"index file cannot be decrypted: {exc}") from exc
        return unseal

    # -- compaction and purge ----------------------------------------------------------------
    def purge(self) -> None:
        """After removals made for an erasure (the caller holds the writers' lock): seal under a new key from
        now on, append the removals to the log under it (from now on no process can search the removed ids),
        then rewrite the snapshot and the log under the new key and destroy the keys of the earlier files in
        the background. `settle` waits for that; a process that dies first leaves the old keys retired, and
        the next `settle` (an erasure's key-destruction step) or open finishes the purge."""
        with self._lock:
            if self._sealing is not None:
                self._sealing.renew()
            self.persist()
            self._compact_in_background(purge=True)

    def settle(self) -> None:
        """Wait for a compaction in the background; finish a purge a dead process left (old keys retired)."""
        thread = self._compactor
        if thread is not None:
            thread.join()
        self._raise_compaction_error()
        if self._sealing is not None and self._sealing.retired():
            with file_lock(self.lock_path):
                self.compact()
                self._sealing.destroy_retired()

    def _compact_in_background(self, *, purge: bool) -> None:
        earlier = self._compactor
        if earlier is not None and earlier.is_alive() and not purge:
            return  # the running one will do

        def run() -> None:
            if earlier is not None:
                earlier.join()  # a purge runs after the compaction already under way (no lock held meanwhile)
            try:
                with file_lock(self.lock_path):
                    self.compact()
                    if purge and self._sealing is not None:
                        self._sealing.destroy_retired()
            except BaseException as exc:  # reported by the next persist or settle
                self._compact_error = exc

        self._compactor = threading.Thread(target=run, name="index-compaction")
        self._compactor.start()

    def _raise_compaction_error(self) -> None:
        error, self._compact_error = self._compact_error, None
        if error is not None:
            raise FacetrailError(f"index compaction failed: {error}") from error


BLOCK_BITS = 16
BLOCK = 1 << BLOCK_BITS


MADV_POPULATE_WRITE = 23  # Linux 5.14 and later: map a range's pages now, writable


@functools.cache
def _madvise() -> Callable[[int, int, int], int] | None:
    """The C library's madvise, called through ctypes (which lets go of the interpreter during the call); None
    where there is none to be had."""
    try:
        import ctypes

        function = ctypes.CDLL(None, use_errno=True).madvise
    except (OSError, AttributeError):
        return None
    function.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    function.restype = ctypes.c_int
    return cast(Callable[[int, int, int], int], function)


def map_pages_now(mapped: mmap.mmap) -> bool:
    """Have the kernel map every page of `mapped` at once, while other threads of the process go on; False where
    it cannot (a kernel before 5.14, no C library): the pages are then mapped as they are first written.

    Python's own ways (mmap's MAP_POPULATE flag, `mmap.madvise`) hold the interpreter during the system call, so
    every other thread waited while a block was mapped: a thread spinning in Python beside 16 blocks of 64 MiB
    mapped that way got through a fifth of its loop, against 40% with this call (and all of it with nothing else
    running), ad hoc on this 2-core machine."""
    madvise = _madvise()
    if madvise is None:
        return False
    import ctypes

    start = ctypes.c_char.from_buffer(mapped)  # the mapping's address (an export: released when `start` goes)
    try:
        return madvise(ctypes.addressof(start), len(mapped), MADV_POPULATE_WRITE) == 0
    finally:
        del start


class _BlocksAhead:
    """The full blocks a load of an inverted file's templates will fill, made in a thread of its own, at most
    AHEAD blocks ahead of the filling, with their pages mapped at once (`map_pages_now`, which leaves the
    interpreter to the other threads meanwhile).

    Filling fresh memory made the kernel map it a page at a time as it was first written: 1 GiB at 1M faces,
    262,144 page faults, the larger part of a load (cProfile: 1.09 of 2.0 s in the copy into the blocks, against
    0.29 s decrypting and 0.23 s reading). Mapping a block at once is cheaper than faulting it in (0.55 against
    0.74-0.82 s for 16 blocks, filled the same way), and here it runs on the other core, beside the decrypting
    and copying (and beside `serve`'s imports, which load the index in a thread of their own)."""

    AHEAD = 2

    def __init__(self, rows: Rows, count: int) -> None:
        self._rows = rows
        self._made: queue.Queue[NDArray[np.float32] | BaseException] = queue.Queue()
        self._room = threading.Semaphore(self.AHEAD)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._make, args=(rows, count), name="index-blocks", daemon=True)
        self._started = False
        if count:
            try:
                self._thread.start()
                self._started = True
            except RuntimeError:  # no thread to be had (a process limit): the filling thread maps its blocks
                log.warning("index blocks are mapped as they are filled: no thread could be started to map them")

    def _make(self, rows: Rows, count: int) -> None:
        try:
            for _ in range(count):
                self._room.acquire()
                if self._stop.is_set():
                    return
                self._made.put(rows.new_block(populated=True))
        except BaseException as exc:  # handed to the filling thread, which raises it
            self._made.put(exc)

    def take(self) -> NDArray[np.float32]:
        if not self._started:
            return self._rows.new_block()
        block = self._made.get()
        if isinstance(block, BaseException):
            raise block
        self._room.release()
        return block

    def __enter__(self) -> _BlocksAhead:
        return self

    def __exit__(self, *_exc: object) -> None:
        """Stop making blocks (a load that failed takes no more) and wait for the thread."""
        self._stop.set()
        self._room.release()
        if self._thread.is_alive():
            self._thread.join()


class Rows:
    """Vectors by id, in blocks of BLOCK ids: growing appends blocks (no copy of the others); a block whose rows a
    snapshot is being written from is copied when one of those rows is next written (`set`), that block alone.
    A change costs O(change) plus at most a block."""

    def __init__(self, dim: int, *, base_pages: bool = False) -> None:
        self.dim = dim
        self.base_pages = base_pages
        self.blocks: list[NDArray[np.float32]] = []
        self.top = 0  # above the highest id ever set: a block's rows from there on are zeros never written
        self.frozen_rows: dict[int, int] = {}  # block -> its first rows, seen by a snapshot being written

    def new_block(self, *, populated: bool = False) -> NDArray[np.float32]:
        """A block of BLOCK zero rows, which the system maps as they are first written (in base pages and
        `populated`: mapped at once, `_BlocksAhead`).

        In huge pages by default, as numpy asks the kernel for every array of 4 MiB or more: exact search scans the
        blocks in order, about 12% faster in them (p50 11.0 against 12.4 ms at 250k faces, ad hoc, six passes each).
        With `base_pages` (the inverted file's blocks), in the system's base pages: an anonymous mapping, for which
        nothing asks huge pages. A search there reads a shortlist's rows, as fast either way (1M faces: p50 6.34 ms
        in base pages against 6.15 in huge ones, p99 8.9 both, ad hoc at a slow hour), and the first writes to the
        blocks, loading the index, must not wait for the kernel to compact memory into huge pages (transparent huge
        pages on request, the usual default): loading a 1M-face index took 0.85-1.38 s in base pages against
        1.68-3.19 s in huge pages (12 interleaved runs, ad hoc), and 0.5-3.4 s in other runs. It decides `serve`'s
        start-up. The mapping is private, not shared (a shared one is kept by the kernel as shared memory, slower to
        map: 8 blocks of 64 MiB mapped at once in 0.13-0.19 s of processor time against 0.23-0.33, ad hoc). Where
        transparent huge pages are on for every mapping, the kernel may give it huge pages it has free, but under the
        usual defrag setting compacts memory for them only for mappings that ask (as numpy's arrays do)."""
        if self.base_pages:
            mapped = mmap.mmap(-1, BLOCK * self.dim * 4, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
            if populated:
                map_pages_now(mapped)
            return np.frombuffer(mapped, dtype=np.float32).reshape(BLOCK, self.dim)
        return np.zeros((BLOCK, self.dim), dtype=np.float32)

    def append(self, block: NDArray[np.float32], count: int) -> None:
        """Append a block of BLOCK rows whose first `count` were written (read from a file)."""
        self.blocks.append(block)
        self.top = (len(self.blocks) - 1) * BLOCK + count

    @property
    def capacity(self) -> int:
        return len(self.blocks) * BLOCK

    def nbytes(self) -> int:
        return sum(block.nbytes for block in self.blocks)

    def grow(self, top: int) -> None:
        while self.capacity < top:
            self.blocks.append(self.new_block())

    def get(self, ids: NDArray[np.int64]) -> NDArray[np.float32]:
        out = np.empty((len(ids), self.dim), dtype=np.float32)
        if len(ids) == 0:
            return out
        which = ids >> BLOCK_BITS
        first, last = int(which.min()), int(which.max())
        if first == last:
            out[:] = self.blocks[first][ids & (BLOCK - 1)]
            return out
        if np.all(which[:-1] <= which[1:]):  # sorted ids (a shortlist, a rebuild): one slice per block
            bounds = np.searchsorted(which, np.arange(first, last + 2))
            for b, (lo, hi) in enumerate(zip(bounds[:-1], bounds[1:], strict=True), start=first):
                if hi > lo:
                    out[lo:hi] = self.blocks[b][ids[lo:hi] & (BLOCK - 1)]
            return out
        for b in np.unique(which):
            chosen = which == b
            out[chosen] = self.blocks[int(b)][ids[chosen] & (BLOCK - 1)]
        return out

    def set(self, ids: NDArray[np.int64], vectors: NDArray[np.float32]) -> None:
        if len(ids) == 0:
            return
        which = ids >> BLOCK_BITS
        for b in np.unique(which):
            number = int(b)
            chosen = which == b
            rows = ids[chosen] & (BLOCK - 1)
            block = self.blocks[number]
            if self.frozen_rows.get(number, 0) > int(rows.min()):
                # A row a snapshot may be reading: this block is written to a copy from now on. Only the rows
                # written so far are copied: the rest stay zero pages the system has not mapped. (Appending past
                # the frozen rows, what an ingestion does, writes in place.)
                used = min(BLOCK, max(0, self.top - number * BLOCK))
                fresh = self.new_block()
                fresh[:used] = block[:used]
                block = self.blocks[number] = fresh
                del self.frozen_rows[number]
            block[rows] = vectors[chosen]
        self.top = max(self.top, int(ids.max()) + 1)

    def frozen(self, size: int) -> list[NDArray[np.float32]]:
        """The rows below `size`, a block at a time, as they are now and will stay (a snapshot written outside
        the lock): a later `set` of one of these rows writes to a copy of its block."""
        out = []
        for i, block in enumerate(self.blocks):
            if i * BLOCK >= size:
                break
            count = min(BLOCK, size - i * BLOCK)
            view = block[:count]
            view.flags.writeable = False
            self.frozen_rows[i] = max(self.frozen_rows.get(i, 0), count)
            out.append(view)
        return out


@dataclass
class _Snapshot:
    """What one snapshot file holds (`FaissIndex._snapshot`), as the payloads of its frames in order."""

    header: dict[str, Any]
    part: NDArray[np.int64]
    blocks: list[NDArray[np.float32]]
    engine: NDArray[np.uint8]

    def frames(self) -> Iterator[bytes | memoryview]:
        yield json.dumps(self.header).encode()
        yield from _pieces(_bytes_of(self.part))
        for block in self.blocks:
            yield from _pieces(_bytes_of(block))
        yield from _pieces(_bytes_of(self.engine))


CHECKSUM_BYTES = 32


def _checked(data: bytes) -> bytes:
    """An unsealed index file's record: its contents, their SHA-256 checked."""
    contents = memoryview(data)[:-CHECKSUM_BYTES]
    if len(data) < CHECKSUM_BYTES or hashlib.sha256(contents).digest() != data[-CHECKSUM_BYTES:]:
        raise IndexCorruptError("index file checksum mismatch")
    return data[:-CHECKSUM_BYTES]


def _checked_into(data: Buffer, out: memoryview) -> None:
    """`_checked`, the contents written into `out`."""
    out[:] = _checked(bytes(data))


def _bytes_of(array: NDArray[Any]) -> memoryview:
    """The bytes of a C-contiguous array, without a copy."""
    return np.ascontiguousarray(array).reshape(-1).view(np.uint8).data


def _pieces(data: memoryview) -> Iterator[memoryview]:
    for start in range(0, len(data), FRAME_BYTES):
        yield data[start:start + FRAME_BYTES]


class _FrameReader:
    """Reads a snapshot's frames in order, checking that each is the next one of this snapshot; any damage,
    truncation, a frame missing, repeated, reordered or spliced from another snapshot raises IndexCorruptError.

    The file is mapped read-only, and each frame is decrypted from the mapping straight to where its contents are
    to stay (`fill`): the file's bytes are not copied out of the page cache first (reading them into a buffer cost a
    1M-face load a quarter of a second of processor time, plus the moves of a frame cut by the buffer's end), and
    no new memory is taken per frame. The pages read are let go of a DROP_BYTES at a time, so that the mapping never
    holds much of the file. It is one mapping for the whole file: mapping and unmapping windows of it wait for the
    thread that maps the template blocks ahead (both take the process's memory map lock), which cost a 1M-face load
    about 0.4 s. A load runs beside other threads (`serve` imports its web application meanwhile), taking turns with
    them at the interpreter: a decryption lets go of it, and the loading thread may then wait a switch interval
    (5 ms) to get it back, so the frames are large (FRAME_BYTES).

    A snapshot is only ever replaced (written under another name and renamed), which leaves the mapped file as it
    was; one cut short in place by someone else while it is being read would end the process (SIGBUS), as with
    any mapped file."""

    PREFIX = len(MAGIC) + 16 + 8  # magic, epoch, frame number

    HEADER_BYTES = 1 << 20  # frame 0, the JSON header, is never larger
    OVERHEAD = 65_536  # a frame's prefix and its sealing, at most
    DROP_BYTES = 4 * FRAME_BYTES  # read pages are unmapped once this many have gathered

    def __init__(self, fh: Any, open_into: OpenInto, sealing_bytes: int) -> None:
        self.open_into = open_into
        self.sealing_bytes = sealing_bytes  # how much longer a sealed frame is than its plaintext
        self.largest = self.HEADER_BYTES + self.OVERHEAD
        self.frame_bytes = 0
        self.number = 0
        self.epoch = b""
        self._size = os.fstat(fh.fileno()).st_size
        self._mapped: mmap.mmap | None = None
        self._file = memoryview(b"")
        if self._size:
            try:
                self._mapped = mmap.mmap(fh.fileno(), self._size, access=mmap.ACCESS_READ)
            except (OSError, ValueError) as exc:
                raise IndexCorruptError(f"cannot read index file: {exc}") from exc
            self._file = memoryview(self._mapped)
        self._position = 0  # the offset of the next byte to take
        self._dropped = 0  # the pages before this offset are unmapped
        self._plain = bytearray()
        if bytes(self._take(len(FILE_MAGIC), "no valid header")) != FILE_MAGIC:
            raise IndexCorruptError("index file has no valid header")

    def _take(self, count: int, short: str = "is truncated") -> memoryview:
        """The file's next `count` bytes, as a read-only view of the mapped file; IndexCorruptError ('index file
        <short>') where the file ends first. The pages before them are let go of, DROP_BYTES at a time (read again,
        they would be mapped again from the file)."""
        start = self._position
        if start + count > self._size:
            raise IndexCorruptError(f"index file {short}")
        if self._mapped is not None and start - self._dropped >= self.DROP_BYTES:
            upto = start - start % mmap.PAGESIZE
            self._mapped.madvise(mmap.MADV_DONTNEED, self._dropped, upto - self._dropped)
            self._dropped = upto
        self._position = start + count
        return self._file[start:start + count]

    def _read(self) -> memoryview:
        """The next sealed frame, a view of the mapped file."""
        (length,) = struct.unpack("<Q", self._take(8))
        if length > self.largest:  # no frame is this large: a damaged length
            raise IndexCorruptError("index file has a damaged frame length")
        if length < self.sealing_bytes + self.PREFIX:
            raise IndexCorruptError("index file has no valid header")
        return self._take(length)

    def _open(self, sealed: memoryview, out: memoryview) -> None:
        """Decrypt `sealed` into `out` (its plaintext's size), and check that it is this snapshot's next frame."""
        self.open_into(sealed, out)
        prefix = bytes(out[:self.PREFIX])
        if prefix[:len(MAGIC)] != MAGIC:
            raise IndexCorruptError("index file has no valid header")
        epoch = prefix[len(MAGIC):len(MAGIC) + 16]
        (number,) = struct.unpack("<Q", prefix[len(MAGIC) + 16:])
        if number != self.number or (self.number and epoch != self.epoch):
            raise IndexCorruptError("index file has frames out of order or from another snapshot")
        self.epoch = epoch
        self.number += 1

    def _frame(self) -> memoryview:
        """The next frame's plaintext, in the frame buffer (valid until the next frame)."""
        sealed = self._read()
        plain = self._frame_buffer(len(sealed) - self.sealing_bytes - self.PREFIX)
        self._open(sealed, plain)
        return plain

    def header(self) -> dict[str, Any]:
        try:
            header = json.loads(bytes(self._frame()[self.PREFIX:]))
        except ValueError as exc:
            raise IndexCorruptError(f"index file unreadable: {exc}") from exc
        if not isinstance(header, dict) or bytes.fromhex(str(header.get("epoch", ""))) != self.epoch:
            raise IndexCorruptError("index file has a header of another snapshot")
        self.frame_bytes = int(header["frame_bytes"])
        if not 4096 <= self.frame_bytes <= 1 << 30:
            raise IndexCorruptError("index file has a damaged frame size")
        self.largest = self.frame_bytes + self.OVERHEAD
        return header

    def fill(self, out: NDArray[np.uint8]) -> None:
        """Fill `out` (contiguous) from the next frames, which must carry at most the header's frame size each.

        A frame's plaintext is its prefix, then its contents: it is decrypted right into `out`, its prefix over the
        end of the frame before, which is put back once the prefix is checked; the first frame of `out`, with no
        room before it, goes through the frame buffer."""
        into = out.data.cast("B")
        for start in range(0, len(out), self.frame_bytes):
            count = min(self.frame_bytes, len(out) - start)
            sealed = self._read()
            if len(sealed) - self.sealing_bytes - self.PREFIX != count:
                raise IndexCorruptError("index file is inconsistent (a frame of the wrong size)")
            if start == 0:
                plain = self._frame_buffer(count)
                self._open(sealed, plain)
                # numpy copies without holding the interpreter (a memoryview's copy holds it)
                np.copyto(out[:count], np.frombuffer(plain, dtype=np.uint8, offset=self.PREFIX))
                continue
            before = bytes(into[start - self.PREFIX:start])
            self._open(sealed, into[start - self.PREFIX:start + count])
            into[start - self.PREFIX:start] = before

    def _frame_buffer(self, count: int) -> memoryview:
        """Room for a frame's plaintext that carries `count` bytes, in the frame buffer."""
        size = self.PREFIX + count
        if len(self._plain) < size:
            self._plain = bytearray(size)
        return memoryview(self._plain)[:size]

    def end(self) -> None:
        if self._position < self._size:
            raise IndexCorruptError("index file has data after its last frame")
        self._file, self._mapped = memoryview(b""), None  # unmapped once the last view of it is gone


READ_ATTEMPTS = 3


def _stats(*paths: Path) -> list[tuple[int, int, int] | None]:
    """Identity of files as they are now (inode, modification time, size), None for one that is missing."""
    found: list[tuple[int, int, int] | None] = []
    for path in paths:
        try:
            st = os.stat(path)
        except FileNotFoundError:
            found.append(None)
        else:
            found.append((st.st_ino, st.st_mtime_ns, st.st_size))
    return found


def _before_snapshot_rename() -> None:
    crash_point("index_save")  # any write of the index's files
    crash_point("index_compact")  # the snapshot's only


def _hits(labels: NDArray[np.int64], squared: NDArray[np.float32]) -> list[Hit]:
    return [Hit(face_id=int(label), distance=float(np.sqrt(max(0.0, float(dist)))))
            for label, dist in zip(labels, squared, strict=True)]


def _set_bits(bitmap: NDArray[np.uint8], ids: NDArray[np.int64], value: bool) -> None:
    if len(ids) == 0:
        return
    bits = np.left_shift(1, ids & 7).astype(np.uint8)
    if value:
        np.bitwise_or.at(bitmap, ids >> 3, bits)
    else:
        np.bitwise_and.at(bitmap, ids >> 3, ~bits)


def _get_bits(bitmap: NDArray[np.uint8], ids: NDArray[np.int64]) -> NDArray[np.bool_]:
    inside = (ids >> 3) < len(bitmap)
    out = np.zeros(len(ids), dtype=bool)
    out[inside] = (bitmap[ids[inside] >> 3] >> (ids[inside] & 7)) & 1 == 1
    return out


def _grown(bitmap: NDArray[np.uint8], size: int) -> NDArray[np.uint8]:
    out = np.zeros(size, dtype=np.uint8)
    out[:len(bitmap)] = bitmap
    return out


def nlist_for(n: int, per_sqrt: float = 1.0) -> int:
    """Cells of the inverted file for n faces: `per_sqrt` sqrt(n) (IndexTuning: 1.3, so 712 when trained at
    300,000 faces, 1,011 at 605,000), never more than the faces that train them."""
    return max(1, min(n, int(per_sqrt * math.sqrt(n))))


def pq_for(dim: int, pq: int = 0, *, compact: bool = False) -> int:
    """Sub-quantisers of the PQ codes: `pq`, or one for every two dimensions (64 for dlib's 128-d templates, 128
    for the Intel model's 256-d: 4 bits each, so a face's code is dim / 4 bytes); compact codes one for every four
    (dim / 8 bytes). Without a rotation, 4 dimensions a sub-quantiser lost the 256-d templates recall@10 (0.92 at 1M
    against 0.999 at 2; BENCHMARKS.md): their variance is spread unevenly over the dimensions."""
    return pq if pq > 0 else max(1, dim // (4 if compact else 2))


def compact_codes(n: int, tuning: IndexTuning) -> bool:
    """Whether an inverted file trained for n faces codes them compactly: an OPQ rotation (learnt on the gallery,
    orthogonal, so distances are unchanged) that spreads the variance evenly over the sub-quantisers, then half as
    many of them (`pq_for`). That is when a search of it would be capped (half its cells hold more than
    `max_scanned` codes): there the scan is most of a search's time. The same cells cost about 30% less at about
    1.5 points of recall@10 less; `cells_visited` counts a compact code as half a code, so that a search visits
    more cells for the same bytes and gains recall (BENCHMARKS.md, "Index at scale")."""
    return tuning.max_scanned > 0 and n * tuning.probe_share > tuning.max_scanned


def inverted_file(engine: Any) -> Any:
    """The inverted file of an approximate engine, behind its rotation if it has one."""
    import faiss

    return faiss.downcast_index(engine.index) if isinstance(engine, faiss.IndexPreTransform) else engine


def _trained_ivf(rows: Rows, ids: NDArray[np.int64], dim: int, tuning: IndexTuning) -> Any:
    """An empty IVF index with a 4-bit PQ fast scan, its cells k-means centroids of (a sample of) the templates of
    these ids (compact codes behind an OPQ rotation for large ones, `compact_codes`). Very small galleries (tests)
    fall back to a flat-coded IVF: PQ needs enough faces to train."""
    import faiss

    n = len(ids)
    nlist = nlist_for(n, tuning.cells_per_sqrt)
    quantizer = faiss.IndexFlatL2(dim)
    compact = compact_codes(n, tuning)
    m = pq_for(dim, tuning.pq, compact=compact)
    index: Any
    if n >= 4096 and dim % m == 0:
        ivf: Any = faiss.IndexIVFPQFastScan(quantizer, dim, nlist, m, 4)
    else:
        ivf = faiss.IndexIVFFlat(quantizer, dim, nlist, faiss.METRIC_L2)
        compact = False
    ivf.cp.seed = tuning.seed
    ivf.cp.niter = 10
    ivf.cp.max_points_per_centroid = TRAIN_POINTS_PER_CELL
    ivf.cp.min_points_per_centroid = 5  # small galleries have few faces per cell: no warning for them
    index = ivf
    if compact:
        rotation = faiss.OPQMatrix(dim, m)
        codes = faiss.ProductQuantizer(dim, m, 4)  # learnt for the codes' own 4 bits (OPQ's default is 8)
        rotation.pq = codes
        rotation.niter = 25
        index = faiss.IndexPreTransform(rotation, ivf)
    sample = min(n, max(TRAIN_POINTS_PER_CELL * nlist, 65_536))
    chosen = np.sort(np.random.default_rng(tuning.seed).choice(n, size=sample, replace=False))
    index.train(rows.get(ids[chosen]))  # the rotation first (on at most 65,536 of them), then the cells and codes
    if compact:
        rotation.pq = None  # only for training; the rotation alone goes into snapshots
    ivf.quantizer_trains_alone = 0
    return index


def _fill(engine: Any, rows: Rows, ids: NDArray[np.int64]) -> None:
    """Add the templates of these ids (sorted) to the engine a block at a time: no copy of them all at once."""
    for start in range(0, len(ids), BLOCK):
        chunk = ids[start:start + BLOCK]
        engine.add_with_ids(rows.get(chunk), chunk)


@contextmanager
def _threads(count: int) -> Iterator[int]:
    """FAISS's OpenMP threads for one call (0: every core), set back afterwards; yields how many. One thread is the
    default for a search: exact search over blocks gains nothing from more, and an approximate search split over
    the cores (`_scan_for_one_query`) is faster only while those cores are idle: on a machine that also ingests,
    its p99 was several times one thread's (BENCHMARKS.md)."""
    import faiss

    before = faiss.omp_get_max_threads()
    threads = count if count > 0 else (os.cpu_count() or 1)
    faiss.omp_set_num_threads(threads)
    try:
        yield threads
    finally:
        faiss.omp_set_num_threads(before)


FAST_SCAN_ONE_THREAD = 10
"""FAISS's fast-scan search that scans a query's cells one after the other into a heap of the shortlist's size. Its
default for a shortlist (over 20) batches queries first (implementation 13): for the one query of a search that
cost a third more time (1M faces: p50 4.7 against 3.2 ms, the same recall; BENCHMARKS.md)."""
FAST_SCAN_SPLIT_CELLS = 15
"""FAISS's fast-scan search that splits the cells of one query among its threads (keeping candidates in a
reservoir, suited to a shortlist of hundreds); its default, 0, splits the queries of a batch, so one query on several
threads ran no faster than on one."""


@contextmanager
def _scan_for_one_query(engine: Any, threads: int) -> Iterator[None]:
    """For one search: the engine scans the query's cells in the way fastest for one query (an inverted file with
    fast-scan codes): on one thread into one heap, on several spread over the threads. It is set back after it
    (the setting would otherwise go into the next snapshot)."""
    import faiss

    scan = inverted_file(engine)
    if not isinstance(scan, faiss.IndexIVFFastScan):
        yield
        return
    scan.implem = FAST_SCAN_SPLIT_CELLS if threads > 1 else FAST_SCAN_ONE_THREAD
    try:
        yield
    finally:
        scan.implem = 0


