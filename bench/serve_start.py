"""`facetrail serve` start-up with a large index: from the command's start to its first /health answer.

    .venv/bin/python -m bench.serve_start [--faces 1000000] [--runs 3] [--output BENCHMARKS.md]

A fresh data directory is created, and an index of `--faces` synthetic templates (bench/synthetic.py, the model's
dimension) is written into it, sealed under its keyring, at the store's generation, as a gallery would have
persisted it: `serve` then opens it as it would a real one (the store itself holds no faces, so what is measured
is the process start, opening the data directory and loading the index, not a catch-up). The same with an empty
index gives the fixed part. Each figure is the median of `--runs` starts.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import tempfile
import textwrap
import time
import urllib.request
from datetime import UTC, datetime
from pathlib import Path

from rich.console import Console

from bench.load import ROOT, machine, write_section
from bench.synthetic import synthetic
from facetrail.config import get_settings
from facetrail.index.faiss_index import IndexTuning
from facetrail.index.faiss_store import FaissStore
from facetrail.ingest.analysis import vision_config
from facetrail.runtime import Facetrail
from facetrail.store.db import get_generation
from facetrail.vision.backend import load_backend

START, END = "<!-- serve-start:start -->", "<!-- serve-start:end -->"
BATCH = 50_000
console = Console(stderr=True)


def prepare(data: Path, faces: int) -> None:
    ft = Facetrail.open(data, create=True, workers=1)
    try:
        gallery = ft.gallery
        with ft.db.read() as session:
            generation = get_generation(session)
        store = FaissStore(data / "index" / f"{gallery.model_id}.ftindex", gallery.dim, ft.vault,
                           IndexTuning(model_id=gallery.model_id))
        index = store.create()
        if faces:
            made = synthetic(faces, dim=gallery.dim, probes=1, seed=faces)
            for lo in range(0, faces, BATCH):
                ids = made.ids[lo:lo + BATCH]
                index.add(ids, made.vectors[ids - 1], ids % 5)
            del made
        index.set_generation(generation)
        with store.writing():
            index.persist()
    finally:
        ft.close()


def check(data: Path, faces: int) -> None:
    """The servers opened the index as written: no catch-up with the (empty) store removed its faces."""
    ft = Facetrail.open(data, workers=1)
    try:
        held = len(ft.gallery.persisted_ids())
    finally:
        ft.close()
    if held != faces:
        raise AssertionError(f"the index holds {held:,} faces after serving, not {faces:,}")


def start_once(data: Path) -> float:
    env = {**os.environ, "FACETRAIL_DATA": str(data)}
    started = time.perf_counter()
    proc = subprocess.Popen([str(ROOT / ".venv" / "bin" / "facetrail"), "serve", "--port", "0", "--json"],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env)
    try:
        assert proc.stdout is not None
        text = ""
        while True:  # the --json answer, printed once the data directory is open (maybe over several lines)
            line = proc.stdout.readline()
            if not line:
                raise RuntimeError("facetrail serve exited before saying where it listens")
            text += line
            try:
                url = json.loads(text)["url"]
                break
            except json.JSONDecodeError:
                continue
        while True:
            try:
                with urllib.request.urlopen(f"{url}/health", timeout=5) as answer:
                    if answer.status == 200:
                        return time.perf_counter() - started
            except OSError:
                if proc.poll() is not None:
                    raise RuntimeError("facetrail serve exited before answering") from None
                time.sleep(0.02)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=120)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="bench.serve_start")
    parser.add_argument("--faces", type=int, default=1_000_000, help="faces in the index (1000000)")
    parser.add_argument("--runs", type=int, default=3, help="starts measured for each index (3)")
    parser.add_argument("--output", type=Path, default=ROOT / "BENCHMARKS.md", help="markdown file to write")
    parser.add_argument("--no-output", action="store_true", help="write no markdown")
    args = parser.parse_args(argv)
    started = datetime.now(UTC)
    results: dict[int, list[float]] = {}
    with tempfile.TemporaryDirectory(prefix="facetrail-serve-") as tmp:
        for faces in (0, args.faces):
            data = Path(tmp) / f"data-{faces}"
            console.print(f"{faces:,} faces: preparing")
            prepare(data, faces)
            results[faces] = [start_once(data) for _ in range(args.runs)]
            check(data, faces)
            console.print(f"  start-up: {', '.join(f'{s:.2f}' for s in results[faces])} s")
    info = machine()
    settings = get_settings()
    model, dim = settings.vision_model, load_backend(vision_config(settings)).template_dim
    faces_gib = args.faces * dim * 4 / 2 ** 30
    body = "\n".join([
        f"Run {started:%Y-%m-%d %H:%M} UTC on {info['cpu']} ({info['cores']} cores, {info['memory']}; shared with "
        f"other work), revision {info['revision']}, vision model {model} ({dim}-value templates).",
        "",
        f"Reproduce: `.venv/bin/python -m bench.serve_start --faces {args.faces} --runs {args.runs}`",
        "",
        textwrap.fill(
            "Before its first /health answer `serve` imports its command line, opens the data directory and loads "
            "the index, in a thread of its own started before the web application is imported and built (at "
            f"{args.faces:,} faces of {dim} values the index snapshot is about {faces_gib:.1f} GiB to decrypt, "
            "straight from a read-only mapping of its file; an inverted file's template blocks are mapped ahead "
            "by another thread). The vision "
            "model is not loaded then: the first search loads it (its time is in 'Search latency over HTTP at 1M "
            "faces').",
            120, break_on_hyphens=False),
        "",
        "| index | `facetrail serve` to its first /health answer, median (s) | each run (s) |",
        "|---|---|---|",
        *[f"| {faces:,} faces | {statistics.median(runs):.2f} | {', '.join(f'{s:.2f}' for s in runs)} |"
          for faces, runs in results.items()],
        "",
    ])
    if not args.no_output:
        write_section(args.output, body, start=START, end=END)
    print(body)


if __name__ == "__main__":
    main()
