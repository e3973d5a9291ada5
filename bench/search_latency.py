"""Search latency over HTTP on a collection of a million faces, beside the same on the sample photos alone.

    .venv/bin/python -m bench.search_latency [--faces 1000000] [--searches 30] [--pipeline yunet-intel]

Two data directories are made with the same pipeline. Both hold the sample photos, ingested for real by
`facetrail ingest` (all but the query photo, obama2.jpg), and an investigator's key. The large one also holds
`--faces` synthetic faces (bench/synthetic.py, unit length like the model's templates) in a second source
registered for the same purpose, so that every search reaches them: each is a row of the store like an ingested
face (its image's row, box, quality, model) with its template sealed under its own data key, as ingestion seals
it (no crop and no image bytes are kept, as with store_images off), and the index holds them all at the store's
generation, so the server opens it as it is, with no catch-up. The faces are written by a bulk path of this
benchmark (one transaction per batch), not by ingestion: what is measured is the search, not the filling.

For each directory: `facetrail serve` is started and timed to its first /health answer; the first search is timed
alone (it loads the vision model). Then both servers are searched in turn (so that both see the same load from the
rest of the machine): `--searches` sequential `POST /v1/search` of the query photo each with the investigator's key,
after two warm-up rounds, give the HTTP p50 and p90. Every answer is checked: the search
reached every face of the collection (reach.gallery_size) and its best result is one of the sample photos of
the query's person. The vision step (decode, detect, embed of the query photo) is measured alone in this process.

Writes the section between `<!-- search-latency:start -->` and `<!-- search-latency:end -->` of the output file.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import httpx2
import numpy as np
from numpy.typing import NDArray
from rich.console import Console
from rich.progress import Progress
from sqlalchemy import func, insert, select

from bench.load import (
    PURPOSE,
    ROOT,
    SAMPLES,
    LoadTestError,
    add_source,
    cli,
    labelled_people,
    machine,
    percentile,
    pipeline_env,
    section,
    server,
    write_section,
)
from bench.synthetic import synthetic
from facetrail.runtime import Facetrail
from facetrail.store.db import bump_generation
from facetrail.store.models import Face, StoredImage
from facetrail.store.templates import open_templates, seal_template

START, END = "<!-- search-latency:start -->", "<!-- search-latency:end -->"
QUERY = "obama2.jpg"  # held out of the searched collection
QUERY_PERSON = "barack_obama"  # the best result must be a photo of him (labels.tsv)
IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png"})
FACES_PER_IMAGE = 4
BATCH = 50_000
console = Console(stderr=True)


@dataclass
class Measured:
    label: str
    faces: int
    start_s: float = 0.0
    first_ms: float = 0.0
    http_ms: list[float] = field(default_factory=list)
    results: int = 0
    stages: dict[str, list[float]] = field(default_factory=dict)


def sample_files() -> list[Path]:
    return sorted(p for p in SAMPLES.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.name != QUERY)


def make_collection(data: Path) -> tuple[str, int]:
    """The sample photos ingested for real and an investigator's key: (key, faces)."""
    cli(data, "init")
    source = add_source(data, "samples", "the sample photos")
    report = cli(data, "ingest", "--source", str(source), *map(str, sample_files()))
    if report["errors"]:
        raise LoadTestError(f"the samples did not ingest cleanly: {report['errors']}")
    key = cli(data, "user", "add", "ivy", "--role", "investigator")["api_key"]
    return str(key), int(report["faces_added"])


def unit_rows(vectors: NDArray[np.float32]) -> NDArray[np.float32]:
    """Each row scaled to length 1, as the model's templates are."""
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return (vectors / np.maximum(norms, 1e-12)).astype(np.float32)


def add_synthetic(data: Path, faces: int, *, batch: int = BATCH, seed: int = 7) -> int:
    """`faces` synthetic faces into the store and the index of `data`, in a source of their own registered for
    the benchmark's purpose; returns the faces the collection then holds."""
    source_id = add_source(data, "synthetic", "synthetic faces standing in for a large collection")
    ft = Facetrail.open(data, workers=1)
    try:
        gallery, vault = ft.gallery, ft.vault
        with ft.db.read() as session:
            next_image = int(session.scalar(select(func.coalesce(func.max(StoredImage.id), 0))) or 0) + 1
            next_face = int(session.scalar(select(func.coalesce(func.max(Face.id), 0))) or 0) + 1
            real = session.execute(select(Face.id, Face.source_id, Face.template)
                                   .where(Face.model_id == gallery.model_id, Face.restricted.is_(False))).all()
        made = unit_rows(synthetic(faces, dim=gallery.dim, probes=1, seed=seed).vectors)
        ids = np.arange(next_face, next_face + faces, dtype=np.int64)
        with Progress(console=console, transient=True) as progress:
            task = progress.add_task(f"{faces:,} synthetic faces into the store", total=faces)
            for lo in range(0, faces, batch):
                hi = min(faces, lo + batch)
                _write_batch(ft, source_id, gallery.model_id, made[lo:hi], ids[lo:hi],
                             next_image + lo // FACES_PER_IMAGE, last=hi == faces)
                progress.update(task, completed=hi)
        with ft.db.read() as session:
            from facetrail.store.db import get_generation

            generation = get_generation(session)
        console.print(f"{faces:,} synthetic faces stored; building the index")
        index = gallery.store.create()
        if real:
            index.add(np.array([r[0] for r in real], dtype=np.int64),
                      np.stack(open_templates(vault, [r[2] for r in real], gallery.dim)),
                      np.array([r[1] for r in real], dtype=np.int64))
        for lo in range(0, faces, batch):
            hi = min(faces, lo + batch)
            index.add(ids[lo:hi], made[lo:hi], np.full(hi - lo, source_id, dtype=np.int64))
        index.set_generation(generation)
        with gallery.store.writing():
            index.persist()
        return len(real) + faces
    finally:
        ft.close()


def _write_batch(ft: Facetrail, source_id: int, model_id: str, vectors: NDArray[np.float32],
                 ids: NDArray[np.int64], first_image: int, *, last: bool) -> None:
    """One transaction: the images of these faces (FACES_PER_IMAGE each), the faces with their sealed templates
    under a new data key each (durable first, as ingestion does); the last batch bumps the index generation."""
    keys = ft.vault.new_keys("face", len(ids))
    now = datetime.now(UTC)
    images = []
    faces = []
    for i, (face_id, vector, key) in enumerate(zip(ids.tolist(), vectors, keys, strict=True)):
        image_id = first_image + i // FACES_PER_IMAGE
        ordinal = i % FACES_PER_IMAGE
        if ordinal == 0:
            images.append({"id": image_id, "source_id": source_id, "sha256": f"{image_id:064x}",
                            "original_name": f"synthetic-{image_id:07d}.jpg", "size_bytes": 250_000, "width": 1280,
                            "height": 960, "format": "JPEG", "face_count": FACES_PER_IMAGE, "blob_key": None,
                            "key_id": None, "ingested_at": now, "source_version": 1})
        left = 40 + 300 * ordinal
        faces.append({"id": face_id, "image_id": image_id, "source_id": source_id, "ordinal": ordinal,
                      "box_left": left, "box_top": 200, "box_right": left + 160, "box_bottom": 380,
                      "landmarks": [[left + 50.0, 260.0], [left + 110.0, 260.0], [left + 80.0, 300.0],
                                    [left + 55.0, 340.0], [left + 105.0, 340.0]],
                      "detector": "yunet", "detector_score": 0.95, "size_px": 160, "sharpness": 120.0, "yaw": 0.0,
                      "model_id": model_id, "template": seal_template(ft.vault, key, vector), "crop_key": None,
                      "key_id": key.id, "created_at": now, "restricted": False})
    with ft.db.write() as session, session.begin():
        session.execute(insert(StoredImage), images)
        session.execute(insert(Face), faces)
        if last:
            bump_generation(session)


STAGES = ("decode", "vision", "index", "service")


def stage_times(target: Target, searches: int) -> dict[str, list[float]]:
    """The search's steps timed in this process on the same data directory (no server running): decoding the
    query photo, the vision step (detect, embed, quality of each face), the index search, and the whole
    `SearchService.search` (all of those, plus the policy checks, resolving the hits in the store and the
    audited record, committed durably). The first of each is not counted."""
    from facetrail.media.image import decode_image
    from facetrail.search.service import VIDEO_HEADROOM
    from facetrail.vision.pipeline import analyze_faces

    photo = (SAMPLES / QUERY).read_bytes()
    times: dict[str, list[float]] = {stage: [] for stage in STAGES}
    ft = Facetrail.open(target.data, workers=1)
    try:
        actor = ft.accounts.authenticate(target.key)
        allowed = ft.sources.ids_for_purpose(PURPOSE)
        backend = ft.analyzer.backend
        ft.gallery.index()
        for i in range(min(searches, 20) + 1):
            marks = [time.perf_counter()]
            pixels = decode_image(photo, max_pixels=ft.settings.max_image_pixels).pixels
            marks.append(time.perf_counter())
            faces = analyze_faces(backend, pixels, with_crops=False)
            marks.append(time.perf_counter())
            ft.gallery.search(faces[0].template, 10 * VIDEO_HEADROOM, allowed)
            marks.append(time.perf_counter())
            ft.search.search(actor, photo, purpose=PURPOSE, case_ref=f"STAGES-{i}")
            marks.append(time.perf_counter())
            if i:
                for stage, begin, end in zip(STAGES, marks[:-1], marks[1:], strict=True):
                    times[stage].append((end - begin) * 1000)
    finally:
        ft.close()
    return times


@dataclass(frozen=True)
class Target:
    label: str
    data: Path
    key: str
    faces: int


def search_once(client: httpx2.Client, photo: bytes, case: str, faces: int) -> tuple[float, int]:
    """One checked search: (its time in ms, the results it showed)."""
    start = time.perf_counter()
    response = client.post("/v1/search", files={"photo": (QUERY, photo, "image/jpeg")},
                           data={"purpose": PURPOSE, "case": case})
    elapsed = (time.perf_counter() - start) * 1000
    if response.status_code != 200:
        raise LoadTestError(f"search: HTTP {response.status_code} {response.text[:300]}")
    body = response.json()
    check_answer(body, faces)
    return elapsed, len(body["results"])


def measure(targets: list[Target], searches: int, work: Path) -> list[Measured]:
    """Each server started and timed, and its first search timed alone (it loads the vision model); then the
    servers searched in turn, one search each per round, so that both see the same load from the rest of the
    machine; two warm-up rounds are not counted."""
    photo = (SAMPLES / QUERY).read_bytes()
    results = [Measured(t.label, t.faces) for t in targets]
    with ExitStack() as stack:
        clients = []
        for target, result in zip(targets, results, strict=True):
            started = time.perf_counter()
            srv = stack.enter_context(server(target.data, work / f"server-{target.data.name}.log", timeout=600))
            result.start_s = time.perf_counter() - started
            client = stack.enter_context(httpx2.Client(base_url=srv.url, timeout=300,
                                                       headers={"Authorization": f"Bearer {target.key}"}))
            result.first_ms, result.results = search_once(client, photo, "BENCH-first", target.faces)
            clients.append(client)
        for i in range(searches + 2):
            for target, result, client in zip(targets, results, clients, strict=True):
                elapsed, result.results = search_once(client, photo, f"BENCH-{i}", target.faces)
                if i >= 2:
                    result.http_ms.append(elapsed)
    return results


def check_answer(body: dict[str, object], faces: int) -> None:
    """The search reached the whole collection and found the query's person first."""
    reach = body.get("reach")
    searched = reach.get("gallery_size") if isinstance(reach, dict) else None
    if searched != faces:
        raise LoadTestError(f"the search reached {searched} faces, not the collection's {faces:,}")
    results = body.get("results")
    best = Path(str(results[0].get("original_name", ""))).name if isinstance(results, list) and results else ""
    if QUERY_PERSON not in labelled_people().get(best, []):
        raise LoadTestError(f"the best result is {best!r}, not a photo of the query's person")


def markdown(rows: list[Measured], started: datetime, args: argparse.Namespace) -> str:
    info = machine()
    small = rows[0]
    table = ["| collection | faces | `serve` to /health (s) | first search ms | HTTP p50 ms | HTTP p90 ms | "
             "p50 vs samples alone | results |", "|---|---|---|---|---|---|---|---|"]
    for row in rows:
        p50 = percentile(row.http_ms, 50)
        table.append(f"| {row.label} | {row.faces:,} | {row.start_s:.2f} | {row.first_ms:.0f} | {p50:.1f} | "
                     f"{percentile(row.http_ms, 90):.1f} | {p50 / percentile(small.http_ms, 50):.2f}x | "
                     f"{row.results} |")
    steps = ["| collection | decode ms | vision step ms | index search ms | whole search in-process ms | rest of the "
             "search ms | HTTP and serving ms |", "|---|---|---|---|---|---|---|"]
    for row in rows:
        m = {stage: percentile(row.stages.get(stage, []), 50) for stage in STAGES}
        steps.append(f"| {row.label} | {m['decode']:.1f} | {m['vision']:.1f} | {m['index']:.1f} | {m['service']:.1f} | "
                     f"{m['service'] - m['decode'] - m['vision'] - m['index']:.1f} | "
                     f"{percentile(row.http_ms, 50) - m['service']:.1f} |")
    return section("Search latency over HTTP at 1M faces", [
        [f"`make bench-latency` (bench/search_latency.py), pipeline {args.pipeline}. Two data directories: the "
         f"sample photos ingested by `facetrail ingest` (all but the query, {QUERY}), and the same plus "
         f"{args.faces:,} synthetic faces (unit-length templates, bench/synthetic.py) in a second source registered "
         "for the same purpose: rows of the store with their templates sealed under a data key each, as ingestion "
         "seals them, and in the index at the store's generation (written by a bulk path of the benchmark, not by "
         "ingestion). For each: `facetrail serve` timed to its first /health answer, the first search timed alone "
         f"(it loads the vision model); then the two servers searched in turn, {args.searches} sequential "
         f"`POST /v1/search` of {QUERY} each with an investigator's key after two warm-up rounds, over loopback "
         "HTTP (in turn, so that both see the same load from the rest of the machine). Every answer was checked: "
         "the search reached every face of the collection, and its best result is a sample photo of the query's "
         "person."],
        table,
        ["Where the time goes: the search's steps timed in the benchmark's process on the same data directories "
         "(medians; no server running). 'Rest of the search' is the policy checks, resolving the hits in the store "
         "and the audited record, committed durably before the answer; 'HTTP and serving' is the HTTP p50 less the "
         "whole search: the upload's parsing, the key check, the answer's JSON and the loopback round trip."],
        steps,
        ["The targets: p50 under 100 ms over HTTP at 1M faces (here "
         f"{percentile(rows[-1].http_ms, 50):.1f} ms at {rows[-1].faces:,}), `serve` ready in under 3 s at 1M "
         f"(here {rows[-1].start_s:.2f} s to its first /health answer, a real store of {rows[-1].faces:,} faces "
         "behind it; `make bench-serve-start` measures the start alone, three times)."],
        ["This supersedes the search-latency table of 'Ingestion throughput and search latency', measured on the "
         "samples alone and before `serve`'s socket was fixed (Nagle's algorithm was left on: about 40 ms of every "
         "request went waiting for the client's delayed ACK)."],
        [f"Reproduce: `make bench-latency` (options: LATENCY_ARGS='--faces {args.faces} --searches "
         f"{args.searches}')."],
        [f"Run on {started:%Y-%m-%d %H:%M} UTC, revision {info['revision']}, on {info['cpu']}, {info['cores']} "
         f"cores, {info['memory']}, Python {info['python']}; the machine was shared with other work, so the figures "
         "are noisy."],
    ])


def prepared(work: Path, faces: int, pipeline: str) -> tuple[str, int, str, int]:
    """The two data directories under `work` (made, or those an earlier run left there for these arguments):
    (samples key, samples faces, large key, large faces)."""
    made = work / "prepared.json"
    wanted = {"faces": faces, "pipeline": pipeline}
    if made.exists():
        done = json.loads(made.read_text())
        if {k: done.get(k) for k in wanted} == wanted:
            console.print(f"using the data directories of {work}")
            return done["small_key"], done["small_faces"], done["large_key"], done["large_faces"]
        raise LoadTestError(f"{work} holds data directories made for {done}, not {wanted}: give another --work")
    work.mkdir(parents=True, exist_ok=True)
    console.print("the samples collection")
    small_key, small_faces = make_collection(work / "small")
    console.print(f"the {faces:,}-face collection")
    large_key, _ = make_collection(work / "large")
    large_faces = add_synthetic(work / "large", faces)
    made.write_text(json.dumps({**wanted, "small_key": small_key, "small_faces": small_faces,
                                "large_key": large_key, "large_faces": large_faces}))
    return small_key, small_faces, large_key, large_faces


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench.search_latency")
    parser.add_argument("--faces", type=int, default=1_000_000, help="synthetic faces in the large collection")
    parser.add_argument("--searches", type=int, default=30, help="timed searches per collection (30)")
    parser.add_argument("--pipeline", default="yunet-intel", help="vision pipeline (yunet-intel)")
    parser.add_argument("--output", type=Path, default=ROOT / "BENCHMARKS.md", help="markdown file to write")
    parser.add_argument("--no-output", action="store_true", help="write no markdown")
    parser.add_argument("--work", type=Path, help="keep the data directories here, and use them again when this "
                        "holds those of an earlier run with the same --faces and --pipeline (default: temporary)")
    args = parser.parse_args(argv)
    started = datetime.now(UTC)
    with pipeline_env(args.pipeline), ExitStack() as stack:
        work = args.work or Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="facetrail-latency-")))
        small_key, small_faces, large_key, large_faces = prepared(work, args.faces, args.pipeline)
        console.print("searching")
        targets = [Target("samples", work / "small", small_key, small_faces),
                   Target(f"samples + {args.faces:,} synthetic", work / "large", large_key, large_faces)]
        rows = measure(targets, args.searches, work)
        for row in rows:
            console.print(f"  {row.label}: p50 {percentile(row.http_ms, 50):.1f} ms, first {row.first_ms:.0f} ms, "
                          f"start {row.start_s:.2f} s")
        for row, target in zip(rows, targets, strict=True):
            row.stages = stage_times(target, args.searches)
    body = markdown(rows, started, args)
    if not args.no_output:
        write_section(args.output, body, start=START, end=END)
    print(body)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
