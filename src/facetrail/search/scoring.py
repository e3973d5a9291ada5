"""From template distance to what staff see: a score and a band.

With a calibration for the model (vision/calibration.py) the score is 20 * -log10(FMR): a stranger
reaches score S about once in 10^(S/20) comparisons (40 = 1 in 100, 60 = 1 in 1,000, 80 = 1 in 10,000).
It has no ceiling at 100: closer faces keep scoring higher (extrapolated beyond the measured curve), so
two results at different distances never tie at the top. The bands are strong (FMR <= 1e-4), probable
(<= 1e-3), possible (<= 1e-2) and none.

Without one (a new model not yet calibrated) there are no bands and the score is only a documented
rescaling of the distance, 100 * (1 - d / 1.2) clipped to 0..100; responses say `calibrated: false`.
"""

from __future__ import annotations

from dataclasses import dataclass

from facetrail.vision.calibration import Band, Calibration

UNCALIBRATED_MAX_DISTANCE = 1.2


@dataclass(frozen=True)
class Scorer:
    calibration: Calibration | None

    @property
    def calibrated(self) -> bool:
        return self.calibration is not None

    def score(self, distance: float) -> float:
        if self.calibration is None:
            return round(100.0 * max(0.0, min(1.0, 1.0 - distance / UNCALIBRATED_MAX_DISTANCE)), 1)
        return self.calibration.score(distance)

    def band(self, distance: float) -> Band | None:
        return None if self.calibration is None else self.calibration.band(distance)

    def max_distance(self, min_band: Band) -> float:
        """The largest distance that still reaches `min_band` (no limit without a calibration)."""
        return float("inf") if self.calibration is None else self.calibration.threshold(min_band)
