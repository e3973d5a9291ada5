"""A probe, not part of the product: FAISS IVF with 4-bit PQ fast scan and exact re-ranking of the shortlist
(IndexRefineFlat) on the scale benchmark's synthetic templates, beside exact search.

    .venv/bin/python -m bench.refine_probe [--size 1000000] [--pq 64] [--nprobe 512,1024] [--k-factor 100,400]

Prints one line per setting: recall@10 against exact search, planted mate in the top 10, p50/p99 ms of one query
on one thread. Measured to choose the next index engine (BENCHMARKS.md, "Index at scale").
"""

from __future__ import annotations

import argparse
import time

import faiss
import numpy as np

from bench.synthetic import synthetic
from facetrail.index.faiss_index import TRAIN_POINTS_PER_CELL, nlist_for

K = 10


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="bench.refine_probe")
    parser.add_argument("--size", type=int, default=1_000_000)
    parser.add_argument("--probes", type=int, default=200)
    parser.add_argument("--pq", type=int, default=64, help="PQ sub-quantisers (4 bits each)")
    parser.add_argument("--nprobe", type=lambda s: [int(x) for x in s.split(",")], default=[512, 1024])
    parser.add_argument("--k-factor", type=lambda s: [int(x) for x in s.split(",")], default=[100, 400])
    parser.add_argument("--cells", type=int, default=0, help="IVF cells (0: the product's nlist_for)")
    args = parser.parse_args(argv)
    data = synthetic(args.size, probes=args.probes, seed=args.size)
    flat = faiss.IndexFlatL2(data.vectors.shape[1])
    flat.add(data.vectors)
    _, exact = flat.search(data.probes, K)
    nlist = args.cells or nlist_for(args.size)
    start = time.perf_counter()
    base = faiss.index_factory(data.vectors.shape[1], f"IVF{nlist},PQ{args.pq}x4fs")
    base.cp.niter = 10
    rows = np.random.default_rng(0).choice(args.size, min(args.size, TRAIN_POINTS_PER_CELL * nlist), replace=False)
    base.train(data.vectors[rows])
    refined = faiss.IndexRefineFlat(base)
    refined.add(data.vectors)
    print(f"IVF{nlist},PQ{args.pq}x4fs + exact re-ranking: built in {time.perf_counter() - start:.1f} s")
    exact_mates = np.mean([m - 1 in e for m, e in zip(data.mates, exact, strict=True)])
    faiss.omp_set_num_threads(1)
    for nprobe in args.nprobe:
        for k_factor in args.k_factor:
            params = faiss.IndexRefineSearchParameters(k_factor=k_factor)
            params.base_index_params = faiss.SearchParametersIVF(nprobe=nprobe)
            times, recall, mates = [], [], []
            for i, probe in enumerate(data.probes):
                t0 = time.perf_counter()
                _, labels = refined.search(probe[None], K, params=params)
                times.append((time.perf_counter() - t0) * 1000)
                recall.append(len(set(labels[0]) & set(exact[i])) / K)
                mates.append(data.mates[i] - 1 in labels[0])
            print(f"nprobe {nprobe} k_factor {k_factor}: recall@10 {np.mean(recall):.4f}, mate in top 10 "
                  f"{np.mean(mates):.1%} (exact {exact_mates:.1%}), "
                  f"p50 {np.percentile(times, 50):.2f} ms, p99 {np.percentile(times, 99):.2f} ms")


if __name__ == "__main__":
    main()
