"""The index at scale: galleries of 10k, 100k and 1M faces, facetrail's index beside FAISS flat in the same run.

    .venv/bin/python -m bench.scale [--sizes 10000,100000,1000000] [--probes 200] [--lfw-people 200]

The gallery: real templates of LFW photos (one photo of each of `--lfw-people` people with two or more, the other
photo kept as a probe: real planted mates) among synthetic identities clustered like those real templates
(bench/synthetic.py: centred on their mean, along their principal axes, with their variance spectrum and their
median distances between two faces of one person and of two people), plus synthetic planted mates.

For each size, on the same vectors: FAISS exact search (IndexFlatL2, one thread per query; a batch on every
core) and facetrail's index as the product configures it (`FaissIndex` with the default `IndexTuning`, sealed
files through `FaissStore`), built in batches of 5,000 as the gallery adds them. Measured: build time, bytes per
face, save and load time, p50/p99 of one query (with and without a source filter), throughput, recall@10
against exact search, the planted mates' ranks; then the time from another process's commit (a subprocess adds
and removes faces and persists) to this process's next search, and the erasure of 1,000 faces (removal and
purge until no process can search them, then the background rewrite under a new key).

Sizes above `--in-memory-max` (2M; 10M faces take 10 GB of templates in the index alone) are generated a chunk at a
time: exact search runs over each chunk as it is generated and the top 10 are merged, so the gallery is never
held whole beside the index; no other process opens an index that large beside this one. `--sweep` searches the
loaded index again with other shares of its cells visited, for recall@10 against latency; `--split-threads` (every
core by default) searches it with one query's cells split over that many threads.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from functools import partial
from itertools import chain
from pathlib import Path

import faiss
import numpy as np
from numpy.typing import NDArray
from rich.console import Console

from bench.load import ROOT, machine, write_section
from bench.synthetic import MATE_DISTANCE, STRANGER_DISTANCE, Synthetic, synthetic, synthetic_stream
from facetrail.crypto.keyring import Keyring
from facetrail.crypto.master import LocalMasterKey, new_key_bytes
from facetrail.crypto.vault import Vault
from facetrail.index.faiss_index import FaissIndex, IndexTuning, inverted_file
from facetrail.index.faiss_store import FaissStore

START, END = "<!-- scale:start -->", "<!-- scale:end -->"
BATCH = 5000  # as the gallery adds from the store (index/gallery.py)
PARTITIONS = 5  # sources the faces are spread over; a filtered search keeps one of them
K = 10
ERASED = 1000
REPEATS = 3  # passes over the probes; p50 and p99 are the median of the passes' (the machine may be shared)
console = Console(stderr=True)


@dataclass
class Real:
    """Real templates: `gallery[i]` and `probes[i]` are two photos of one person."""

    gallery: NDArray[np.float32]
    probes: NDArray[np.float32]
    mate_distance: float
    stranger_distance: float
    spectrum: float
    model_id: str


@dataclass
class Row:
    size: int
    engine: str
    mode: str
    build_s: float
    bytes_per_face: float
    save_s: float
    load_s: float
    p50_ms: float
    p99_ms: float
    p99_passes: list[float]
    cpu_p50_ms: float
    cpu_p99_ms: float
    filtered_p50_ms: float
    filtered_p99_ms: float
    qps_one_thread: float
    qps_batch: float
    recall_at_10: float
    mate_in_10: float
    real_mate_in_10: float
    mate_rank_median: float
    commit_to_search_ms: float = float("nan")
    erase_unsearchable_ms: float = float("nan")
    erase_settled_s: float = float("nan")


@dataclass
class Probes:
    """The probes searched at one size: `vectors[i]`'s planted mate is gallery face `mates[i]`; the last `n_real`
    are real LFW photos."""

    vectors: NDArray[np.float32]
    mates: NDArray[np.int64]
    n_real: int


@dataclass
class SweepRow:
    """The loaded index searched with another share of its cells visited (`--sweep`), or split over threads."""

    size: int
    share: float
    cells: int
    recall_at_10: float
    mate_in_10: float
    p50_ms: float
    p99_ms: float
    cpu_p99_ms: float
    threads: int = 1
    busy: bool = False


BUSY = "import time\nend = time.monotonic() + 600\nwhile time.monotonic() < end:\n    pass\n"
"""A process that keeps one core busy (as an ingestion does) while a variant is searched again."""


def recall_at_10(found: list[list[int]], exact: list[list[int]]) -> float:
    return float(np.mean([len(set(g) & set(e)) / len(e) for g, e in zip(found, exact, strict=True)]))


def real_templates(args: argparse.Namespace) -> Real | None:
    """Templates of two photos each of the first `--lfw-people` LFW people who have two (cached in
    .bench-cache), with the statistics the synthetic identities copy."""
    if args.lfw_people <= 0 or not (args.lfw / "images").is_dir():
        return None
    from facetrail.evaluation import lfw
    from facetrail.evaluation.pipelines import extract_templates
    from facetrail.vision.backend import VisionConfig, load_backend

    people: dict[str, list[str]] = {}
    for key in lfw.all_images(args.lfw):
        people.setdefault(lfw.identity(key), []).append(key)
    pairs = [keys[:2] for _, keys in sorted(people.items()) if len(keys) >= 2][:args.lfw_people]
    keys = [k for pair in pairs for k in pair]
    config = VisionConfig()
    model_id = load_backend(config).model_id
    console.print(f"LFW: templates of {len(keys)} photos ({model_id}; cached after the first run)")
    templates = extract_templates("facetrail", [lfw.image_path(args.lfw, k) for k in keys], keys, config=config,
                                  model_id=model_id, workers=args.workers, cache=ROOT / ".bench-cache")
    vectors = templates.vectors.reshape(len(pairs), 2, -1)
    ok = ~np.isnan(vectors).any(axis=(1, 2))
    gallery, probes = vectors[ok, 0].astype(np.float32), vectors[ok, 1].astype(np.float32)
    mates = np.linalg.norm(gallery - probes, axis=1)
    strangers = np.linalg.norm(gallery - np.roll(probes, 1, axis=0), axis=1)
    centred = np.concatenate([gallery, probes]) - np.concatenate([gallery, probes]).mean(axis=0)
    variances = np.linalg.svd(centred, compute_uv=False) ** 2
    top = variances[: min(len(variances), gallery.shape[1]) // 2]
    slope = -np.polyfit(np.log(np.arange(1, len(top) + 1)), np.log(top), 1)[0]
    return Real(gallery=gallery, probes=probes, mate_distance=float(np.median(mates)),
                stranger_distance=float(np.median(strangers)), spectrum=float(slope), model_id=model_id)


def gallery_of(size: int, args: argparse.Namespace, real: Real | None) -> tuple[Synthetic, int]:
    """`size` faces: synthetic ones (ids 1..), then the real ones last; probes: synthetic, then real."""
    n_real = 0 if real is None else min(len(real.gallery), size // 10)
    if real is None:
        return synthetic(size, dim=args.dim, probes=args.probes, seed=size, spectrum=args.spectrum), 0
    like = np.concatenate([real.gallery, real.probes])
    data = synthetic(size - n_real, dim=real.gallery.shape[1], probes=args.probes, seed=size,
                     spectrum=real.spectrum, mate_distance=real.mate_distance,
                     stranger_distance=real.stranger_distance, like=like)
    vectors = np.concatenate([data.vectors, real.gallery[:n_real]])
    mates = np.concatenate([data.mates, np.arange(size - n_real + 1, size + 1, dtype=np.int64)])
    probes = np.concatenate([data.probes, real.probes[:n_real]])
    identity = np.concatenate([data.identity, -1 - np.arange(n_real)])
    return Synthetic(vectors=vectors, identity=identity, probes=probes, mates=mates), n_real


def peak_rss_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 ** 2


def timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


@dataclass
class Latency:
    """Milliseconds of each query of each pass over the probes: wall-clock time, and the CPU time of the thread
    (what the query costs, without the time it waited for a core on a shared machine)."""

    wall: NDArray[np.float64]
    cpu: NDArray[np.float64]

    def p50(self) -> float:
        return float(np.median([np.percentile(p, 50) for p in self.wall]))

    def p99(self) -> float:
        """The median over the passes of each pass's p99."""
        return float(np.median(self.passes()))

    def passes(self) -> list[float]:
        return [float(np.percentile(p, 99)) for p in self.wall]

    def cpu_p50(self) -> float:
        return float(np.median([np.percentile(p, 50) for p in self.cpu]))

    def cpu_p99(self) -> float:
        return float(np.median([np.percentile(p, 99) for p in self.cpu]))

    def qps(self) -> float:
        return float(self.wall.shape[1] / (np.median(self.wall.sum(axis=1)) / 1000))


def latencies(search: Callable[[NDArray[np.float32]], object], probes: NDArray[np.float32],
              repeats: int = 3) -> Latency:
    search(probes[0])  # warm
    wall, cpu = np.empty((repeats, len(probes))), np.empty((repeats, len(probes)))
    for rep in range(repeats):
        for i, probe in enumerate(probes):
            start, start_cpu = time.perf_counter(), time.thread_time()
            search(probe)
            wall[rep, i] = (time.perf_counter() - start) * 1000
            cpu[rep, i] = (time.thread_time() - start_cpu) * 1000
    return Latency(wall=wall, cpu=cpu)


def ranks(found: list[list[int]], mates: NDArray[np.int64]) -> NDArray[np.int64]:
    return np.array([got.index(int(m)) + 1 if int(m) in got else K + 1 for got, m in zip(found, mates, strict=True)])


def new_store(work: Path, dim: int, tuning: IndexTuning) -> tuple[FaissStore, bytes]:
    master = new_key_bytes()
    vault = Vault(Keyring(work / "keys" / "keyring.db", LocalMasterKey(master, "bench")))
    return FaissStore(work / "index" / "bench.ftindex", dim, vault, tuning), master


COMMIT = """
import json, sys, time
import numpy as np
from pathlib import Path
from facetrail.crypto.keyring import Keyring
from facetrail.crypto.master import LocalMasterKey
from facetrail.crypto.vault import Vault
from facetrail.index.faiss_index import IndexTuning
from facetrail.index.faiss_store import FaissStore
work, dim, tuning = Path(sys.argv[1]), int(sys.argv[2]), IndexTuning(**json.loads(sys.argv[4]))
vault = Vault(Keyring(work / "keys" / "keyring.db", LocalMasterKey(bytes.fromhex(sys.argv[3]), "bench")))
store = FaissStore(work / "index" / "bench.ftindex", dim, vault, tuning)
index = store.open()
top = int(index.ids().max()) + 1
rng = np.random.default_rng(0)
index.add(np.arange(top, top + 100, dtype=np.int64), rng.normal(size=(100, dim)).astype(np.float32) * 0.05,
          np.ones(100, dtype=np.int64))
index.remove(list(range(1, 11)))
index.set_generation(index.generation + 1)
with store.writing():
    index.persist()
print(json.dumps({"top": top}))
"""


def facetrail_row(size: int, batches: Iterable[tuple[NDArray[np.int64], NDArray[np.float32]]], probes: Probes,
                  exact_top: Callable[[], list[list[int]]], tuning: IndexTuning, work: Path,
                  args: argparse.Namespace) -> tuple[Row, list[SweepRow]]:
    """facetrail's index built from `batches` (only the time in `add` counts as build time), saved, loaded and
    searched; `exact_top` (called after the build) gives exact search's top 10 of each probe."""
    dim = probes.vectors.shape[1]
    store, master = new_store(work, dim, tuning)
    index = store.create()
    console.print("  facetrail: building")
    build_s = 0.0
    for ids, vectors in batches:
        for lo in range(0, len(ids), BATCH):
            start = time.perf_counter()
            index.add(ids[lo:lo + BATCH], vectors[lo:lo + BATCH], ids[lo:lo + BATCH] % PARTITIONS)
            build_s += time.perf_counter() - start
    engine_bytes = len(faiss.serialize_index(index._engine)) if index.approximate else 0
    # Templates (blocks of 65,536 ids), partitions, live bitmap, and the inverted file (exact search has none).
    per_face = (index._vec.nbytes() + index._part.nbytes + index._alive.nbytes + engine_bytes) / size
    index.set_generation(1)
    console.print(f"  facetrail: saving (sealed) and loading; peak memory so far {peak_rss_gib():.1f} GiB")
    with store.writing():
        save_s = timed(index.persist)
    del index
    gc.collect()
    loaded: list[FaissIndex] = []
    load_s = timed(lambda: loaded.append(store.open()))  # type: ignore[arg-type]
    index = loaded[0]
    console.print("  facetrail: searching")
    plain = latencies(partial(index.search, k=K), probes.vectors, REPEATS)
    filtered = latencies(partial(index.search, k=K, partitions={1}), probes.vectors, REPEATS)
    found = [[h.face_id for h in index.search(p, K)] for p in probes.vectors]
    exact = exact_top()
    recall = recall_at_10(found, exact)
    r = ranks(found, probes.mates)
    real_r = r[len(r) - probes.n_real:] if probes.n_real else np.array([np.nan])
    row = Row(size=size, engine="facetrail", mode=describe(index), build_s=build_s, bytes_per_face=per_face,
              save_s=save_s, load_s=load_s, p50_ms=plain.p50(), p99_ms=plain.p99(), p99_passes=plain.passes(),
              cpu_p50_ms=plain.cpu_p50(), cpu_p99_ms=plain.cpu_p99(), filtered_p50_ms=filtered.p50(),
              filtered_p99_ms=filtered.p99(), qps_one_thread=plain.qps(), qps_batch=float("nan"),
              recall_at_10=recall, mate_in_10=float(np.mean(r <= K)),
              real_mate_in_10=float(np.mean(real_r <= K)), mate_rank_median=float(np.median(r)))
    sweep = []
    # Other shares of the cells on one thread (no cap on the codes scanned), then the product's own share split
    # over `--split-threads` threads (FACETRAIL_INDEX_SEARCH_THREADS).
    # Both thread counts are then searched again while another process keeps one core busy.
    variants = [(replace(tuning, probe_share=share, max_scanned=0), 1, False) for share in args.sweep]
    if args.split_threads > 1:
        split = replace(tuning, search_threads=args.split_threads)
        variants += [(split, args.split_threads, False), (tuning, 1, True), (split, args.split_threads, True)]
    for variant, threads, busy in variants if index.approximate else []:
        index.tuning = variant
        burner = subprocess.Popen([sys.executable, "-c", BUSY]) if busy else None
        if burner is not None:
            time.sleep(0.5)  # its interpreter started and spinning before the first probe
        try:
            timing = latencies(partial(index.search, k=K), probes.vectors, 2)
        finally:
            if burner is not None:
                burner.kill()
                burner.wait()
        got = [[h.face_id for h in index.search(p, K)] for p in probes.vectors]
        cells = index.cells_visited()
        sweep.append(SweepRow(size=size, share=cells / inverted_file(index._engine).nlist, cells=cells,
                              recall_at_10=recall_at_10(got, exact),
                              mate_in_10=float(np.mean(ranks(got, probes.mates) <= K)), p50_ms=timing.p50(),
                              p99_ms=timing.p99(), cpu_p99_ms=timing.cpu_p99(), threads=threads, busy=busy))
        console.print(f"    share {sweep[-1].share:.2f}, {threads} thread(s){', a core busy' if busy else ''}: "
                      f"{sweep[-1]}")
    index.tuning = tuning

    if size > args.in_memory_max:
        console.print("  facetrail: (no other process opens an index this large beside this one: memory)")
        del index  # `loaded` holds the only reference: erased() lets it go before it opens the files again
        return erased(loaded, store, size, probes, row), sweep
    console.print("  facetrail: another process commits; this one searches next")
    fields = {"approximate_above": tuning.approximate_above, "nprobe": tuning.nprobe,
              "shortlist": tuning.shortlist, "pq": tuning.pq, "cells_per_sqrt": tuning.cells_per_sqrt,
              "probe_share": tuning.probe_share, "max_scanned": tuning.max_scanned}
    done = subprocess.run([sys.executable, "-c", COMMIT, str(work), str(dim), master.hex(), json.dumps(fields)],
                          capture_output=True, text=True, check=True, cwd=ROOT)
    top = json.loads(done.stdout)["top"]
    start = time.perf_counter()
    changed = index.refresh()
    hits = index.search(probes.vectors[0], K)
    row.commit_to_search_ms = (time.perf_counter() - start) * 1000
    if changed != 110 or {h.face_id for h in hits} & set(range(1, 11)) or top not in index.ids():
        raise AssertionError(f"the other process's commit was not seen whole ({changed} ids changed)")

    del index
    return erased(loaded, store, size, probes, row), sweep


def erased(holder: list[FaissIndex], store: FaissStore, size: int, probes: Probes, row: Row) -> Row:
    """Erase 1,000 faces (the planted mates among them): until unsearchable, then until the files are rewritten
    under a new key; then check that no erased face is returned or persisted and no old key is left. The index
    is taken out of `holder` and released before the files are opened again (two 10M-face copies would not fit)."""
    index = holder.pop()
    console.print(f"  facetrail: erasing {ERASED:,} faces")
    others = np.arange(12, size + 1, max(1, size // ERASED), dtype=np.int64)
    gone = np.unique(np.concatenate([probes.mates, others]))[:ERASED]
    start = time.perf_counter()
    index.remove(gone.tolist())
    index.set_generation(index.generation + 1)
    with store.writing():
        index.purge()
    row.erase_unsearchable_ms = (time.perf_counter() - start) * 1000
    row.erase_settled_s = timed(index.settle)
    for probe in probes.vectors:
        if {h.face_id for h in index.search(probe, 50)} & set(gone.tolist()):
            raise AssertionError("an erased face was returned")
    del index
    gc.collect()  # the check below opens the files again: not two copies in memory at once
    if set(gone.tolist()) & store.persisted_ids() or store.sealing.retired():
        raise AssertionError("the persisted index still holds an erased face, or an old key is left")
    return row


def describe(index: FaissIndex) -> str:
    if not index.approximate:
        return "exact"
    engine = inverted_file(index._engine)
    kind = "PQ fast scan" if isinstance(engine, faiss.IndexIVFPQFastScan) else "IVFFlat"
    rotated = " after an OPQ rotation" if isinstance(index._engine, faiss.IndexPreTransform) else ""
    codes = f", {engine.M} x 4-bit codes{rotated}" if kind == "PQ fast scan" else ""
    return (f"IVF {kind} ({engine.nlist:,} cells{codes}, {index.cells_visited():,} visited, "
            f"{index.tuning.shortlist:,} re-ranked)")


def flat_row(size: int, data: Synthetic, n_real: int) -> tuple[Row, list[list[int]]]:
    dim = data.vectors.shape[1]
    console.print("  FAISS flat: building")
    flat = faiss.IndexFlatL2(dim)
    build_s = timed(lambda: flat.add(data.vectors))
    faiss.omp_set_num_threads(1)
    plain = latencies(lambda p: flat.search(p[None], K), data.probes, REPEATS)
    faiss.omp_set_num_threads(0 or 2)
    start = time.perf_counter()
    _, labels = flat.search(data.probes, K)
    batch_qps = len(data.probes) / (time.perf_counter() - start)
    faiss.omp_set_num_threads(1)
    exact_top = [[int(i) + 1 for i in row] for row in labels]
    r = ranks(exact_top, data.mates)
    real_r = r[len(r) - n_real:] if n_real else np.array([np.nan])
    nan = float("nan")
    row = Row(size=size, engine="FAISS flat", mode="exact", build_s=build_s, bytes_per_face=dim * 4.0,
              save_s=nan, load_s=nan, p50_ms=plain.p50(), p99_ms=plain.p99(), p99_passes=plain.passes(),
              cpu_p50_ms=plain.cpu_p50(), cpu_p99_ms=plain.cpu_p99(), filtered_p50_ms=nan, filtered_p99_ms=nan,
              qps_one_thread=plain.qps(), qps_batch=batch_qps, recall_at_10=1.0,
              mate_in_10=float(np.mean(r <= K)), real_mate_in_10=float(np.mean(real_r <= K)),
              mate_rank_median=float(np.median(r)))
    return row, exact_top


def run_size(size: int, args: argparse.Namespace, real: Real | None,
             tuning: IndexTuning) -> tuple[list[Row], list[SweepRow]]:
    console.print(f"[bold]{size:,} faces[/bold]: generating")
    if size > args.in_memory_max:
        return streamed(size, args, real, tuning)
    data, n_real = gallery_of(size, args, real)
    flat, exact_top = flat_row(size, data, n_real)
    batches = [(data.ids, data.vectors)]
    probes = Probes(vectors=data.probes, mates=data.mates, n_real=n_real)
    with tempfile.TemporaryDirectory(prefix="facetrail-scale-") as tmp:
        ours, sweep = facetrail_row(size, batches, probes, lambda: exact_top, tuning, Path(tmp), args)
    del data, batches
    gc.collect()
    return [flat, ours], sweep


def streamed(size: int, args: argparse.Namespace, real: Real | None,
             tuning: IndexTuning) -> tuple[list[Row], list[SweepRow]]:
    """A gallery too large to hold beside the index, generated a chunk at a time: each chunk goes to facetrail's
    index and to exact search by FAISS over that chunk (the top 10 merged over the chunks: exact search over the
    whole gallery, which is never in memory at once). FAISS flat's single-query time is the sum of its times on
    the chunks, for the first `--flat-probes` probes."""
    n_real = 0 if real is None else min(len(real.gallery), size // 10)
    dim = args.dim if real is None else real.gallery.shape[1]
    like = None if real is None else np.concatenate([real.gallery, real.probes])
    stream = synthetic_stream(size - n_real, dim=dim, probes=args.probes, seed=size,
                              spectrum=args.spectrum if real is None else real.spectrum,
                              mate_distance=MATE_DISTANCE if real is None else real.mate_distance,
                              stranger_distance=STRANGER_DISTANCE if real is None else real.stranger_distance,
                              like=like)
    real_ids = np.arange(size - n_real + 1, size + 1, dtype=np.int64)
    vectors = stream.probes if real is None else np.concatenate([stream.probes, real.probes[:n_real]])
    probes = Probes(vectors=vectors,
                    mates=np.concatenate([stream.mates, real_ids]), n_real=n_real)
    top = ExactTop(probes.vectors, probes.vectors[:args.flat_probes])

    def batches() -> Iterator[tuple[NDArray[np.int64], NDArray[np.float32]]]:
        parts = stream.chunks()
        if real is not None and n_real:
            parts = chain(parts, [(real_ids, real.gallery[:n_real])])
        for ids, vectors in parts:
            top.add(ids, vectors)
            yield ids, vectors

    with tempfile.TemporaryDirectory(prefix="facetrail-scale-") as tmp:
        ours, sweep = facetrail_row(size, batches(), probes, top.labels, tuning, Path(tmp), args)
    r = ranks(top.labels(), probes.mates)
    real_r = r[len(r) - n_real:] if n_real else np.array([np.nan])
    nan = float("nan")
    wall, cpu = top.single_ms()
    flat = Row(size=size, engine="FAISS flat", mode=f"exact, by chunks of {stream.chunk:,}; latency: "
               f"{len(wall)} queries, one pass", build_s=nan, bytes_per_face=dim * 4.0, save_s=nan, load_s=nan,
               p50_ms=float(np.percentile(wall, 50)), p99_ms=float(np.percentile(wall, 99)),
               p99_passes=[float(np.percentile(wall, 99))], cpu_p50_ms=float(np.percentile(cpu, 50)),
               cpu_p99_ms=float(np.percentile(cpu, 99)), filtered_p50_ms=nan, filtered_p99_ms=nan,
               qps_one_thread=float(1000 / np.mean(wall)), qps_batch=nan, recall_at_10=1.0,
               mate_in_10=float(np.mean(r <= K)), real_mate_in_10=float(np.mean(real_r <= K)),
               mate_rank_median=float(np.median(r)))
    return [flat, ours], sweep


class ExactTop:
    """Exact search, a chunk of the gallery at a time: the running top 10 of every probe (all at once, as a
    batch), and the one-thread time of single queries of the `timed` probes, summed over the chunks."""

    def __init__(self, probes: NDArray[np.float32], timed: NDArray[np.float32]) -> None:
        self.probes, self.timed = probes, timed
        self.distances = np.full((len(probes), K), np.inf, dtype=np.float32)
        self.ids = np.full((len(probes), K), -1, dtype=np.int64)
        self.wall = np.zeros(len(timed))
        self.cpu = np.zeros(len(timed))

    def add(self, ids: NDArray[np.int64], vectors: NDArray[np.float32]) -> None:
        faiss.omp_set_num_threads(1)
        for i, probe in enumerate(self.timed):
            start, start_cpu = time.perf_counter(), time.thread_time()
            faiss.knn(probe[None], vectors, K)
            self.wall[i] += (time.perf_counter() - start) * 1000
            self.cpu[i] += (time.thread_time() - start_cpu) * 1000
        faiss.omp_set_num_threads(2)
        distances, rows = faiss.knn(self.probes, vectors, K)
        faiss.omp_set_num_threads(1)
        both_d = np.concatenate([self.distances, distances], axis=1)
        both_i = np.concatenate([self.ids, ids[rows]], axis=1)
        order = np.argsort(both_d, axis=1, kind="stable")[:, :K]
        self.distances = np.take_along_axis(both_d, order, axis=1)
        self.ids = np.take_along_axis(both_i, order, axis=1)

    def labels(self) -> list[list[int]]:
        return [[int(i) for i in row] for row in self.ids]

    def single_ms(self) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
        return self.wall, self.cpu


def markdown(rows: list[Row], sweeps: list[SweepRow], args: argparse.Namespace, real: Real | None,
             started: datetime) -> str:
    info = machine()
    if real is not None:
        how = (f"{len(real.gallery)} real LFW templates ({real.model_id}: one photo of each of {len(real.gallery)} "
               f"people in the gallery, their other photo a probe; at most a tenth of the gallery) among synthetic "
               f"identities clustered like them (bench/synthetic.py: centred on their mean, along their principal "
               f"axes, variance of the i-th axis ~ i^-{real.spectrum:.2f} as fitted on them, two photos of one "
               f"person {real.mate_distance:.3f} apart and of two people {real.stranger_distance:.3f}, their "
               "medians), 4 faces per synthetic identity on average")
    else:
        how = f"synthetic templates only (bench/synthetic.py, {args.dim}-d; no LFW templates)"
    lines = [
        f"Run {started:%Y-%m-%d %H:%M} UTC on {info['cpu']} ({info['cores']} cores, {info['memory']}; shared with "
        f"other work), Python {info['python']}, faiss-cpu {faiss.__version__}, revision {info['revision']}.",
        "",
        f"Reproduce: `make bench-scale SCALE_ARGS='--sizes {','.join(str(s) for s in args.sizes)} "
        f"--probes {args.probes} --lfw-people {args.lfw_people}"
        + (f" --sweep {','.join(str(x) for x in args.sweep)}" if args.sweep else "") + "'`",
        "",
        f"Gallery: {how}. Probes: {args.probes} synthetic planted mates and the real ones. Faces spread over "
        f"{PARTITIONS} sources; the filtered search keeps one. Latencies are one query at a time on one FAISS "
        f"thread, {REPEATS} passes over the probes: p50 and p99 are the median of the passes', \"p99 of each "
        "pass\" shows their spread, and CPU is the searching thread's CPU time (without the time it waited for a "
        "core); recall@10 is against exact search on the same vectors; a mate outside the top 10 counts as rank "
        "11. facetrail's files are sealed (AES-GCM) as in the product; load is opening them.",
        "",
        "| faces | engine | mode | build (s) | bytes/face | save (s) | load (s) | p50 (ms) | p99 (ms) | "
        "p99 of each pass (ms) | CPU p50 / p99 (ms) | filtered p50 / p99 (ms) | queries/s (1 thread) | "
        "queries/s (batch, 2 threads) | recall@10 | "
        "mate in top 10 | real mate in top 10 | mate rank (median) | other process's commit -> search (ms) | "
        f"erase {ERASED:,}: unsearchable (ms) | erase: files rewritten (s) |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r.size:,} | {r.engine} | {r.mode} | {_f(r.build_s, 1)} | {r.bytes_per_face:.0f} | {_f(r.save_s, 2)} | "
            f"{_f(r.load_s, 2)} | {r.p50_ms:.2f} | {r.p99_ms:.2f} | {', '.join(f'{p:.1f}' for p in r.p99_passes)} | "
            f"{r.cpu_p50_ms:.2f} / {r.cpu_p99_ms:.2f} | {_f(r.filtered_p50_ms, 2)} / "
            f"{_f(r.filtered_p99_ms, 2)} | {r.qps_one_thread:.0f} | {_f(r.qps_batch, 0)} | {r.recall_at_10:.4f} | "
            f"{r.mate_in_10:.1%} | {_p(r.real_mate_in_10)} | {r.mate_rank_median:.0f} | "
            f"{_f(r.commit_to_search_ms, 1)} | {_f(r.erase_unsearchable_ms, 1)} | {_f(r.erase_settled_s, 2)} |")
    lines += ["", f"Peak resident memory of the whole run: {peak_rss_gib():.2f} GiB.", ""]
    for r in rows:
        if r.engine != "facetrail":
            continue
        flat = next(f for f in rows if f.size == r.size and f.engine == "FAISS flat")
        lines.append(f"- {r.size:,} faces, {r.mode}: p99 {r.p99_ms:.2f} ms against flat's {flat.p99_ms:.2f} "
                     f"(ratio {flat.p99_ms / r.p99_ms:.1f}), p50 ratio {flat.p50_ms / r.p50_ms:.1f}, recall@10 "
                     f"{r.recall_at_10:.4f}.")
    if sweeps:
        lines += ["", "The same loaded index searched again (2 passes): on one thread with other shares of its cells "
                  "visited and no limit on the codes scanned (`max_scanned` 0); then with the product's own share "
                  "split over several threads (`FACETRAIL_INDEX_SEARCH_THREADS`; CPU is the calling thread's "
                  "alone), and on one thread and on several while another process keeps one core busy, as an "
                  "ingestion on the same machine does:", "",
                  "| faces | share visited | cells visited | threads | another core busy | recall@10 | "
                  "mate in top 10 | p50 (ms) | p99 (ms) | CPU p99 (ms) |", "|---|---|---|---|---|---|---|---|---|---|"]
        lines += [f"| {w.size:,} | {w.share:.0%} | {w.cells:,} | {w.threads} | {'yes' if w.busy else 'no'} | "
                  f"{w.recall_at_10:.4f} | {w.mate_in_10:.1%} | {w.p50_ms:.2f} | {w.p99_ms:.2f} | "
                  f"{w.cpu_p99_ms:.2f} |" for w in sweeps]
    if any(r.size > args.in_memory_max for r in rows):
        lines += ["", f"Above {args.in_memory_max:,} faces the gallery is generated a chunk at a time and never "
                  "held whole: exact search runs over each chunk (its top 10 merged), FAISS flat's latency is the "
                  "sum of one query's times over the chunks, and no other process opens the index (a second copy "
                  "would not fit in memory beside it), so the commit-to-search column is empty there."]
    lines.append("")
    return "\n".join(lines)


def _f(value: float, digits: int) -> str:
    return "-" if value != value else f"{value:.{digits}f}"


def _p(value: float) -> str:
    return "-" if value != value else f"{value:.1%}"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="bench.scale", description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--sizes", type=lambda s: [int(x) for x in s.split(",")], default=[10_000, 100_000],
                        help="gallery sizes, comma-separated (10000,100000; add 1000000 with ~5 GB free)")
    parser.add_argument("--probes", type=int, default=200, help="synthetic mated probes per size (200)")
    parser.add_argument("--lfw", type=Path, default=ROOT.parent / "shared" / "data" / "lfw", help="LFW root")
    parser.add_argument("--lfw-people", type=int, default=200,
                        help="LFW people whose two photos give real templates (0: synthetic only)")
    parser.add_argument("--workers", type=int, default=2, help="processes extracting LFW templates")
    parser.add_argument("--dim", type=int, default=128, help="template dimension without LFW templates")
    parser.add_argument("--spectrum", type=float, default=0.9, help="variance decay without LFW templates")
    parser.add_argument("--nprobe", type=int, default=IndexTuning.nprobe, help="IVF cells visited per query")
    parser.add_argument("--shortlist", type=int, default=IndexTuning.shortlist, help="candidates re-ranked")
    parser.add_argument("--probe-share", type=float, default=IndexTuning.probe_share,
                        help="share of the IVF cells visited per query (at least --nprobe)")
    parser.add_argument("--pq", type=int, default=IndexTuning.pq,
                        help="PQ sub-quantisers of the inverted file's codes (0: one for every two dimensions)")
    parser.add_argument("--max-scanned", type=int, default=IndexTuning.max_scanned,
                        help="codes one search scans at most on average (0: no limit)")
    parser.add_argument("--approximate-above", type=int, default=IndexTuning.approximate_above,
                        help="faces above which facetrail's index is an inverted file")
    parser.add_argument("--sweep", type=lambda s: [float(x) for x in s.split(",") if x], default=[],
                        help="after the main measurement, search again with these shares of the cells visited "
                             "(comma-separated), for recall@10 against latency")
    parser.add_argument("--split-threads", type=int, default=os.cpu_count() or 1,
                        help="after the main measurement, search again with one query's cells split over this many "
                             "threads (default: every core; 1: not measured)")
    parser.add_argument("--in-memory-max", type=int, default=2_000_000,
                        help="sizes above this are generated a chunk at a time (exact search by chunks; no "
                             "other process opens the index beside this one)")
    parser.add_argument("--flat-probes", type=int, default=20,
                        help="probes whose single-query time FAISS flat is measured on, for streamed sizes")
    parser.add_argument("--output", type=Path, default=ROOT / "BENCHMARKS.md", help="markdown file to write")
    parser.add_argument("--no-output", action="store_true", help="write no markdown")
    args = parser.parse_args(argv)
    started = datetime.now(UTC)
    tuning = IndexTuning(approximate_above=args.approximate_above, nprobe=args.nprobe, shortlist=args.shortlist,
                         probe_share=args.probe_share, max_scanned=args.max_scanned, pq=args.pq)
    real = real_templates(args)
    rows: list[Row] = []
    sweeps: list[SweepRow] = []
    for size in args.sizes:
        found, sweep = run_size(size, args, real, tuning)
        rows.extend(found)
        sweeps.extend(sweep)
        console.print(markdown(rows, sweeps, args, real, started))
    body = markdown(rows, sweeps, args, real, started)
    if not args.no_output:
        write_section(args.output, body, start=START, end=END)
    print(body)


if __name__ == "__main__":
    main()
