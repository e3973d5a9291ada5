"""Synthetic distractors: faces of people who are not real, to grow an LFW gallery to 10k, 100k or 1M faces.

The construction is the scale benchmark's (bench/synthetic.py): each synthetic identity is a centre drawn from a
Gaussian, and each of its faces is that centre plus smaller Gaussian noise, about four faces per identity. Here
both Gaussians are fitted on real templates instead of an assumed spectrum: the mean and covariance of the
templates, split into a within-person part (half the covariance of the differences between two photos of one
person) and a between-person part (the rest). So the distractors have the real templates' mean, spread and
correlations, and their distances to real faces are of the right size.

What they cannot have is what a Gaussian leaves out: real faces come in look-alikes, families, and groups that
share age, sex and ethnicity, which is exactly what makes a stranger come close. Whether a distractor matches a
real probe as often as a real stranger would is measured beside the results (`comparison_fmr`), not assumed.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

FACES_PER_IDENTITY = 4


@dataclass(frozen=True)
class FaceModel:
    """The Gaussian of real templates: `mean`, and the square roots of the between- and within-person covariances."""

    mean: NDArray[np.float64]
    between: NDArray[np.float64]
    within: NDArray[np.float64]

    @classmethod
    def fit(cls, templates: NDArray[np.float32], first: NDArray[np.float32],
            second: NDArray[np.float32]) -> FaceModel:
        """Fit on `templates` (one photo per person, any number of people) and pairs of photos of one person
        (`first[i]`, `second[i]`). NaN rows (failed to enrol) are left out."""
        ok = ~np.isnan(templates).any(axis=1)
        pair_ok = ~(np.isnan(first).any(axis=1) | np.isnan(second).any(axis=1))
        if ok.sum() < 10 or pair_ok.sum() < 10:
            raise ValueError(f"too few templates to fit distractors on: {int(ok.sum())} photos and "
                             f"{int(pair_ok.sum())} pairs (at least 10 of each)")
        real = templates[ok].astype(np.float64)
        diff = (first[pair_ok] - second[pair_ok]).astype(np.float64)
        total = np.cov(real, rowvar=False)
        within = diff.T @ diff / (2 * len(diff))  # E[(a - b)(a - b)^T] = 2 x within-person covariance
        return cls(mean=real.mean(axis=0), between=_root(total - within), within=_root(within))

    def sample(self, n: int, *, seed: int = 0, chunk: int = 100_000) -> NDArray[np.float32]:
        """n faces of about n / FACES_PER_IDENTITY synthetic identities (in chunks: 1M faces need 0.5 GB)."""
        rng = np.random.default_rng(seed)
        dim = len(self.mean)
        identities = max(1, n // FACES_PER_IDENTITY)
        centres = self.mean + rng.standard_normal((identities, dim)) @ self.between.T
        who = rng.integers(0, identities, size=n)
        out = np.empty((n, dim), dtype=np.float32)
        for start in range(0, n, chunk):
            end = min(n, start + chunk)
            out[start:end] = centres[who[start:end]] + rng.standard_normal((end - start, dim)) @ self.within.T
        return out


def _root(covariance: NDArray[np.float64]) -> NDArray[np.float64]:
    """A square root of the symmetric matrix, negative eigenvalues (estimation noise) clipped to zero."""
    values, vectors = np.linalg.eigh((covariance + covariance.T) / 2)
    return np.asarray(vectors * np.sqrt(np.clip(values, 0.0, None)))


def comparison_fmr(probes: NDArray[np.float32], faces: NDArray[np.float32], threshold: float,
                   limit: int = 2_000_000) -> float:
    """Share of (probe, face) comparisons at or below `threshold`, over at most about `limit` comparisons."""
    probes = probes[~np.isnan(probes).any(axis=1)].astype(np.float64)
    faces = faces[: max(1, limit // max(1, len(probes)))].astype(np.float64)
    sq = (probes ** 2).sum(axis=1)[:, None] + (faces ** 2).sum(axis=1)[None, :] - 2 * probes @ faces.T
    return float(np.mean(np.sqrt(np.maximum(sq, 0.0)) <= threshold))
