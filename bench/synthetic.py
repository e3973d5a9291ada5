"""Synthetic face templates clustered like real ones, for the scale benchmark and the index tests.

Each identity is a centre drawn from a Gaussian; each face of it is its centre plus smaller Gaussian noise. Both
have the variance spectrum of real templates: the principal components of 305 dlib templates of LFW photos hold
variances falling about as i^-0.9 (the first 10 hold 47% of it, the first 64 98%), so the i-th axis here has
variance proportional to i^-0.9 (`SPECTRUM`). The two spreads are set so that two faces of different identities
lie about 0.8 apart (the median over those LFW templates) and two faces of one identity about 0.4 (mates mostly
under dlib's 0.6 threshold). `spectrum=0` gives isotropic vectors.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

STRANGER_DISTANCE = 0.8  # typical distance between two identities' faces
SPECTRUM = 0.9  # variance of the i-th principal axis of real templates ~ i^-SPECTRUM
MATE_DISTANCE = 0.4  # typical distance between two faces of one identity


@dataclass(frozen=True)
class Synthetic:
    """A gallery (`vectors`, ids 1..n in order, `identity` of each) and probes: `probes[i]` is another face of
    the identity of gallery face `mates[i]` (its planted mate), not itself in the gallery."""

    vectors: NDArray[np.float32]
    identity: NDArray[np.int64]
    probes: NDArray[np.float32]
    mates: NDArray[np.int64]

    @property
    def ids(self) -> NDArray[np.int64]:
        return np.arange(1, len(self.vectors) + 1, dtype=np.int64)


@dataclass(frozen=True)
class _Shape:
    """Where synthetic identities lie: per-axis noise of a face around its identity, spread of the identities,
    and the axes and centre they are placed along."""

    noise: NDArray[np.float64]
    spread: NDArray[np.float64]
    basis: NDArray[np.float64]
    offset: NDArray[np.float64]


def _shape(dim: int, spectrum: float, mate_distance: float, stranger_distance: float,
           like: NDArray[np.float32] | None) -> _Shape:
    # |a - b| of two draws of N(0, s^2 I) in d dimensions is about s sqrt(2d); the face of an identity at
    # distance m from another face of it needs noise t sqrt(2d) = m, and the centres the rest.
    axes = np.arange(1, dim + 1, dtype=np.float64) ** -spectrum
    scale = np.sqrt(axes * dim / axes.sum())  # per-axis scale; the mean variance stays 1
    noise = mate_distance / np.sqrt(2 * dim) * scale
    spread = np.sqrt(max(stranger_distance ** 2 - mate_distance ** 2, 1e-6)) / np.sqrt(2 * dim) * scale
    if like is None or len(like) <= dim:
        return _Shape(noise, spread, np.eye(dim), np.full(dim, 0.5 / np.sqrt(dim)))
    offset = like.mean(axis=0).astype(np.float64)
    basis = np.linalg.svd(like - offset, full_matrices=False)[2]  # rows: principal axes, largest first
    return _Shape(noise, spread, basis, offset)


def synthetic(n: int, *, dim: int = 128, faces_per_identity: int = 4, probes: int = 100,
              seed: int = 0, spectrum: float = SPECTRUM, chunk: int = 100_000,
              mate_distance: float = MATE_DISTANCE, stranger_distance: float = STRANGER_DISTANCE,
              like: NDArray[np.float32] | None = None) -> Synthetic:
    """n gallery faces of n / faces_per_identity identities, and `probes` mated probes (built in chunks so
    that 1M faces need no more than their own 0.5 GB). With `like` (real templates, more of them than `dim`),
    the identities are placed as those are: centred on their mean, the i-th synthetic axis along their i-th
    principal axis."""
    rng = np.random.default_rng(seed)
    shape = _shape(dim, spectrum, mate_distance, stranger_distance, like)
    identities = max(1, n // faces_per_identity)
    centres = ((rng.normal(scale=shape.spread, size=(identities, dim)) @ shape.basis)
               + shape.offset).astype(np.float32)
    identity = rng.integers(0, identities, size=n).astype(np.int64)
    vectors = np.empty((n, dim), dtype=np.float32)
    for start in range(0, n, chunk):
        end = min(n, start + chunk)
        vectors[start:end] = (centres[identity[start:end]]
                              + rng.normal(scale=shape.noise, size=(end - start, dim)) @ shape.basis)
    mates = np.sort(rng.choice(n, size=min(probes, n), replace=False)).astype(np.int64) + 1
    probe_vectors = (centres[identity[mates - 1]]
                     + rng.normal(scale=shape.noise, size=(len(mates), dim)) @ shape.basis).astype(np.float32)
    return Synthetic(vectors=vectors, identity=identity, probes=probe_vectors, mates=mates)


@dataclass(frozen=True)
class SyntheticStream:
    """A gallery too large to hold beside the index (10M faces: 10 GB of 256-value templates), generated a chunk
    at a time, the same chunks on every pass: its probes and their planted mates are known before any chunk."""

    n: int
    dim: int
    centres: NDArray[np.float32]
    identity: NDArray[np.int64]
    shape: _Shape
    probes: NDArray[np.float32]
    mates: NDArray[np.int64]
    seed: int
    chunk: int

    def chunks(self) -> Iterator[tuple[NDArray[np.int64], NDArray[np.float32]]]:
        """(ids, vectors) in order of id, 1..n."""
        for number, start in enumerate(range(0, self.n, self.chunk)):
            end = min(self.n, start + self.chunk)
            rng = np.random.default_rng([self.seed, number])
            faces = (self.centres[self.identity[start:end]]
                     + rng.normal(scale=self.shape.noise, size=(end - start, self.dim)) @ self.shape.basis)
            yield np.arange(start + 1, end + 1, dtype=np.int64), faces.astype(np.float32)


def synthetic_stream(n: int, *, dim: int = 128, faces_per_identity: int = 4, probes: int = 100, seed: int = 0,
                     spectrum: float = SPECTRUM, chunk: int = 100_000, mate_distance: float = MATE_DISTANCE,
                     stranger_distance: float = STRANGER_DISTANCE,
                     like: NDArray[np.float32] | None = None) -> SyntheticStream:
    """As `synthetic`, but the gallery is generated when `chunks()` is iterated (the identity centres, a quarter
    of the faces, are held)."""
    rng = np.random.default_rng(seed)
    shape = _shape(dim, spectrum, mate_distance, stranger_distance, like)
    identities = max(1, n // faces_per_identity)
    centres = np.empty((identities, dim), dtype=np.float32)
    for start in range(0, identities, chunk):
        end = min(identities, start + chunk)
        centres[start:end] = rng.normal(scale=shape.spread, size=(end - start, dim)) @ shape.basis + shape.offset
    identity = rng.integers(0, identities, size=n).astype(np.int64)
    mates = np.sort(rng.choice(n, size=min(probes, n), replace=False)).astype(np.int64) + 1
    probe_vectors = (centres[identity[mates - 1]]
                     + rng.normal(scale=shape.noise, size=(len(mates), dim)) @ shape.basis).astype(np.float32)
    return SyntheticStream(n=n, dim=dim, centres=centres, identity=identity, shape=shape, probes=probe_vectors,
                           mates=mates, seed=seed, chunk=chunk)
