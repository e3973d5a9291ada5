"""Video ingestion speed on the shared clips (`make bench-video`): frames decoded and analysed per second, and the
real-time factor (seconds of video ingested per second of work).

For each clip of ../shared/data/videos: decoding alone (every frame decoded, the sampled ones converted to RGB,
nothing analysed), then a whole ingestion into a fresh data directory through the Python API, as `facetrail
ingest` does: sampled frames analysed (detection, templates, crops), faces followed into tracks, key frames and
templates stored, sealed and indexed. The baseline, in the same run, is the naive policy the sampling replaces:
every frame analysed (`video_sample_fps` at the clip's frame rate), on one clip (--baseline-clip) to keep the run
short; its ratio says what sampling saves.

    .venv/bin/python -m bench.video [--clips DIR] [--sample-fps 2] [--baseline-clip WDA_KatieHill_000.mp4]

Writes the section between `<!-- video:start -->` and `<!-- video:end -->` of the output file (BENCHMARKS.md).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from bench.load import ROOT, machine, run_line, section, write_section
from facetrail.media.video import VideoLimits, VideoReader
from facetrail.runtime import Facetrail, local_actor
from facetrail.sources.inputs import from_paths

START, END = "<!-- video:start -->", "<!-- video:end -->"
CLIPS = ROOT.parent / "shared" / "data" / "videos"


@dataclass(frozen=True)
class Run:
    clip: str
    duration_s: float
    frames_decoded: int
    decode_s: float
    frames_analysed: int
    faces: int
    tracks: int
    templates: int
    ingest_s: float
    sample_fps: float

    @property
    def decoded_per_s(self) -> float:
        return self.frames_decoded / self.decode_s

    @property
    def analysed_per_s(self) -> float:
        return self.frames_analysed / self.ingest_s

    @property
    def realtime(self) -> float:
        return self.duration_s / self.ingest_s


def decode_only(clip: Path, sample_fps: float) -> tuple[int, float]:
    started = time.perf_counter()
    reader = VideoReader(clip.read_bytes(), VideoLimits(sample_fps=sample_fps))
    decoded = [0]

    def seen(done: int, _total: int) -> None:
        decoded[0] = done

    try:
        for _frame in reader.frames(seen):
            pass
    finally:
        reader.close()
    return decoded[0], time.perf_counter() - started


def measure(clip: Path, work: Path, sample_fps: float) -> Run:
    frames, decode_s = decode_only(clip, sample_fps)
    ft = Facetrail.open(work / f"data-{clip.stem}-{sample_fps:g}", create=True, workers=1,
                        video_sample_fps=sample_fps)
    try:
        source = ft.sources.add(local_actor(), name="bench", controller="bench", purposes=["bench"],
                                legal_basis="consent", art9_condition="a", evidence_ref="none: a benchmark",
                                jurisdictions=["FR"], retention_days=1)
        ft.analyzer.video_backend.model_id  # noqa: B018 (models loaded before the clock starts)
        started = time.perf_counter()
        report = ft.ingest.ingest(local_actor(), source.id, from_paths([clip], ft.input_limits))
        ingest_s = time.perf_counter() - started
    finally:
        ft.close()
    if report.errors or not report.videos:
        raise SystemExit(f"{clip.name}: {report.errors}")
    v = report.videos[0]
    return Run(clip.name, v.duration_s, frames, decode_s, v.frames_analysed, v.faces_detected, v.tracks,
               v.templates_kept, ingest_s, sample_fps)


def markdown(runs: list[Run], baseline: Run, sampled: Run, started: datetime) -> str:
    m = machine()
    prose = [
        "`make bench-video` (`.venv/bin/python -m bench.video`) ingests each clip of ../shared/data/videos into a "
        "fresh data directory through the Python API, one vision process, at the default sampling "
        f"({runs[0].sample_fps:g} frames a second plus the first frame of each shot). *Decoded* is decoding alone "
        "(every frame decoded, the sampled ones converted to RGB); *ingestion* is the whole of it: decoding, "
        "detection, templates and crops of the sampled frames, tracking, and the key frames and templates stored "
        "(sealed) and indexed. Real-time factor: seconds of video per second of ingestion (above 1: faster than "
        "the video plays).",
    ]
    table = [
        "| clip | length | frames | decoded | frames analysed | analysed | faces | tracks | templates kept "
        "| ingestion | real-time factor |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    table += [f"| {r.clip} | {r.duration_s:.1f} s | {r.frames_decoded} | {r.decoded_per_s:.0f} frames/s | "
              f"{r.frames_analysed} | {r.analysed_per_s:.1f} frames/s | {r.faces} | {r.tracks} | {r.templates} | "
              f"{r.ingest_s:.1f} s | {r.realtime:.2f}x |" for r in runs]
    after = [
        f"Baseline in the same run: every frame of {baseline.clip} analysed ({baseline.frames_analysed} frames): "
        f"{baseline.ingest_s:.1f} s, {baseline.analysed_per_s:.1f} frames/s, real-time factor "
        f"{baseline.realtime:.2f}x, {baseline.tracks} track(s) and {baseline.templates} template(s) kept. Sampling "
        f"makes the ingestion of that clip **{baseline.ingest_s / sampled.ingest_s:.1f}x** faster "
        f"({sampled.ingest_s:.1f} s) for {sampled.tracks} track(s) and {sampled.templates} template(s) kept.",
        "",
        run_line(started, m),
    ]
    return section("Video ingestion", [prose, table, after])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench.video", description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--clips", type=Path, default=CLIPS, help="folder of video clips (../shared/data/videos)")
    parser.add_argument("--sample-fps", type=float, default=2.0, help="frames analysed per second (2)")
    parser.add_argument("--baseline-clip", default="WDA_KatieHill_000.mp4", help="clip analysed frame by frame")
    parser.add_argument("--output", type=Path, default=ROOT / "BENCHMARKS.md", help="markdown file to update")
    parser.add_argument("--no-output", action="store_true", help="write no markdown")
    args = parser.parse_args(argv)
    started = datetime.now(UTC)
    clips = sorted(p for p in args.clips.iterdir() if p.suffix.lower() in {".mp4", ".mov", ".mkv", ".webm", ".avi"})
    if not clips:
        raise SystemExit(f"no video clip in {args.clips}")
    runs = []
    with tempfile.TemporaryDirectory(prefix="facetrail-bench-video-") as work:
        for clip in clips:
            run = measure(clip, Path(work), args.sample_fps)
            print(f"{run.clip}: decoded {run.decoded_per_s:.0f} frames/s, analysed {run.analysed_per_s:.1f} frames/s,"
                  f" real-time factor {run.realtime:.2f}x, {run.tracks} track(s)", flush=True)
            runs.append(run)
        sampled = next(r for r in runs if r.clip == args.baseline_clip)
        fps = round(sampled.frames_decoded / sampled.duration_s)
        baseline = measure(args.clips / args.baseline_clip, Path(work), float(fps))
        print(f"baseline, every frame of {baseline.clip}: {baseline.ingest_s:.1f} s "
              f"({baseline.ingest_s / sampled.ingest_s:.1f}x the sampled ingestion)", flush=True)
    if not args.no_output:
        write_section(args.output, markdown(runs, baseline, sampled, started), start=START, end=END)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
