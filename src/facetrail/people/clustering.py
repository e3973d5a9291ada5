"""Grouping face templates into identities, incrementally and without chaining.

The rule: two groups of faces may become one only if at least `min_support` (half, by default) of
the pairs between them are within `threshold` (a Euclidean template distance). A single face joins
a person of n faces only if it is within the threshold of at least half of them; two groups of 3
merge only if at least 5 of their 9 cross pairs are that close. Among the merges the rule allows, the
closest goes first: closeness is the *capped mean distance* over all cross pairs (a pair beyond the
threshold counts as the threshold), i.e. average linkage, run until no allowed merge is left.

Why this resists chaining: single linkage (join if *any* pair is close) fuses two people through a
chain of near neighbours (A near B, B near C, C near a sibling of A ...) or through the few close
pairs two look-alikes always have. Here a merge needs the agreement of a share of *all* cross pairs,
so a bridging face, a string of them, or a tail of close pairs between siblings is outvoted by the
many pairs that are not close.

Incremental use (`assign_faces`): existing people enter as fixed groups. New faces may join them or
form new groups, but two existing people are never merged and known faces never move, so earlier
runs and the operator's names, merges and splits stand. The batch entry point (`cluster_templates`)
is the same algorithm with no existing people.

Only pairs within the threshold are ever stored (a sparse graph computed block by block), so memory
follows the number of close pairs, not the square of the number of faces. Everything here is pure:
numpy arrays in, arrays out, no store and no index.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from facetrail.errors import InvalidValueError
from facetrail.vision.calibration import Band, load_calibration

MIN_SUPPORT = 0.5
"""Two groups merge only if at least this share of the pairs between them are within the threshold."""

# Clustering compares every face with every other, so a false-match rate per comparison turns into
# false merges in proportion to the square of the collection: it needs the strictest band. Measured
# with dlib on all 13,233 LFW faces (5,749 people, 4,069 of them with one photo: the hard case),
# pairwise precision / recall (BCubed precision / recall):
#   0.465, STRONG band (FMR 1e-4):     0.992 / 0.84  (0.96 / 0.84)
#   0.500, the fallback below:         0.978 / 0.91  (0.89 / 0.91)
#   0.525, PROBABLE band (FMR 1e-3):   0.939 / 0.96  (0.80 / 0.94)
# Nearly all wrong merges are pairs and triples of one-photo people; people with many photos come
# out pure (George W Bush: 530 photos, 94% of them in one cluster that holds no one else).
CLUSTER_BAND = Band.STRONG

# Without a calibration for a model there is no measured false-match rate to take a threshold from.
# For dlib's 128-d templates, whose same-person threshold is 0.6 (about 1 stranger in 80 closer than
# that on LFW), 0.5 is a conservative distance (about 1 in 3,000): a wrong merge is worse than a split,
# which the operator undoes with one merge. Other models must bring a calibration (their distances
# have other scales).
FALLBACK_THRESHOLDS = {"dlib-resnet-v1": 0.5}

_CELLS_PER_BLOCK = 1 << 24  # distance-matrix cells computed at once (64 MiB of float32)


@dataclass(frozen=True)
class Assignment:
    """Where each new face goes: to an existing person, or to a new group found among the new faces.

    For face i exactly one of `person[i]` (an existing person id) and `group[i]` (0 .. groups - 1)
    is set; the other is -1.
    """

    person: NDArray[np.int64]
    group: NDArray[np.int64]
    groups: int


@dataclass(frozen=True)
class _Neighbours:
    """For each query row, the target rows within the threshold and their distances (CSR layout)."""

    starts: NDArray[np.int64]
    targets: NDArray[np.int64]
    distances: NDArray[np.float64]

    def pairs(self) -> Iterator[tuple[int, int, float]]:
        """(query row, target row, distance) for every pair within the threshold."""
        rows = np.repeat(np.arange(len(self.starts) - 1), np.diff(self.starts))
        return zip(rows.tolist(), self.targets.tolist(), self.distances.tolist(), strict=True)


def default_threshold(model_id: str) -> float:
    """The clustering distance for a model: the bound of its calibrated STRONG band (FMR 1e-4).

    Reads the calibration shipped with the model (the only input that is not an argument here).
    """
    calibration = load_calibration(model_id)
    if calibration is not None:
        return calibration.threshold(CLUSTER_BAND)
    if model_id in FALLBACK_THRESHOLDS:
        return FALLBACK_THRESHOLDS[model_id]
    raise InvalidValueError("model", f"no calibration for {model_id}: clustering needs one to choose a distance")


def cluster_templates(templates: NDArray[np.floating], threshold: float, *,
                      min_support: float = MIN_SUPPORT) -> NDArray[np.int64]:
    """Group templates (n, dim) into identities; returns one label per row, 0 .. k-1.

    Labels are numbered in the order of each cluster's first row.
    """
    new = _as_matrix(templates, "templates")
    empty = np.zeros((0, new.shape[1]), dtype=np.float32)
    assignment = assign_faces(empty, np.zeros(0, dtype=np.int64), new, threshold=threshold,
                              min_support=min_support)
    return assignment.group


def assign_faces(known: NDArray[np.floating], known_people: NDArray[np.integer], new: NDArray[np.floating], *,
                 threshold: float, min_support: float = MIN_SUPPORT) -> Assignment:
    """Place `new` templates (m, dim) among people already formed from `known` (n, dim) templates.

    `known_people[j]` is the person id of known face j. Each new face joins an existing person or a
    group of new faces under the support rule of this module; groups are what the caller turns into
    new people. Known faces never move and two existing people are never merged: earlier decisions
    (and the operator's merges and splits) stand.
    """
    known_m, new_m = _as_matrix(known, "known"), _as_matrix(new, "new")
    people = np.asarray(known_people, dtype=np.int64)
    if people.shape != (known_m.shape[0],):
        raise InvalidValueError("known_people", "needs one person id per known template")
    if known_m.shape[0] and known_m.shape[1] != new_m.shape[1]:
        raise InvalidValueError("new", f"templates of {new_m.shape[1]} values cannot join ones of {known_m.shape[1]}")
    if not math.isfinite(threshold) or threshold <= 0:
        raise InvalidValueError("threshold", "must be a positive distance")
    if not 0 < min_support <= 1:
        raise InvalidValueError("min_support", "must be a share in (0, 1]")
    person_ids, known_cluster = np.unique(people, return_inverse=True)
    fixed = len(person_ids)
    # Clusters 0 .. fixed-1 are the existing people; cluster fixed + i starts as new face i alone.
    merger = _Merger(np.bincount(known_cluster, minlength=fixed).tolist() + [1] * new_m.shape[0], fixed,
                     threshold, min_support)
    near_known = _neighbours(new_m, known_m, threshold, same=False)
    for face, member, distance in near_known.pairs():
        merger.link(fixed + face, int(known_cluster[member]), distance)
    for face, other, distance in _neighbours(new_m, new_m, threshold, same=True).pairs():
        if face < other:  # each pair once
            merger.link(fixed + face, fixed + other, distance)
    merger.run()
    return _assignment(np.array([merger.root(fixed + i) for i in range(new_m.shape[0])], dtype=np.int64),
                       person_ids)


class _Merger:
    """Average-linkage agglomeration over the sparse graph of pairs within the threshold.

    The linkage of two clusters is their capped mean distance over all cross pairs (a pair beyond the
    threshold counts as the threshold), and they may merge only if at least `min_support` of the cross
    pairs are within the threshold. The closest allowed pair merges first, until none is left.
    """

    def __init__(self, sizes: list[int], fixed: int, threshold: float, min_support: float) -> None:
        self.size = sizes
        self.fixed = fixed
        self.threshold = threshold
        self.min_support = min_support
        self.parent = list(range(len(sizes)))
        self.version = [0] * len(sizes)
        # links[a][b] = [pairs within the threshold, sum of their distances], kept symmetric.
        self.links: list[dict[int, list[float]]] = [{} for _ in sizes]
        self.heap: list[tuple[float, int, int, int, int]] = []

    def link(self, a: int, b: int, distance: float) -> None:
        entry = self.links[a].setdefault(b, [0, 0.0])
        entry[0] += 1
        entry[1] += distance
        self.links[b][a] = entry

    def root(self, cluster: int) -> int:
        while self.parent[cluster] != cluster:
            cluster = self.parent[cluster]
        return cluster

    def run(self) -> None:
        for a in range(len(self.size)):
            self._push_links(a)
        while self.heap:
            _, a, b, version_a, version_b = heapq.heappop(self.heap)
            if (self.version[a], self.version[b]) == (version_a, version_b):  # else a stale entry
                self._merge(a, b)

    def _linkage(self, a: int, b: int) -> float | None:
        """The capped mean distance of clusters a and b, or None if they may not merge."""
        if a < self.fixed and b < self.fixed:
            return None
        count, total = self.links[a][b]
        pairs = self.size[a] * self.size[b]
        # The small epsilon keeps "half of 4" at 2 despite floating point.
        if count < max(1, math.ceil(self.min_support * pairs - 1e-9)):
            return None
        return (total + (pairs - count) * self.threshold) / pairs

    def _push_links(self, a: int) -> None:
        for b in self.links[a]:
            linkage = self._linkage(a, b)
            if linkage is not None:
                lo, hi = min(a, b), max(a, b)
                heapq.heappush(self.heap, (linkage, lo, hi, self.version[lo], self.version[hi]))

    def _merge(self, a: int, b: int) -> None:
        """Merge b and a; an existing person survives as such, else the larger keeps its number."""
        keep, gone = (a, b) if a < self.fixed or (b >= self.fixed and self.size[a] >= self.size[b]) else (b, a)
        self.parent[gone] = keep
        self.size[keep] += self.size[gone]
        self.version[keep] += 1
        self.version[gone] += 1
        del self.links[keep][gone]
        for other, (count, total) in self.links[gone].items():
            if other == keep:
                continue
            del self.links[other][gone]
            if other in self.links[keep]:
                entry = self.links[keep][other]
                entry[0] += count
                entry[1] += total
            else:
                self.links[keep][other] = self.links[other][keep] = [count, total]
        self.links[gone] = {}
        self._push_links(keep)


def _assignment(cluster: NDArray[np.int64], person_ids: NDArray[np.int64]) -> Assignment:
    """Existing person ids for faces that joined one; new groups numbered by their first face."""
    existing = cluster < len(person_ids)
    person = np.full(len(cluster), -1, dtype=np.int64)
    person[existing] = person_ids[cluster[existing]]
    group = np.full(len(cluster), -1, dtype=np.int64)
    numbers: dict[int, int] = {}
    for i in np.flatnonzero(~existing).tolist():
        group[i] = numbers.setdefault(int(cluster[i]), len(numbers))
    return Assignment(person=person, group=group, groups=len(numbers))


def _neighbours(queries: NDArray[np.float32], targets: NDArray[np.float32], threshold: float, *,
                same: bool) -> _Neighbours:
    """All (query, target) pairs within `threshold`, computed block by block to bound memory.

    `same` means queries and targets are the same rows: a face is not its own neighbour.
    """
    rows_per_block = max(1, _CELLS_PER_BLOCK // max(1, targets.shape[0]))
    target_sq = np.einsum("ij,ij->i", targets, targets)
    limit = threshold * threshold
    rows: list[NDArray[np.int64]] = []
    cols: list[NDArray[np.int64]] = []
    dists: list[NDArray[np.float64]] = []
    for start in range(0, queries.shape[0] if targets.shape[0] else 0, rows_per_block):
        block = queries[start:start + rows_per_block]
        squared = np.einsum("ij,ij->i", block, block)[:, None] + target_sq[None, :] - 2.0 * (block @ targets.T)
        if same:
            squared[np.arange(len(block)), np.arange(start, start + len(block))] = np.inf
        r, c = np.nonzero(squared <= limit)
        rows.append(r.astype(np.int64) + start)
        cols.append(c.astype(np.int64))
        dists.append(np.sqrt(np.maximum(squared[r, c], 0.0)).astype(np.float64))
    row = np.concatenate(rows) if rows else np.zeros(0, dtype=np.int64)
    starts = np.zeros(queries.shape[0] + 1, dtype=np.int64)
    np.cumsum(np.bincount(row, minlength=queries.shape[0]), out=starts[1:])
    # np.nonzero yields row-major order, so pairs are already grouped by query row.
    return _Neighbours(starts=starts, targets=np.concatenate(cols) if cols else np.zeros(0, dtype=np.int64),
                       distances=np.concatenate(dists) if dists else np.zeros(0, dtype=np.float64))


def _as_matrix(templates: NDArray[np.floating], name: str) -> NDArray[np.float32]:
    matrix = np.asarray(templates, dtype=np.float32)
    if matrix.ndim != 2:
        raise InvalidValueError(name, f"expected a (faces, dimensions) matrix, got shape {matrix.shape}")
    if not np.isfinite(matrix).all():
        raise InvalidValueError(name, "templates hold NaN or infinite values")
    return matrix
