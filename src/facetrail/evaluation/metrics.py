"""Recognition metrics: 1:1 verification, open-set 1:N identification, clustering quality, band FMRs.

Distances are Euclidean template distances (smaller = more alike). A comparison involving a photo that
failed to enrol gets an infinite distance: it never matches, which is what the product does with it.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import faiss
import numpy as np
from numpy.typing import NDArray

from facetrail.evaluation.lfw import Pair, identity
from facetrail.evaluation.pipelines import Templates

FloatArray = NDArray[np.float64]


def pair_distances(templates: Templates, pairs: Sequence[Pair]) -> FloatArray:
    where = templates.index_of()
    a = templates.vectors[[where[p.a] for p in pairs]].astype(np.float64)
    b = templates.vectors[[where[p.b] for p in pairs]].astype(np.float64)
    distances = np.linalg.norm(a - b, axis=1)
    return np.where(np.isnan(distances), np.inf, distances)


@dataclass(frozen=True)
class Verification:
    accuracy_mean: float
    accuracy_std: float
    tar_at_far_1e3: float
    roc_auc: float
    thresholds: list[float]


def _best_threshold(distances: FloatArray, same: NDArray[np.bool_]) -> float:
    finite = np.unique(distances[np.isfinite(distances)])
    candidates = np.concatenate([finite, [finite[-1] + 1e-6]]) if len(finite) else np.array([0.0])
    accuracies = [np.mean((distances <= t) == same) for t in candidates]
    return float(candidates[int(np.argmax(accuracies))])


def verification(distances: FloatArray, same: NDArray[np.bool_], folds: NDArray[np.int_]) -> Verification:
    """10-fold accuracy with each fold's threshold chosen on the other nine; TAR at FAR=1e-3 and ROC AUC
    over all pairs."""
    accuracies, thresholds = [], []
    for fold in np.unique(folds):
        train, test = folds != fold, folds == fold
        threshold = _best_threshold(distances[train], same[train])
        thresholds.append(threshold)
        accuracies.append(float(np.mean((distances[test] <= threshold) == same[test])))
    impostor = np.sort(distances[~same])
    allowed = int(np.floor(1e-3 * len(impostor)))
    # The largest threshold at which at most 0.1% of different-person pairs match.
    far_threshold = impostor[allowed] - 1e-9 if allowed < len(impostor) else np.inf
    tar = float(np.mean(distances[same] <= far_threshold))
    return Verification(float(np.mean(accuracies)), float(np.std(accuracies)), tar, roc_auc(distances, same),
                        thresholds)


def roc_auc(distances: FloatArray, same: NDArray[np.bool_]) -> float:
    """Probability that a random same-person pair is closer than a random different-person pair."""
    scores = -np.where(np.isfinite(distances), distances, 1e9)
    order = np.argsort(scores, kind="mergesort")
    ranks = np.empty(len(scores), dtype=np.float64)
    sorted_scores = scores[order]
    i = 0
    while i < len(sorted_scores):  # average ranks over ties
        j = i
        while j + 1 < len(sorted_scores) and sorted_scores[j + 1] == sorted_scores[i]:
            j += 1
        ranks[order[i:j + 1]] = (i + j) / 2 + 1
        i = j + 1
    positives, negatives = int(same.sum()), int((~same).sum())
    return float((ranks[same].sum() - positives * (positives + 1) / 2) / (positives * negatives))


@dataclass(frozen=True)
class Identification:
    gallery: int
    mated_probes: int
    non_mated_probes: int
    rank1: float
    rank10: float
    fnir_at_fpir: float
    fpir: float
    threshold: float


def identification(templates: Templates, fpir: float = 0.003) -> Identification:
    """Open set over the whole data set: for each person with >= 2 enrolled photos, the first is enrolled
    and the others are mated probes; people with one photo are non-mated probes (not in the gallery).
    Rank-1/rank-10 over mated probes (a failed probe counts as a miss); FNIR at the threshold where
    `fpir` of non-mated probes return a candidate."""
    by_person: dict[str, list[int]] = {}
    for i, key in enumerate(templates.keys):
        by_person.setdefault(identity(key), []).append(i)
    enrolled = templates.enrolled
    gallery_rows: list[int] = []
    gallery_person: list[int] = []
    mated: list[tuple[int, int]] = []
    non_mated: list[int] = []
    for _person, rows in sorted(by_person.items()):
        if len(rows) == 1:
            non_mated.append(rows[0])
            continue
        first = next((r for r in rows if enrolled[r]), None)
        if first is None:
            mated.extend((r, -1) for r in rows[1:])
            continue
        gallery_rows.append(first)
        gallery_person.append(len(gallery_person))
        mated.extend((r, gallery_person[-1]) for r in rows if r != first)
    index = faiss.IndexFlatL2(templates.vectors.shape[1])
    index.add(np.ascontiguousarray(templates.vectors[gallery_rows]))
    k = 10

    def top(rows: list[int]) -> tuple[NDArray[np.float32], NDArray[np.int64]]:
        queries = np.nan_to_num(templates.vectors[rows], nan=0.0)
        dist, labels = index.search(np.ascontiguousarray(queries), k)
        dist = np.sqrt(np.maximum(dist, 0))
        dist[~enrolled[rows]] = np.inf
        return dist, labels

    mated_rows = [r for r, _ in mated]
    mated_truth = np.array([p for _, p in mated])
    m_dist, m_labels = top(mated_rows)
    n_dist, _ = top(non_mated)
    hit_rank1 = (m_labels[:, 0] == mated_truth) & np.isfinite(m_dist[:, 0])
    hit_rank10 = ((m_labels == mated_truth[:, None]) & np.isfinite(m_dist)).any(axis=1)
    non_mated_top = np.sort(n_dist[:, 0])
    allowed = int(np.floor(fpir * len(non_mated_top)))
    threshold = float(non_mated_top[allowed] - 1e-9) if allowed < len(non_mated_top) else float("inf")
    fnir = float(np.mean(~(hit_rank1 & (m_dist[:, 0] <= threshold))))
    return Identification(len(gallery_rows), len(mated_rows), len(non_mated), float(hit_rank1.mean()),
                          float(hit_rank10.mean()), fnir, fpir, threshold)


def impostor_distances(templates: Templates, keys: Sequence[str]) -> FloatArray:
    """Distances of every pair of enrolled photos of different people among `keys`."""
    where = templates.index_of()
    rows = [where[k] for k in keys if templates.enrolled[where[k]]]
    vectors = templates.vectors[rows].astype(np.float64)
    people = np.array([identity(templates.keys[r]) for r in rows])
    out = []
    for start in range(0, len(rows), 512):
        block = vectors[start:start + 512]
        d2 = (block ** 2).sum(1)[:, None] + (vectors ** 2).sum(1)[None, :] - 2 * block @ vectors.T
        dist = np.sqrt(np.maximum(d2, 0))
        upper = np.arange(len(rows))[None, :] > np.arange(start, start + len(block))[:, None]
        different = people[start:start + len(block)][:, None] != people[None, :]
        out.append(dist[upper & different])
    return np.concatenate(out) if out else np.array([], dtype=np.float64)


@dataclass(frozen=True)
class ClusterQuality:
    clusters: int
    people: int
    pairwise_precision: float
    pairwise_recall: float
    pairwise_f: float
    bcubed_precision: float
    bcubed_recall: float
    bcubed_f: float


def cluster_quality(labels: Sequence[int], truth: Sequence[str]) -> ClusterQuality:
    """Pairwise precision/recall (over pairs of items put together / truly together) and BCubed."""
    pairs_cluster = Counter(labels)
    pairs_truth = Counter(truth)
    joint = Counter(zip(labels, truth, strict=True))

    def pairs(counter: Counter[Any]) -> int:
        return sum(n * (n - 1) // 2 for n in counter.values())

    together, same_person, both = pairs(pairs_cluster), pairs(pairs_truth), pairs(joint)
    precision = both / together if together else 1.0
    recall = both / same_person if same_person else 1.0
    n = len(labels)
    b_precision = sum(joint[(c, t)] / pairs_cluster[c] for c, t in zip(labels, truth, strict=True)) / n
    b_recall = sum(joint[(c, t)] / pairs_truth[t] for c, t in zip(labels, truth, strict=True)) / n
    return ClusterQuality(len(pairs_cluster), len(pairs_truth), precision, recall, _f(precision, recall),
                          b_precision, b_recall, _f(b_precision, b_recall))


def band_fmrs(impostors: FloatArray, thresholds: dict[str, float]) -> dict[str, float]:
    """Measured false-match rate at each band's distance threshold."""
    return {band: float(np.mean(impostors <= t)) for band, t in thresholds.items()}


def _f(p: float, r: float) -> float:
    return 2 * p * r / (p + r) if p + r else 0.0
