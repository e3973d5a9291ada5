"""Calibrated score bands: what a template distance means, measured on data, stored with the model.

A calibration is the false-match rate (FMR) curve of one model: for a set of distances, the share of
comparisons between *different* people that come out at or below that distance. From it:

* `fmr(d)`   the expected share of strangers who would match at distance <= d (log-linear interpolation);
* `score(d)` the figure shown to staff, 20 * -log10(FMR(d)), 0 and up: a stranger reaches a score of S about
             once in 10^(S/20) comparisons (40 = 1e-2, 60 = 1e-3, 80 = 1e-4, 100 = 1e-5). It has no ceiling:
             up to 20 * log10(comparisons measured) (135 for the shipped calibration) it is measured; above,
             the curve is extrapolated, so that closer faces still score higher rather than all saturating;
* `band(d)`  strong (FMR <= 1e-4), probable (<= 1e-3), possible (<= 1e-2) or none.

A band is a per-comparison rate, but a search compares the query with every face it reaches. For a search of
N faces of other people, the false-positive identification rate (FPIR, the NIST FRTE 1:N figure: the share of
searches for someone not enrolled that return anyone) at distance d is 1 - (1 - FMR(d))^N, counting the
comparisons as independent (`fpir`); `gallery_threshold(target, N)` is the largest distance that keeps it at
`target`. Measured on LFW (evaluation/openset.py), real searches come out at or below this figure: false matches
gather on a few look-alike probes rather than spreading evenly.

The default model's calibration ships in `calibrations/<model_id>.json`; another model brings its own file.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from facetrail.errors import InvalidValueError

CALIBRATIONS = Path(__file__).with_name("calibrations")


class Band(StrEnum):
    STRONG = "strong"
    PROBABLE = "probable"
    POSSIBLE = "possible"
    NONE = "none"

    @property
    def target_fmr(self) -> float:
        return BAND_TARGETS[self]

    @property
    def rank(self) -> int:
        return BAND_ORDER.index(self)

    @classmethod
    def parse(cls, value: str) -> Band:
        try:
            return cls((value or "").strip().lower())
        except ValueError:
            raise InvalidValueError("min_band", f"{value!r} is not one of: {', '.join(b.value for b in cls)}") from None


BAND_TARGETS = {Band.STRONG: 1e-4, Band.PROBABLE: 1e-3, Band.POSSIBLE: 1e-2, Band.NONE: 1.0}
BAND_ORDER = [Band.NONE, Band.POSSIBLE, Band.PROBABLE, Band.STRONG]


@dataclass(frozen=True)
class Calibration:
    """FMR curve of one model: `distances` ascending, `fmrs` the FMR at each (non-decreasing)."""

    model_id: str
    distances: tuple[float, ...]
    fmrs: tuple[float, ...]
    thresholds: dict[Band, float]
    impostor_comparisons: int
    data: str
    extra: dict[str, Any] = field(default_factory=dict)

    # -- building ------------------------------------------------------------------------------
    @classmethod
    def from_impostors(cls, model_id: str, impostor_distances: NDArray[np.floating[Any]], *, data: str,
                       extra: dict[str, Any] | None = None) -> Calibration:
        """Calibrate from the distances of many different-person comparisons."""
        sorted_d = np.sort(np.asarray(impostor_distances, dtype=np.float64))
        n = len(sorted_d)
        if n < 1000:
            raise InvalidValueError("impostors", f"{n} impostor comparisons are too few to calibrate")
        # Points at log-spaced FMR levels from 1/n up to 0.5: the empirical quantiles of the impostors.
        levels = np.unique(np.concatenate([np.logspace(math.log10(1 / n), math.log10(0.5), 60), [1 / n]]))
        # Rounded as stored, so that a calibration equals what its file holds.
        distances = [round(float(sorted_d[max(0, math.ceil(level * n) - 1)]), 6) for level in levels]
        points = sorted(zip(distances, levels.tolist(), strict=True))
        dist_out: list[float] = []
        fmr_out: list[float] = []
        for d, f in points:
            if dist_out and d <= dist_out[-1]:
                fmr_out[-1] = max(fmr_out[-1], f)
                continue
            dist_out.append(d)
            fmr_out.append(max(f, fmr_out[-1]) if fmr_out else f)
        thresholds = {band: round(float(sorted_d[max(0, math.floor(band.target_fmr * n) - 1)]), 6)
                      for band in (Band.STRONG, Band.PROBABLE, Band.POSSIBLE)}
        return cls(model_id=model_id, distances=tuple(dist_out), fmrs=tuple(fmr_out), thresholds=thresholds,
                   impostor_comparisons=n, data=data, extra=dict(extra or {}))

    # -- use -----------------------------------------------------------------------------------
    def fmr(self, distance: float) -> float:
        """Expected false-match rate at this distance (interpolated in log space; below the smallest measured
        distance, extrapolated along the curve's first decade, so it keeps falling as faces get closer)."""
        d = np.asarray(self.distances)
        logf = np.log10(np.asarray(self.fmrs))
        if distance <= d[0]:
            value = logf[0] - self._head_slope(d, logf) * (d[0] - distance)
        elif distance >= d[-1]:
            value = float(logf[-1]) if distance == d[-1] else 0.0
        else:
            value = float(np.interp(distance, d, logf))
        return float(min(1.0, 10 ** float(value)))

    @staticmethod
    def _head_slope(d: NDArray[np.float64], logf: NDArray[np.float64]) -> float:
        """log10(FMR) per unit of distance over the curve's first decade (steadier than its first two points)."""
        if len(d) < 2:
            return 0.0
        above = np.nonzero(logf >= logf[0] + 1.0)[0]
        k = int(above[0]) if len(above) else len(d) - 1
        return float((logf[k] - logf[0]) / (d[k] - d[0])) if d[k] > d[0] else 0.0

    def distance_at(self, fmr: float) -> float:
        """The largest distance whose false-match rate is at most `fmr` (the inverse of `fmr`; below the
        smallest rate measured, extrapolated along the curve's first decade as `fmr` is)."""
        if not 0.0 < fmr < 1.0:
            raise InvalidValueError("fmr", f"{fmr!r} is not a rate strictly between 0 and 1")
        d = np.asarray(self.distances)
        logf = np.log10(np.asarray(self.fmrs))
        target = math.log10(fmr)
        if target <= logf[0]:
            slope = self._head_slope(d, logf)
            return float(d[0]) if slope <= 0 else float(d[0] - (logf[0] - target) / slope)
        if target >= logf[-1]:
            return float(d[-1])
        # The curve is non-decreasing: the last point at or below the target, then linear in log space.
        k = int(np.searchsorted(logf, target, side="right")) - 1
        if logf[k + 1] == logf[k]:
            return float(d[k])
        return float(d[k] + (target - logf[k]) * (d[k + 1] - d[k]) / (logf[k + 1] - logf[k]))

    def fpir(self, distance: float, gallery_size: int) -> float:
        """Expected share of searches of `gallery_size` faces of other people that return one at or below
        `distance`: 1 - (1 - FMR)^N, comparisons counted as independent."""
        return fpir_of(self.fmr(distance), gallery_size)

    def gallery_threshold(self, target_fpir: float, gallery_size: int) -> float:
        """The largest distance at which a search of `gallery_size` faces returns a stranger in at most
        `target_fpir` of searches for someone not enrolled."""
        return self.distance_at(comparison_fmr(target_fpir, gallery_size))

    @property
    def measured_fmr(self) -> float:
        """The smallest false-match rate the calibration measured; below it the curve is extrapolated."""
        return float(self.fmrs[0])

    def score(self, distance: float) -> float:
        """0 and up, one decimal; a stranger reaches score S about once in 10^(S/20) comparisons."""
        return round(float(max(0.0, -20.0 * math.log10(self.fmr(distance)))), 1)

    def band(self, distance: float) -> Band:
        for band in (Band.STRONG, Band.PROBABLE, Band.POSSIBLE):
            if distance <= self.thresholds[band]:
                return band
        return Band.NONE

    def threshold(self, band: Band) -> float:
        """The largest distance still in `band` (NONE: every distance)."""
        return math.inf if band is Band.NONE else self.thresholds[band]

    # -- storage -------------------------------------------------------------------------------
    def to_json(self) -> str:
        return json.dumps({
            "model_id": self.model_id, "data": self.data, "impostor_comparisons": self.impostor_comparisons,
            "thresholds": {band.value: round(value, 6) for band, value in self.thresholds.items()},
            "curve": [[round(d, 6), f] for d, f in zip(self.distances, self.fmrs, strict=True)],
            "extra": self.extra,
        }, indent=1)

    @classmethod
    def from_json(cls, text: str) -> Calibration:
        raw = json.loads(text)
        curve = raw["curve"]
        return cls(model_id=raw["model_id"], distances=tuple(float(d) for d, _ in curve),
                   fmrs=tuple(float(f) for _, f in curve),
                   thresholds={Band(k): float(v) for k, v in raw["thresholds"].items()},
                   impostor_comparisons=int(raw["impostor_comparisons"]), data=raw["data"],
                   extra=dict(raw.get("extra", {})))

    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(self.to_json() + "\n")


def fpir_of(fmr: float, gallery_size: int) -> float:
    """1 - (1 - fmr)^N: the chance that at least one of N independent comparisons with strangers matches."""
    if gallery_size < 0:
        raise InvalidValueError("gallery_size", f"{gallery_size} is negative")
    if fmr >= 1.0:
        return 1.0 if gallery_size else 0.0
    return float(-math.expm1(gallery_size * math.log1p(-fmr)))


def comparison_fmr(target_fpir: float, gallery_size: int) -> float:
    """The per-comparison false-match rate at which N comparisons give `target_fpir` (fpir_of's inverse)."""
    if not 0.0 < target_fpir < 1.0:
        raise InvalidValueError("target_fpir", f"{target_fpir!r} is not a rate strictly between 0 and 1")
    if gallery_size < 1:
        raise InvalidValueError("gallery_size", f"{gallery_size} must be at least 1")
    return float(-math.expm1(math.log1p(-target_fpir) / gallery_size))


def load_calibration(model_id: str, path: Path | None = None) -> Calibration | None:
    """The calibration stored for this model: `path` if given, else the shipped one; None if none exists."""
    candidate = path if path is not None else CALIBRATIONS / f"{model_id}.json"
    if not candidate.exists():
        return None
    calibration = Calibration.from_json(candidate.read_text())
    if calibration.model_id != model_id:
        raise InvalidValueError("calibration", f"{candidate} calibrates {calibration.model_id}, not {model_id}")
    return calibration
