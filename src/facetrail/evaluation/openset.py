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
from collections.abc import Callable
from dataclasses import dataclass
from math import lgamma
from pathlib import Path

import faiss
import numpy as np
from numpy.typing import NDArray

from facetrail.config import Settings
from facetrail.evaluation import lfw
from facetrail.evaluation.pipelines import Templates, extract_templates
from facetrail.vision.backend import VisionConfig

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
    calibration_people = {lfw.identity(k) for k in lfw.pair_images(lfw.read_pairs(root / "pairsDevTrain.txt"))}
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


def vision_config(settings: Settings) -> VisionConfig:
    """The vision settings the product searches with (as `facetrail bench accuracy` builds them)."""
    return VisionConfig(detector=settings.detector, upsample_budget_pixels=settings.upsample_budget_pixels,
                        max_upsample=settings.max_upsample, detector_fallback=settings.detector_fallback,
                        jitters=settings.jitters, model=settings.model, max_image_pixels=settings.max_image_pixels)
