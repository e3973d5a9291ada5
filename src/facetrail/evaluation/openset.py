"""1:N open-set evaluation on LFW: the false-positive identification rate (FPIR) against the false-negative
identification rate (FNIR) at several gallery sizes, the NIST FRTE 1:N figures.

The protocol (`select`): people are drawn (seeded) from LFW, leaving out everyone in View 1 train, whose
photos calibrated the bands. *Enrolled* people have two or more photos: the first is their one gallery photo,
the second a *mated probe*. *Non-mated probes* are the photos of people with one photo, never enrolled. The
gallery grows beyond the enrolled people with *distractors* (evaluation/distractors.py), so that the same
probes are searched in galleries of 1k, 10k, 100k and 1M faces.

- FPIR: the share of non-mated searches that return anyone at or below the threshold (a stranger shown).
- FNIR: the share of mated searches whose mate is not returned at or below the threshold within the top
  `k` (the person missed); a probe that failed to enrol counts as missed.

`expected_fpir` measures the FPIR of galleries of N strangers from a pool of non-mated photos without drawing
them: the exact expectation over every gallery of N drawn from the pool (the average over all draws).
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from math import lgamma
from pathlib import Path

import faiss
import numpy as np
from numpy.typing import NDArray

from facetrail.evaluation import lfw
from facetrail.evaluation.distractors import FaceModel, comparison_fmr
from facetrail.evaluation.pipelines import Templates, extract_templates
from facetrail.vision.backend import VisionConfig
from facetrail.vision.calibration import Band, Calibration

Progress = Callable[[int, int], None]
CHUNK = 250  # photos per cached file of templates


@dataclass(frozen=True)
class OpenSetKeys:
    """Image keys: `gallery[i]` and `mated[i]` are two photos of one enrolled person; `non_mated` one photo
    each of people never enrolled."""

    gallery: list[str]
    mated: list[str]
    non_mated: list[str]


def select(root: Path, *, enrolled: int, non_mated: int, seed: int = 0) -> OpenSetKeys:
    """Draw `enrolled` people with >= 2 photos and `non_mated` people with one photo, none of them in View 1
    train (the calibration data). Raises ValueError if LFW holds fewer."""
    photos: dict[str, list[str]] = {}
    for key in lfw.all_images(root):
        photos.setdefault(lfw.identity(key), []).append(key)
    if not photos:
        raise ValueError(f"{root / 'images'}: no LFW images found")
    train = root / "pairsDevTrain.txt"
    if not train.is_file():
        raise ValueError(f"{train}: missing (View 1 train: its people calibrated the bands, so they are left out)")
    calibration_people = {lfw.identity(k) for k in lfw.pair_images(lfw.read_pairs(train))}
    several = sorted(p for p, keys in photos.items() if len(keys) >= 2 and p not in calibration_people)
    single = sorted(p for p, keys in photos.items() if len(keys) == 1 and p not in calibration_people)
    if enrolled > len(several) or non_mated > len(single):
        raise ValueError(f"{root}: asked for {enrolled} enrolled and {non_mated} non-mated people; outside View 1 "
                         f"train LFW holds {len(several)} people with several photos and {len(single)} with one")
    # Shuffled once, then the first ones taken: a larger draw extends a smaller one (and reuses its templates).
    random.Random(seed).shuffle(several)
    random.Random(seed + 1).shuffle(single)
    chosen, strangers = several[:enrolled], single[:non_mated]
    return OpenSetKeys(gallery=[photos[p][0] for p in chosen], mated=[photos[p][1] for p in chosen],
                       non_mated=[photos[p][0] for p in strangers])


def templates_for(root: Path, keys: list[str], *, config: VisionConfig, model_id: str, workers: int,
                  cache: Path | None, progress: Progress | None = None) -> Templates:
    """facetrail's templates of these LFW photos, cached on disk by model, settings and files in chunks of
    `CHUNK`, so that a larger draw reuses a smaller one's."""
    root = root.resolve()  # the cache key holds the paths: the same photos, however the folder was named
    parts: list[Templates] = []
    for start in range(0, len(keys), CHUNK):
        chunk = keys[start:start + CHUNK]
        report = None if progress is None else (lambda done, _total, s=start: progress(s + done, len(keys)))
        parts.append(extract_templates("facetrail", [lfw.image_path(root, k) for k in chunk], chunk,
                                       config=config, model_id=model_id, workers=workers, cache=cache,
                                       progress=report))
    if not parts:
        raise ValueError("no photos to compute templates of")
    return Templates("facetrail", model_id, list(keys), np.concatenate([p.vectors for p in parts]),
                     [d for p in parts for d in p.detectors])


def nearest(gallery: NDArray[np.float32], probes: NDArray[np.float32], k: int) -> tuple[NDArray[np.float64],
                                                                                    NDArray[np.int64]]:
    """Exact k nearest gallery rows of each probe: (distances, row numbers); a NaN probe (failed to enrol) gets
    infinite distances."""
    index = faiss.IndexFlatL2(gallery.shape[1])
    index.add(np.ascontiguousarray(gallery, dtype=np.float32))
    failed = np.isnan(probes).any(axis=1)
    d2, rows = index.search(np.ascontiguousarray(np.nan_to_num(probes, nan=0.0), dtype=np.float32), k)
    distances = np.sqrt(np.maximum(d2.astype(np.float64), 0.0))
    distances[failed] = np.inf
    return distances, rows.astype(np.int64)


def pairwise_distances(vectors: NDArray[np.float32]) -> NDArray[np.float64]:
    """Distances between every two rows (the diagonal and failed rows: infinite)."""
    v = np.nan_to_num(vectors.astype(np.float64), nan=0.0)
    sq = (v ** 2).sum(axis=1)
    out = np.sqrt(np.maximum(sq[:, None] + sq[None, :] - 2 * v @ v.T, 0.0))
    failed = np.isnan(vectors).any(axis=1)
    out[failed, :] = np.inf
    out[:, failed] = np.inf
    np.fill_diagonal(out, np.inf)
    return out


def expected_fpir(distances: NDArray[np.float64], threshold: float, gallery_size: int) -> float:
    """FPIR of galleries of `gallery_size` strangers drawn from a pool, each pool photo in turn the probe.

    `distances` is the pool's square distance matrix (`pairwise_distances`). For a probe with k of the other
    M pool photos within `threshold`, a gallery of N drawn from those M shows a stranger unless it misses all
    k: probability 1 - C(M - k, N) / C(M, N). The mean over probes is the FPIR averaged over every gallery."""
    m = distances.shape[0] - 1
    if not 1 <= gallery_size <= m:
        raise ValueError(f"gallery size {gallery_size} must be 1-{m} for a pool of {m + 1} photos")
    close = (distances <= threshold).sum(axis=1)

    def log_choose(n: int, r: int) -> float:
        return lgamma(n + 1) - lgamma(r + 1) - lgamma(n - r + 1)

    missed = [0.0 if m - k < gallery_size else float(np.exp(log_choose(m - k, gallery_size)
                                                            - log_choose(m, gallery_size))) for k in close]
    return float(1.0 - np.mean(missed))


# -- the benchmark: FPIR and FNIR at several gallery sizes --------------------------------------------------------
K = 10  # results a search returns by default: a mate further down counts as missed


@dataclass(frozen=True)
class Row:
    gallery_size: int
    distractors: int
    threshold_name: str
    threshold: float
    predicted_fpir: float  # 1 - (1 - FMR)^N from the calibration
    fpir: float  # measured on the non-mated probes
    false_alarms: int
    fnir: float  # measured on the mated probes
    extrapolated: bool


@dataclass(frozen=True)
class Pooled:
    gallery_size: int
    threshold: float
    close_pairs: int
    fpir: float


@dataclass
class OpenSetRun:
    model_id: str
    enrolled: int
    non_mated: int
    failed_to_enrol: int
    target_fpir: float
    rows: list[Row]
    pooled: list[Pooled]
    distractor_fmr: dict[str, tuple[float, float]]  # band -> (real strangers, synthetic distractors)
    seconds: float


def thresholds_at(calibration: Calibration, gallery_size: int, target_fpir: float) -> list[tuple[str, float]]:
    """The automatic threshold at this size (as search/reach.py picks it) and each band's fixed one."""
    auto = min(calibration.gallery_threshold(target_fpir, gallery_size), calibration.threshold(Band.POSSIBLE))
    return [(f"auto (FPIR {target_fpir:g})", auto),
            *((b.value, calibration.threshold(b)) for b in (Band.POSSIBLE, Band.PROBABLE, Band.STRONG))]


def run(root: Path, *, sizes: list[int], enrolled: int, non_mated: int, config: VisionConfig, model_id: str,
        calibration: Calibration, target_fpir: float, workers: int, cache: Path | None, seed: int = 0,
        progress: Progress | None = None, status: Callable[[str], None] | None = None) -> OpenSetRun:
    """Templates of the drawn LFW photos, then, for each gallery size, the enrolled people plus distractors
    searched with every probe."""
    started = time.perf_counter()
    if not sizes or min(sizes) < enrolled:
        raise ValueError(f"gallery size {min(sizes, default=0)} is smaller than the {enrolled} enrolled faces")
    keys = select(root, enrolled=enrolled, non_mated=non_mated, seed=seed)
    parts = []
    done = 0
    total = 2 * enrolled + non_mated
    for group in (keys.gallery, keys.mated, keys.non_mated):  # each its own cache files, so that draws share them
        report = None if progress is None else (lambda n, _t, before=done: progress(before + n, total))
        parts.append(templates_for(root, group, config=config, model_id=model_id, workers=workers, cache=cache,
                                   progress=report).vectors)
        done += len(group)
    gallery, mated, strangers = parts
    enrolled_ok = ~np.isnan(gallery).any(axis=1)
    real_gallery = gallery[enrolled_ok]
    real_rows = np.flatnonzero(enrolled_ok)  # gallery row -> enrolled person (a failed one has no gallery face)
    model = FaceModel.fit(gallery, gallery, mated)
    rows: list[Row] = []
    for size in sorted(set(sizes)):
        extra = size - len(real_gallery)  # >= 0: a photo that failed to enrol is replaced by a distractor
        if status:
            status(f"gallery of {size:,} faces ({extra:,} synthetic distractors)")
        faces = real_gallery if extra == 0 else np.concatenate([real_gallery, model.sample(extra, seed=seed + 7)])
        m_dist, m_rows = nearest(faces, mated, K)
        n_dist, _ = nearest(faces, strangers, 1)
        del faces
        mate_row = np.full(enrolled, -1, dtype=np.int64)
        mate_row[real_rows] = np.arange(len(real_rows))
        is_mate = m_rows == mate_row[:, None]
        for name, t in thresholds_at(calibration, size, target_fpir):
            alarms = int((n_dist[:, 0] <= t).sum())
            found = (is_mate & (m_dist <= t)).any(axis=1)
            fmr = calibration.fmr(t)
            rows.append(Row(size, extra, name, t, calibration.fpir(t, size), alarms / len(strangers), alarms,
                            float(1.0 - found.mean()), fmr < calibration.measured_fmr))
    pool = pairwise_distances(strangers)
    pooled = []
    for n in sorted({10, 100, 1000, len(strangers) - 1}):
        if n < len(strangers):
            t = min(calibration.gallery_threshold(target_fpir, n), calibration.threshold(Band.POSSIBLE))
            pooled.append(Pooled(n, t, int((pool <= t).sum() // 2), expected_fpir(pool, t, n)))
    upper = pool[np.triu_indices(len(pool), 1)]
    synthetic = model.sample(min(20_000, max(1000, 2_000_000 // max(1, len(strangers)))), seed=seed + 11)
    distractor_fmr = {b.value: (float(np.mean(upper <= calibration.threshold(b))),
                                comparison_fmr(strangers, synthetic, calibration.threshold(b), limit=len(upper)))
                      for b in (Band.POSSIBLE, Band.PROBABLE, Band.STRONG)}
    failed = sum(int(np.isnan(v).any(axis=1).sum()) for v in parts)
    return OpenSetRun(model_id, enrolled, len(strangers), failed, target_fpir, rows, pooled, distractor_fmr,
                      time.perf_counter() - started)


def report(result: OpenSetRun, *, command: str, machine: str) -> str:
    """The Markdown block of BENCHMARKS.md's section, between its markers."""
    lines = [
        f"Run {datetime.now(UTC):%Y-%m-%d %H:%M} UTC on {machine}, model {result.model_id}, "
        f"{result.seconds:.0f} s.", "", f"Reproduce: `{command}`", "",
        f"LFW, people outside View 1 train (the calibration data): {result.enrolled} enrolled people with one "
        f"gallery photo each and one mated probe each (another photo of them); {result.non_mated} non-mated probes "
        f"(people with one photo, never enrolled); {result.failed_to_enrol} photos failed to enrol (a failed probe "
        "is a miss). Beyond the enrolled faces the gallery holds synthetic distractors "
        "(evaluation/distractors.py). FPIR: share of non-mated searches returning anyone at or below the "
        f"threshold; FNIR: share of mated searches whose mate is not among the top {K} at or below it. "
        "Predicted FPIR: 1 - (1 - FMR)^N from the calibration.", "",
        "| gallery | distractors | threshold | distance | predicted FPIR | measured FPIR (false alarms) | FNIR |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in result.rows:
        guess = " (extrapolated)" if r.extrapolated else ""
        lines.append(f"| {r.gallery_size:,} | {r.distractors:,} | {r.threshold_name} | {r.threshold:.4f}{guess} | "
                     f"{r.predicted_fpir:.2%} | {r.fpir:.2%} ({r.false_alarms}) | {r.fnir:.2%} |")
    lines += ["", f"Real strangers only: the {result.non_mated} non-mated photos as a pool, each in turn the probe "
              "and galleries of N of the others (the exact mean over every such gallery), at the automatic "
              "threshold for N:", "",
              "| N | threshold | pairs at or below it | measured FPIR | target |", "|---|---|---|---|---|"]
    for p in result.pooled:
        lines.append(f"| {p.gallery_size:,} | {p.threshold:.4f} | {p.close_pairs} | {p.fpir:.2%} | "
                     f"{result.target_fpir:.2%} |")
    lines += ["", "How often one comparison with a synthetic distractor matches a real probe, against one with a real "
              "stranger (the non-mated photos among themselves), at each band's threshold:", "",
              "| band | FMR, real strangers | FMR, synthetic distractors | ratio |", "|---|---|---|---|"]
    for band, (real, synthetic) in result.distractor_fmr.items():
        ratio = f"{synthetic / real:.2f}" if real else "-"
        lines.append(f"| {band} | {real:.2e} | {synthetic:.2e} | {ratio} |")
    return "\n".join(lines) + "\n"


def write_section(path: Path, body: str) -> None:
    """Replace the block between the fpir markers of BENCHMARKS.md (or append the section with them)."""
    text = path.read_text() if path.exists() else "# Benchmarks\n"
    block = f"{BEGIN}\n{body}{END}"
    if BEGIN in text and END in text:
        text = text[: text.index(BEGIN)] + block + text[text.index(END) + len(END):]
    else:
        text = text.rstrip("\n") + f"\n\n## 1:N bands (FPIR/FNIR)\n\n{block}\n"
    path.write_text(text)


BEGIN, END = "<!-- fpir:begin -->", "<!-- fpir:end -->"
