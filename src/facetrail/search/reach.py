"""What a result means at the size of the search: the faces it reaches, and the threshold that keeps strangers out.

A band is a per-comparison false-match rate (FMR), but a search compares the query face with every face it
reaches, so the chance that *some* stranger comes out close grows with the gallery: at the 'possible' band
(FMR 1e-2) a search of 299 faces shows a stranger in most searches for someone not enrolled, and at 1M faces
thousands of them. The false-positive identification rate (FPIR) is that chance per search.

With `min_band` "auto" (the default) the threshold is chosen from the number of faces the search reaches,
after the purpose's source filter and without restricted faces: the largest distance at which the expected FPIR
stays at `target_fpir` (default 1%: no stranger in 99% of searches for someone not enrolled), whatever the
size. It is never looser than 'possible'. An explicit band keeps its fixed per-comparison threshold, and the
response says what that threshold means at this size.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from facetrail.errors import InvalidValueError
from facetrail.vision.calibration import Band, Calibration

AUTO = "auto"


def parse_min_band(value: str | None) -> Band | None:
    """A band, or None for "auto" (the threshold chosen from the gallery size)."""
    if (value or "").strip().lower() == AUTO:
        return None
    try:
        return Band.parse(value or "")
    except InvalidValueError:
        raise InvalidValueError("min_band", f"{value!r} is not one of: {AUTO}, "
                                f"{', '.join(b.value for b in Band)}") from None


@dataclass(frozen=True)
class Reach:
    """The faces one search reaches and its threshold, with what that threshold means at this size."""

    gallery_size: int
    min_band: Band | None  # None: automatic
    target_fpir: float | None  # automatic: the FPIR aimed at
    max_distance: float  # results farther than this are not shown (inf: no limit)
    fmr: float | None  # per-comparison false-match rate at max_distance (None without a calibration)
    fpir: float | None  # expected FPIR at max_distance for gallery_size
    extrapolated: bool  # the threshold's FMR lies below the smallest the calibration measured

    @property
    def min_band_name(self) -> str:
        return AUTO if self.min_band is None else self.min_band.value

    def as_dict(self) -> dict[str, Any]:
        return {"gallery_size": self.gallery_size, "min_band": self.min_band_name, "target_fpir": self.target_fpir,
                "max_distance": None if math.isinf(self.max_distance) else round(self.max_distance, 4),
                "fmr": self.fmr, "fpir": self.fpir, "extrapolated": self.extrapolated}


def reach(calibration: Calibration | None, gallery_size: int, min_band: Band | None, target_fpir: float) -> Reach:
    """The threshold of a search of `gallery_size` faces: `min_band`'s, or (None) the automatic one."""
    if calibration is None:  # no rates: no bands, no limit
        return Reach(gallery_size, min_band, None, math.inf, None, None, False)
    if min_band is None:
        # Never looser than 'possible': an automatic threshold shows no result without a band.
        limit = min(calibration.gallery_threshold(target_fpir, max(1, gallery_size)),
                    calibration.threshold(Band.POSSIBLE))
        target: float | None = target_fpir
    else:
        limit, target = calibration.threshold(min_band), None
    if math.isinf(limit):
        return Reach(gallery_size, min_band, target, limit, 1.0, 1.0 if gallery_size else 0.0, False)
    fmr = calibration.fmr(limit)
    return Reach(gallery_size, min_band, target, limit, fmr, calibration.fpir(limit, gallery_size),
                 fmr < calibration.measured_fmr)


def rate(value: float | None) -> str:
    """A rate for people: '12%' from 1% up, '1 in 25,000' below; '-' for none."""
    if value is None:
        return "-"
    if value >= 0.0099:  # 1% computed as 0.00999...
        return f"{value:.0%}" if value >= 0.1 else f"{value:.1%}"
    if value <= 0:
        return "0"
    return f"1 in {round(1 / value):,}"


def threshold_line(limits: Reach) -> str:
    """One line saying what the search's threshold means at its size."""
    size = f"{limits.gallery_size:,} face{'s' if limits.gallery_size != 1 else ''} searched"
    if limits.fpir is None:
        return f"{size}; no calibration: no threshold"
    shown = "automatic threshold" if limits.min_band is None else f"bands from {limits.min_band.value} up"
    guess = " (extrapolated beyond the calibration data)" if limits.extrapolated else ""
    return (f"{shown}, {size}: a stranger comes out in {rate(limits.fpir)} of searches for someone not enrolled; "
            f"false-match rate per comparison {rate(limits.fmr)}{guess}")
