"""The score and band shown to staff follow the calibration, and say so when there is none."""

from __future__ import annotations

import numpy as np

from facetrail.search.scoring import Scorer
from facetrail.vision.calibration import Band, Calibration


def calibration() -> Calibration:
    impostors = np.random.default_rng(1).normal(0.9, 0.1, 200_000)
    return Calibration.from_impostors("test-model", impostors, data="synthetic")


def test_calibrated_score_is_minus_20_log10_fmr() -> None:
    cal = calibration()
    scorer = Scorer(cal)
    for band, expected in ((Band.POSSIBLE, 40), (Band.PROBABLE, 60), (Band.STRONG, 80)):
        assert abs(scorer.score(cal.threshold(band)) - expected) <= 2.5
        assert scorer.band(cal.threshold(band)) is band
    assert scorer.score(0.0) == 100.0 and scorer.score(2.0) == 0.0
    distances = np.linspace(0, 1.5, 200)
    scores = [scorer.score(d) for d in distances]
    assert scores == sorted(scores, reverse=True)
    assert scorer.band(1.2) is Band.NONE
    assert scorer.max_distance(Band.PROBABLE) == cal.threshold(Band.PROBABLE)


def test_without_calibration_there_are_no_bands() -> None:
    scorer = Scorer(None)
    assert not scorer.calibrated
    assert scorer.band(0.1) is None
    assert scorer.score(0.6) == 50.0
    assert scorer.max_distance(Band.STRONG) == float("inf")
