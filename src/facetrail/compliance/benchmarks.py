"""The model's measured accuracy from BENCHMARKS.md (written by `facetrail bench accuracy`), when it is there.

Only the rows of facetrail's own pipeline for the model in use are taken; a file that is missing (an
installed package ships none) or that holds another model gives None, never a guess.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import facetrail

BENCHMARKS = Path(facetrail.__file__).resolve().parents[2] / "BENCHMARKS.md"
BLOCK = re.compile(r"<!-- accuracy:begin -->(.*?)<!-- accuracy:end -->", re.S)
PIPELINES_BLOCK = re.compile(r"<!-- vision-pipelines:begin -->(.*?)<!-- vision-pipelines:end -->", re.S)
"""The other vision pipelines' full tables (`facetrail bench accuracy --pipeline`), each row named by pipeline."""


@dataclass(frozen=True)
class BandMeasure:
    band: str
    target_fmr: str
    threshold: str
    measured_fmr: str


@dataclass(frozen=True)
class Benchmark:
    run: str
    verification_accuracy: str
    tar_at_far_1e3: str
    roc_auc: str
    failed_to_enrol: str
    rank1: str | None
    fnir_at_fpir: str | None
    bands: tuple[BandMeasure, ...]
    file: str


def read_benchmark(model_id: str, path: Path = BENCHMARKS) -> Benchmark | None:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError:
        return None
    for block in (BLOCK, PIPELINES_BLOCK):
        match = block.search(text)
        if match is None:
            continue
        lines = match.group(1).strip().splitlines()
        rows = [[c.strip() for c in line.strip().strip("|").split("|")] for line in lines if line.startswith("| ")]
        verification = next((r for r in rows if len(r) == 7 and r[1] == model_id), None)
        if verification is not None:
            return _measures(lines, [r for r in rows if r[0] == verification[0]], verification, model_id, path)
    return None


def _measures(lines: list[str], rows: list[list[str]], verification: list[str], model_id: str,
              path: Path) -> Benchmark:
    identification = next((r for r in rows if len(r) == 7 and r[1] != model_id and r[1].isdigit()), None)
    bands = tuple(BandMeasure(r[1], r[2], r[3], r[4]) for r in rows if len(r) == 6)
    return Benchmark(run=lines[0] if lines else "", verification_accuracy=verification[2],
                     tar_at_far_1e3=verification[3], roc_auc=verification[4], failed_to_enrol=verification[5],
                     rank1=identification[4] if identification else None,
                     fnir_at_fpir=identification[6] if identification else None, bands=bands, file=path.name)
