"""Zip ingestion time against the number of members (`make bench-zip`): it must grow linearly.

For each size N (1,000 to 20,000 by default), a zip archive of N tiny distinct members named like photos (a few
bytes each: every one is read, hashed, sent to a vision process and reported as not an image) is ingested into a
fresh data directory through the Python API, as `facetrail ingest` does (default vision processes). The time of
the ingestion alone (not the opening of the data directory), less the fixed cost of an ingestion (measured on a
one-member archive), is divided by N: with linear cost the time per member stays flat, and the ratio of the
largest size's to the smallest's stays at or under 1 (it was 2.5 from 1,000 to 4,000 members, 20 ms to 50 ms per
member, when every member re-opened the archive).

    .venv/bin/python -m bench.zip_members [--sizes 1000 2000 5000 10000 20000] [--output BENCHMARKS.md]

Writes the section between `<!-- zip:start -->` and `<!-- zip:end -->` of the output file; exits 1 when the ratio
is over --max-ratio (2.0).
"""

from __future__ import annotations

import argparse
import tempfile
import time
import zipfile
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from bench.load import ROOT, machine, run_line, section, write_section
from facetrail.runtime import Facetrail, local_actor
from facetrail.sources.inputs import from_paths

START, END = "<!-- zip:start -->", "<!-- zip:end -->"
SIZES = (1_000, 2_000, 5_000, 10_000, 20_000)


@dataclass(frozen=True)
class Run:
    members: int
    archive_bytes: int
    seconds: float
    errors: int

    @property
    def per_member_ms(self) -> float:
        return 1000 * self.seconds / self.members


def make_archive(path: Path, members: int) -> None:
    with zipfile.ZipFile(path, "w") as archive:
        for i in range(members):
            archive.writestr(f"event/{i // 1000:02d}/photo-{i:05d}.jpg", str(i).encode())


def measure(members: int, work: Path) -> Run:
    archive = work / f"members-{members}.zip"
    make_archive(archive, members)
    ft = Facetrail.open(work / f"data-{members}", create=True, max_zip_members=max(members, 1))
    try:
        source = ft.sources.add(local_actor(), name="bench", controller="bench", purposes=["bench"],
                                legal_basis="consent", art9_condition="a", evidence_ref="none: a benchmark",
                                jurisdictions=["FR"], retention_days=1)
        started = time.perf_counter()
        report = ft.ingest.ingest(local_actor(), source.id, from_paths([archive], ft.input_limits))
        seconds = time.perf_counter() - started
    finally:
        ft.close()
    if report.items != members:
        raise SystemExit(f"expected {members} items, the batch had {report.items}")
    return Run(members, archive.stat().st_size, seconds, len(report.errors))


def per_member_net_ms(run: Run, startup: Run) -> float:
    """Time per member once the fixed cost of an ingestion (measured on a one-member archive) is taken out."""
    return 1000 * max(run.seconds - startup.seconds, 0.0) / run.members


def markdown(runs: list[Run], startup: Run, ratio: float, started: datetime) -> str:
    m = machine()
    prose = [
        "`make bench-zip` (`.venv/bin/python -m bench.zip_members`) ingests a zip of N tiny distinct members named "
        "like photos (each is read, hashed, analysed in a vision process and reported as not an image) into a fresh "
        "data directory through the Python API, with the default vision processes. The time is the ingestion's "
        "alone. Before the fix every member re-opened the archive (parsing its whole directory): the command line "
        "took 20 / 54 / 198 s for 1,000 / 2,000 / 4,000 members (20, 27 and 50 ms per member).",
        "",
        f"Each ingestion also pays a fixed cost, mostly starting the vision processes: {startup.seconds:.1f} s for "
        "an archive of one member in this run. The last column takes it out.",
    ]
    table = [
        "| members | archive | ingestion | per member | per member, fixed cost taken out | errors reported |",
        "|---:|---:|---:|---:|---:|---:|",
    ]
    table += [f"| {r.members:,} | {r.archive_bytes / 1e6:.1f} MB | {r.seconds:.1f} s | {r.per_member_ms:.2f} ms | "
              f"{per_member_net_ms(r, startup):.2f} ms | {r.errors:,} |" for r in runs]
    after = [
        f"Time per member at {runs[-1].members:,} over that at {runs[0].members:,}, fixed cost taken out: "
        f"**{ratio:.2f}** (1 = linear, above 1 = worse; it was 2.5 from 1,000 to 4,000 members before the fix); with "
        f"the fixed cost in: {runs[-1].per_member_ms / runs[0].per_member_ms:.2f}.",
        "",
        run_line(started, m),
    ]
    return section("Zip archives: ingestion time against the number of members", [prose, table, after])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench.zip_members", description=__doc__.split("\n\n")[0] if __doc__
                                     else None)
    parser.add_argument("--sizes", type=int, nargs="+", default=list(SIZES), help="member counts")
    parser.add_argument("--output", type=Path, default=ROOT / "BENCHMARKS.md", help="markdown file to update")
    parser.add_argument("--no-output", action="store_true", help="write no markdown")
    parser.add_argument("--max-ratio", type=float, default=2.0, help="fail above this per-member time ratio")
    args = parser.parse_args(argv)
    started = datetime.now(UTC)
    runs = []
    with tempfile.TemporaryDirectory(prefix="facetrail-bench-zip-") as work:
        startup = measure(1, Path(work))
        for members in sorted(args.sizes):
            run = measure(members, Path(work))
            print(f"{run.members:>7,} members: {run.seconds:7.1f} s, {run.per_member_ms:.2f} ms per member",  # noqa: T201 (a command's output)
                  flush=True)
            runs.append(run)
    ratio = per_member_net_ms(runs[-1], startup) / max(per_member_net_ms(runs[0], startup), 1e-6)
    print(f"fixed cost {startup.seconds:.1f} s; per-member time ratio {runs[-1].members:,} / {runs[0].members:,} "  # noqa: T201 (output)
          f"without it: {ratio:.2f}")
    if not args.no_output:
        write_section(args.output, markdown(runs, startup, ratio, started), start=START, end=END)
    return 0 if ratio <= args.max_ratio else 1


if __name__ == "__main__":
    raise SystemExit(main())
