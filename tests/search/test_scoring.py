"""The score and band shown to staff follow the calibration, and say so when there is none."""

from __future__ import annotations

import numpy as np
import pytest

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
    assert scorer.score(2.0) == 0.0
    distances = np.linspace(0, 1.5, 200)
    scores = [scorer.score(d) for d in distances]
    assert scores == sorted(scores, reverse=True)


def test_the_score_keeps_its_resolution_at_the_top() -> None:
    """Two results at different distances never both read 100: the score has no ceiling. Up to the smallest
    false-match rate measured it is 20 * -log10(FMR) exactly; below, the curve is extrapolated and still falls."""
    cal = calibration()
    scorer = Scorer(cal)
    measured_top = -20 * np.log10(cal.fmrs[0])
    assert abs(scorer.score(cal.distances[0]) - measured_top) <= 0.05 and measured_top > 100
    close = np.linspace(0.0, cal.distances[0], 60)  # the same person, photographed twice
    scores = [scorer.score(d) for d in close]
    assert all(a > b for a, b in zip(scores, scores[1:], strict=False)), scores
    assert scorer.score(0.30) - scorer.score(0.31) >= 1.0  # a hundredth of distance moves it visibly


def test_the_shipped_calibration_tells_close_faces_apart() -> None:
    from facetrail.vision.calibration import load_calibration

    cal = load_calibration("dlib-resnet-v1")
    assert cal is not None
    scorer = Scorer(cal)
    # Typical same-person distances, all of which read 100.0 when the score was clipped there.
    distances = [0.20, 0.25, 0.30, 0.35, 0.38, 0.40, 0.41]
    scores = [scorer.score(d) for d in distances]
    assert len(set(scores)) == len(scores) and all(s > 100 for s in scores), scores
    assert scorer.score(cal.threshold(Band.STRONG)) == pytest.approx(80, abs=1)
    assert scorer.band(1.2) is Band.NONE
    assert scorer.max_distance(Band.PROBABLE) == cal.threshold(Band.PROBABLE)


def test_without_calibration_there_are_no_bands() -> None:
    scorer = Scorer(None)
    assert not scorer.calibrated
    assert scorer.band(0.1) is None
    assert scorer.score(0.6) == 50.0
    assert scorer.max_distance(Band.STRONG) == float("inf")
