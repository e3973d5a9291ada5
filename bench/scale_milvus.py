"""The distributed index at scale: facetrail's Milvus engine beside FAISS flat, on the same synthetic faces.

    .venv/bin/python -m bench.scale_milvus [--sizes 10000,100000] [--probes 200] [--index-types FLAT,IVF_FLAT]

For each size, in the same process on the same vectors (bench/synthetic.py, as `make bench-scale`): FAISS exact
search (`FaissIndex` kept exact: the baseline and the ground truth) and `MilvusIndex` through pymilvus on
milvus-lite, the embedded build of Milvus (one process, pure Python over FAISS kernels: NOT a cluster; a
cluster's figures depend on its nodes and network and are not measured here). Each is filled in batches of 5,000
as the gallery adds them, then measured for build time (flush included), bytes on disk per face, single-query
latency p50/p99 (plain and limited to one source), recall@10 against exact search, the planted mate's rank, the
removal of 1,000 faces (checked never to come back, before and after the purge) and the purge that rewrites
the buckets holding them.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import faiss
import numpy as np
import pymilvus
from rich.console import Console

from bench.load import ROOT, machine, write_section
from bench.scale import BATCH, PARTITIONS, K, latencies, peak_rss_gib
from bench.synthetic import SPECTRUM, Synthetic, synthetic
from facetrail.index.base import VectorIndex
from facetrail.index.faiss_index import FaissIndex, IndexTuning
from facetrail.index.milvus_index import MilvusStore, MilvusTuning

START, END = "<!-- scale-milvus:start -->", "<!-- scale-milvus:end -->"
console = Console(stderr=True)


@dataclass
class Row:
    size: int
    engine: str
    build_s: float
    disk_bytes_per_face: float
    p50_ms: float
    p99_ms: float
    filtered_p50_ms: float
    filtered_p99_ms: float
    recall_at_10: float
    mate_in_10: float
    remove_1000_ms: float
    purge_s: float


def disk_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def fill(index: VectorIndex, data: Synthetic) -> float:
    start = time.perf_counter()
    for lo in range(0, len(data.ids), BATCH):
        chunk = data.ids[lo:lo + BATCH]
        index.add(chunk, data.vectors[chunk - 1], chunk % PARTITIONS)
    index.persist()
    return time.perf_counter() - start


def measure(size: int, engine: str, index: VectorIndex, build_s: float, disk: float, data: Synthetic,
            exact_top: list[list[int]]) -> tuple[Row, np.ndarray]:
    console.print(f"  {engine}: searching")
    plain = latencies(index, data.probes)  # type: ignore[arg-type]  # any VectorIndex searches alike
    filtered = latencies(index, data.probes, {1})  # type: ignore[arg-type]
    recall, in_top = [], []
    for probe, mate, exact in zip(data.probes, data.mates, exact_top, strict=True):
        got = [h.face_id for h in index.search(probe, K)]
        recall.append(len(set(got) & set(exact)) / len(exact))
        in_top.append(int(mate) in got)
    gone = data.mates[: min(1000, len(data.mates))]
    gone = np.unique(np.concatenate([gone, data.ids[:: max(1, size // 1000)][: 1000 - len(gone)]]))
    start = time.perf_counter()
    index.remove(gone.tolist())
    remove_ms = (time.perf_counter() - start) * 1000
    return Row(size=size, engine=engine, build_s=build_s, disk_bytes_per_face=disk,
               p50_ms=float(np.percentile(plain, 50)), p99_ms=float(np.percentile(plain, 99)),
               filtered_p50_ms=float(np.percentile(filtered, 50)),
               filtered_p99_ms=float(np.percentile(filtered, 99)), recall_at_10=float(np.mean(recall)),
               mate_in_10=float(np.mean(in_top)), remove_1000_ms=remove_ms, purge_s=float("nan")), gone


def never_returned(index: VectorIndex, data: Synthetic, gone: np.ndarray, what: str) -> None:
    removed = set(gone.tolist())
    for probe in data.probes:
        if {h.face_id for h in index.search(probe, 50)} & removed:
            raise AssertionError(f"{what}: a removed face was returned")


def run_size(size: int, args: argparse.Namespace, work: Path) -> list[Row]:
    console.print(f"[bold]{size:,} faces[/bold]: generating")
    data = synthetic(size, dim=args.dim, probes=args.probes, seed=size, spectrum=args.spectrum)
    console.print("  FAISS flat: building")
    flat = FaissIndex(work / f"flat-{size}.ftindex", args.dim, tuning=IndexTuning(approximate_above=2 ** 62))
    flat_s = fill(flat, data)
    exact_top = [[h.face_id for h in flat.search(p, K)] for p in data.probes]
    flat_disk = (work / f"flat-{size}.ftindex").stat().st_size / size
    row, gone = measure(size, "FAISS flat", flat, flat_s, flat_disk, data, exact_top)
    never_returned(flat, data, gone, "FAISS flat")
    rows = [row]
    for index_type in args.index_types:
        lite = work / f"milvus-{size}-{index_type}.db"
        store = MilvusStore(MilvusTuning(uri=str(lite), index_type=index_type, model_id="bench"), args.dim,
                            work / "bench.lock")
        try:
            engine = f"Milvus {index_type} (milvus-lite)"
            console.print(f"  {engine}: building")
            index = store.create()
            build_s = fill(index, data)
            row, gone = measure(size, engine, index, build_s, disk_bytes(lite) / size, data, exact_top)
            never_returned(index, data, gone, f"{engine} before the purge")
            console.print(f"  {engine}: purging")
            start = time.perf_counter()
            index.purge()
            row.purge_s = time.perf_counter() - start
            never_returned(index, data, gone, f"{engine} after the purge")
            rows.append(row)
        finally:
            store.close()
    return rows


def markdown(rows: list[Row], args: argparse.Namespace, started: datetime) -> str:
    info = machine()
    lines = [
        f"Run {started:%Y-%m-%d %H:%M} UTC on {info['cpu']} ({info['cores']} cores, {info['memory']}; shared with "
        f"other work), Python {info['python']}, faiss-cpu {faiss.__version__}, pymilvus {pymilvus.__version__}, "
        f"revision {info['revision']}.",
        "",
        f"Reproduce: `make bench-scale-milvus SCALE_MILVUS_ARGS='--sizes {','.join(str(s) for s in args.sizes)} "
        f"--probes {args.probes} --index-types {','.join(args.index_types)}'`",
        "",
        f"The synthetic templates of `make bench-scale` ({args.dim}-d, spectrum {args.spectrum}), {args.probes} "
        "mated probes, faces over 5 sources (the filtered search keeps one); one query at a time. milvus-lite is "
        "Milvus's embedded build in this process (pure Python over FAISS kernels, every request through gRPC on "
        "loopback): **not a cluster**; its latencies measure the client path and the engine's overhead, not "
        "what a cluster's query nodes give. Disk: the engine's files (Milvus) or the index file (FAISS) per face. "
        "Purge: the rewrite of the source buckets holding the 1,000 removed faces (here all 5).",
        "",
        "| faces | engine | build (s) | disk bytes/face | p50 (ms) | p99 (ms) | filtered p50 / p99 (ms) | recall@10 | "
        "mate in top 10 | remove 1,000 (ms) | purge (s) |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        purge = "-" if r.purge_s != r.purge_s else f"{r.purge_s:.1f}"
        lines.append(f"| {r.size:,} | {r.engine} | {r.build_s:.1f} | {r.disk_bytes_per_face:.0f} | {r.p50_ms:.2f} | "
                     f"{r.p99_ms:.2f} | {r.filtered_p50_ms:.2f} / {r.filtered_p99_ms:.2f} | {r.recall_at_10:.4f} | "
                     f"{r.mate_in_10:.1%} | {r.remove_1000_ms:.1f} | {purge} |")
    lines += ["", f"Peak resident memory of the whole run: {peak_rss_gib():.2f} GiB.", ""]
    for r in rows:
        flat = next(f for f in rows if f.size == r.size and f.engine == "FAISS flat")
        if r is not flat:
            lines.append(f"- {r.size:,} faces, {r.engine}: p50 {r.p50_ms:.2f} ms against FAISS flat's "
                         f"{flat.p50_ms:.2f} (ratio {r.p50_ms / flat.p50_ms:.1f}x slower), p99 ratio "
                         f"{r.p99_ms / flat.p99_ms:.1f}, recall@10 {r.recall_at_10:.4f}.")
    lines.append("")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="bench.scale_milvus",
                                     description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--sizes", type=lambda s: [int(x) for x in s.split(",")], default=[10_000, 100_000])
    parser.add_argument("--probes", type=int, default=200, help="mated probes per size (200)")
    parser.add_argument("--dim", type=int, default=128)
    parser.add_argument("--spectrum", type=float, default=SPECTRUM)
    parser.add_argument("--index-types", type=lambda s: s.split(","), default=["FLAT"],
                        help="Milvus index types, comma-separated (FLAT; IVF_FLAT, IVF_SQ8, HNSW)")
    parser.add_argument("--output", type=Path, default=ROOT / "BENCHMARKS.md")
    parser.add_argument("--no-output", action="store_true", help="write no markdown")
    args = parser.parse_args(argv)
    started = datetime.now(UTC)
    rows: list[Row] = []
    with tempfile.TemporaryDirectory(prefix="facetrail-scale-milvus-") as tmp:
        for size in args.sizes:
            rows.extend(run_size(size, args, Path(tmp)))
    body = markdown(rows, args, started)
    if not args.no_output:
        write_section(args.output, body, start=START, end=END)
    print(body)


if __name__ == "__main__":
    main()
