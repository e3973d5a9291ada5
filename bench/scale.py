"""The index at scale: galleries of 10k, 100k and 1M synthetic faces, facetrail's index beside FAISS flat.

    .venv/bin/python -m bench.scale [--sizes 10000,100000,1000000] [--probes 200] [--output BENCHMARKS.md]

For each size, in the same process on the same vectors (bench/synthetic.py: identities clustered like dlib's
templates, one planted mate per probe): facetrail's index as the product configures it (`FaissIndex` with the
default `IndexTuning`: exact up to 100,000 faces, an inverted file above) and FAISS exact search (the same class
kept exact, IndexFlatL2 under IndexIDMap2). Each is built the way the gallery builds it, in batches of 5,000,
and measured for build time, resident memory per face, save and load time, single-query latency (p50/p99,
one FAISS thread, and exact search on every core for comparison), the same latency with a partition filter,
the first filtered search after a change (the filter is rebuilt), recall@10 against exact search, the
planted mate's rank, and the removal of 1,000 faces (checked never to come back).
"""

from __future__ import annotations

import argparse
import gc
import resource
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from math import nan
from pathlib import Path

import faiss
import numpy as np
from rich.console import Console

from bench.load import ROOT, machine, write_section
from bench.synthetic import MATE_DISTANCE, SPECTRUM, STRANGER_DISTANCE, Synthetic, synthetic
from facetrail.index.faiss_index import FaissIndex, IndexTuning

START, END = "<!-- scale:start -->", "<!-- scale:end -->"
BATCH = 5000  # as the gallery adds from the store (index/gallery.py)
PARTITIONS = 5  # sources the faces are spread over; a filtered search keeps one of them
K = 10
console = Console(stderr=True)


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
    filtered_p50_ms: float
    filtered_p99_ms: float
    first_filtered_ms: float
    all_cores_p50_ms: float | None
    recall_at_10: float
    mate_in_10: float
    mate_rank_median: float
    remove_1000_ms: float
    extra: dict[str, str] = field(default_factory=dict)


def index_bytes(index: FaissIndex) -> int:
    """What the index holds in memory, as FAISS serialises it (vectors, ids, cells), plus the partition of each
    id; the IVF's hash table from id to list position (about 16 B a face) is not counted."""
    return len(faiss.serialize_index(index._index)) + index._part.nbytes


def peak_rss_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 ** 2


def timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def latencies(index: FaissIndex, probes: np.ndarray, partitions: set[int] | None = None) -> np.ndarray:
    index.search(probes[0], K, partitions)  # warm (a filter's bitmap is built on first use)
    out = np.empty(len(probes))
    for i, probe in enumerate(probes):
        start = time.perf_counter()
        index.search(probe, K, partitions)
        out[i] = (time.perf_counter() - start) * 1000
    return out


def build(path: Path, data: Synthetic, tuning: IndexTuning) -> tuple[FaissIndex, float, float]:
    index = FaissIndex(path, data.vectors.shape[1], tuning=tuning)
    ids = data.ids
    start = time.perf_counter()
    for lo in range(0, len(ids), BATCH):
        chunk = ids[lo:lo + BATCH]
        index.add(chunk, data.vectors[chunk - 1], chunk % PARTITIONS)
    elapsed = time.perf_counter() - start
    return index, elapsed, index_bytes(index) / len(ids)


def measure(size: int, engine: str, index: FaissIndex, build_s: float, per_face: float, data: Synthetic,
            exact_top: list[list[int]], *, destructive: bool = True) -> Row:
    """Search figures; with `destructive`, also save, load and removal (the last measurement of an index)."""
    console.print(f"  {engine}: searching")
    plain = latencies(index, data.probes)
    filtered = latencies(index, data.probes, {1})
    all_cores = None
    if engine == "FAISS flat":
        index.tuning = replace(index.tuning, search_threads=0)
        all_cores = float(np.percentile(latencies(index, data.probes), 50))
        index.tuning = replace(index.tuning, search_threads=1)
    recall, ranks = [], []
    for probe, mate, exact in zip(data.probes, data.mates, exact_top, strict=True):
        got = [h.face_id for h in index.search(probe, K)]
        recall.append(len(set(got) & set(exact)) / len(exact))
        ranks.append(got.index(int(mate)) + 1 if mate in got else K + 1)
    row = Row(size=size, engine=engine, mode="IVFFlat" if index.approximate else "exact", build_s=build_s,
              bytes_per_face=per_face, save_s=nan, load_s=nan,
              p50_ms=float(np.percentile(plain, 50)), p99_ms=float(np.percentile(plain, 99)),
              filtered_p50_ms=float(np.percentile(filtered, 50)),
              filtered_p99_ms=float(np.percentile(filtered, 99)), first_filtered_ms=nan,
              all_cores_p50_ms=all_cores, recall_at_10=float(np.mean(recall)),
              mate_in_10=float(np.mean([r <= K for r in ranks])), mate_rank_median=float(np.median(ranks)),
              remove_1000_ms=nan)
    if not destructive:
        return row
    console.print(f"  {engine}: saving and loading")
    save_s = timed(index.persist)
    load_s = timed(lambda: FaissIndex.load(index.path, index.dim, tuning=index.tuning))
    index.path.unlink()
    gone = data.mates[: min(1000, len(data.mates))]
    gone = np.unique(np.concatenate([gone, data.ids[:: max(1, size // 1000)][: 1000 - len(gone)]]))
    remove_ms = timed(lambda: index.remove(gone.tolist())) * 1000
    first_filtered_ms = timed(lambda: index.search(data.probes[0], K, {1})) * 1000
    for probe in data.probes:
        returned = {h.face_id for h in index.search(probe, 50)}
        if returned & set(gone.tolist()):
            raise AssertionError(f"{engine} at {size}: a removed face was returned")
    return replace(row, save_s=save_s, load_s=load_s, first_filtered_ms=first_filtered_ms,
                   remove_1000_ms=remove_ms)


def run_size(size: int, args: argparse.Namespace, tuning: IndexTuning, work: Path) -> list[Row]:
    console.print(f"[bold]{size:,} faces[/bold]: generating")
    data = synthetic(size, dim=args.dim, probes=args.probes, seed=size, spectrum=args.spectrum)
    rows = []
    console.print("  FAISS flat: building")
    flat, flat_s, flat_mem = build(work / "flat.ftindex", data, IndexTuning(approximate_above=2 ** 62))
    exact_top = [[h.face_id for h in flat.search(p, K)] for p in data.probes]
    rows.append(measure(size, "FAISS flat", flat, flat_s, flat_mem, data, exact_top))
    del flat
    console.print("  facetrail: building")
    ours, ours_s, ours_mem = build(work / "facetrail.ftindex", data, tuning)
    ivf = ours._index if ours.approximate else None
    for i, nprobe in enumerate(args.nprobe if ivf is not None else args.nprobe[:1]):
        ours.tuning = replace(tuning, nprobe=nprobe)
        row = measure(size, "facetrail", ours, ours_s, ours_mem, data, exact_top,
                      destructive=i == len(args.nprobe) - 1 or ivf is None)
        if ivf is not None:
            row.extra["cells"] = f"{ivf.nlist} cells, nprobe {nprobe}"
        rows.append(row)
    del ours, data
    gc.collect()
    return rows


def markdown(rows: list[Row], args: argparse.Namespace, started: datetime) -> str:
    info = machine()
    lines = [
        f"Run {started:%Y-%m-%d %H:%M} UTC on {info['cpu']} ({info['cores']} cores, {info['memory']}; shared with "
        f"other work), Python {info['python']}, faiss-cpu {faiss.__version__}, revision {info['revision']}.",
        "",
        f"Reproduce: `make bench-scale SCALE_ARGS='--sizes {','.join(str(s) for s in args.sizes)} "
        f"--probes {args.probes} --nprobe {','.join(str(n) for n in args.nprobe)} --spectrum {args.spectrum}'`",
        "",
        f"Synthetic templates (bench/synthetic.py), {args.dim}-d: identities drawn from a Gaussian whose "
        f"i-th axis has variance ~ i^-{args.spectrum} (the spectrum measured on real dlib templates of LFW; 0 = "
        f"isotropic), 4 faces each on average, faces of one identity about "
        f"{MATE_DISTANCE} apart and of two identities about {STRANGER_DISTANCE} (dlib's distances on LFW); "
        f"{args.probes} probes, each a new face of a gallery face's identity (its planted mate). Faces spread "
        "over 5 sources; the filtered search keeps one. Latencies are one query at a time, one FAISS thread "
        "unless said; recall@10 is against exact search on the same vectors; a mate outside the top 10 counts "
        "as rank 11.",
        "",
        "| faces | engine | mode | build (s) | index bytes/face | save (s) | load (s) | p50 (ms) | p99 (ms) | "
        "filtered p50 / p99 (ms) | first filtered after a change (ms) | exact p50 on every core (ms) | "
        "recall@10 | mate in top 10 | mate rank (median) | remove 1,000 (ms) |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        mode = r.mode + (f" ({r.extra['cells']})" if "cells" in r.extra else "")
        cores = f"{r.all_cores_p50_ms:.2f}" if r.all_cores_p50_ms is not None else ""
        lines.append(
            f"| {r.size:,} | {r.engine} | {mode} | {r.build_s:.1f} | {r.bytes_per_face:.0f} | {_f(r.save_s, 2)} | "
            f"{_f(r.load_s, 2)} | {r.p50_ms:.2f} | {r.p99_ms:.2f} | {r.filtered_p50_ms:.2f} / "
            f"{r.filtered_p99_ms:.2f} | {_f(r.first_filtered_ms, 1)} | {cores} | {r.recall_at_10:.4f} | "
            f"{r.mate_in_10:.1%} | {r.mate_rank_median:.0f} | {_f(r.remove_1000_ms, 1)} |")
    lines.append("")
    lines.append(f"Peak resident memory of the whole run: {peak_rss_gib():.2f} GiB.")
    lines.append("")
    by_size: dict[int, dict[str, Row]] = {}
    for r in rows:
        by_size.setdefault(r.size, {})[r.engine] = r
    for r in rows:
        flat = next(f for f in rows if f.size == r.size and f.engine == "FAISS flat")
        if r.engine == "facetrail":
            lines.append(f"- {r.size:,} faces, {r.extra.get('cells', 'exact')}: p99 {r.p99_ms:.2f} ms against "
                         f"flat's {flat.p99_ms:.2f} (ratio {flat.p99_ms / r.p99_ms:.1f}), p50 ratio "
                         f"{flat.p50_ms / r.p50_ms:.1f}, recall@10 {r.recall_at_10:.4f}.")
    lines.append("")
    return "\n".join(lines)


def _f(value: float, digits: int) -> str:
    return "-" if value != value else f"{value:.{digits}f}"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="bench.scale", description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--sizes", type=lambda s: [int(x) for x in s.split(",")], default=[10_000, 100_000],
                        help="gallery sizes, comma-separated (10000,100000; add 1000000 with ~4 GB free)")
    parser.add_argument("--probes", type=int, default=200, help="mated probes per size (200)")
    parser.add_argument("--dim", type=int, default=128, help="template dimension (128, dlib's)")
    parser.add_argument("--spectrum", type=float, default=SPECTRUM, help="variance decay of the synthetic "
                        "templates' axes (0.9, as measured on dlib's; 0 = isotropic)")
    parser.add_argument("--nprobe", type=lambda s: [int(x) for x in s.split(",")], default=[IndexTuning.nprobe],
                        help="IVF cells visited per query, comma-separated: one facetrail row each (16)")
    parser.add_argument("--approximate-above", type=int, default=IndexTuning.approximate_above,
                        help="faces above which facetrail's index is an inverted file")
    parser.add_argument("--output", type=Path, default=ROOT / "BENCHMARKS.md", help="markdown file to write")
    parser.add_argument("--no-output", action="store_true", help="write no markdown")
    args = parser.parse_args(argv)
    started = datetime.now(UTC)
    tuning = IndexTuning(approximate_above=args.approximate_above, nprobe=args.nprobe[0])
    rows: list[Row] = []
    with tempfile.TemporaryDirectory(prefix="facetrail-scale-") as tmp:
        for size in args.sizes:
            rows.extend(run_size(size, args, tuning, Path(tmp)))
            console.print(markdown(rows, args, started))
    body = markdown(rows, args, started)
    if not args.no_output:
        write_section(args.output, body, start=START, end=END)
    print(body)


if __name__ == "__main__":
    main()
