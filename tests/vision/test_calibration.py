"""Calibration: thresholds at the target false-match rates, stored per model, checked on LFW View 1 test."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from facetrail.errors import InvalidValueError
from facetrail.evaluation import lfw
from facetrail.evaluation.metrics import band_fmrs, impostor_distances
from facetrail.evaluation.pipelines import extract_templates
from facetrail.vision.backend import VisionConfig
from facetrail.vision.calibration import Band, Calibration, load_calibration
from tests.conftest import LFW

ROOT = LFW.parent


def test_thresholds_hit_their_targets_on_the_calibration_data() -> None:
    impostors = np.random.default_rng(0).normal(1.0, 0.12, 500_000)
    cal = Calibration.from_impostors("m", impostors, data="synthetic")
    for band in (Band.STRONG, Band.PROBABLE, Band.POSSIBLE):
        measured = float(np.mean(impostors <= cal.threshold(band)))
        assert 0.8 * band.target_fmr <= measured <= band.target_fmr
        assert cal.fmr(cal.threshold(band)) == pytest.approx(band.target_fmr, rel=0.25)
    assert cal.threshold(Band.STRONG) < cal.threshold(Band.PROBABLE) < cal.threshold(Band.POSSIBLE)


def test_json_round_trip_and_model_check(tmp_path: Path) -> None:
    cal = Calibration.from_impostors("m", np.random.default_rng(0).normal(1, 0.1, 10_000), data="synthetic")
    cal.save(tmp_path / "m.json")
    loaded = load_calibration("m", tmp_path / "m.json")
    assert loaded == cal
    with pytest.raises(InvalidValueError, match="calibrates m"):
        load_calibration("other-model", tmp_path / "m.json")
    assert load_calibration("no-such-model") is None


def test_too_few_comparisons_are_refused() -> None:
    with pytest.raises(InvalidValueError, match="too few"):
        Calibration.from_impostors("m", np.ones(10), data="x")


def test_the_default_model_ships_its_calibration() -> None:
    cal = load_calibration("dlib-resnet-v1")
    assert cal is not None and cal.impostor_comparisons > 1_000_000
    assert "pairsDevTrain" in cal.data
    assert 0.3 < cal.threshold(Band.STRONG) < cal.threshold(Band.PROBABLE) < cal.threshold(Band.POSSIBLE) < 0.7


@pytest.mark.slow
def test_bands_hold_on_lfw_view1_test_pairs() -> None:
    """On images the calibration never saw (View 1 test), each band's false-match rate is within 3x of its
    target: every different-person pair among the View 1 test images is compared."""
    cal = load_calibration("dlib-resnet-v1")
    assert cal is not None
    keys = lfw.pair_images(lfw.read_pairs(ROOT / "pairsDevTest.txt"))
    templates = extract_templates("facetrail", [lfw.image_path(ROOT, k) for k in keys], keys, config=VisionConfig(),
                                  model_id=cal.model_id, workers=2)
    impostors = impostor_distances(templates, keys)
    assert len(impostors) > 500_000
    measured = band_fmrs(impostors, {b.value: cal.threshold(b) for b in (Band.STRONG, Band.PROBABLE,
                                                                           Band.POSSIBLE)})
    for band in (Band.STRONG, Band.PROBABLE, Band.POSSIBLE):
        ratio = measured[band.value] / band.target_fmr
        assert 1 / 3 <= ratio <= 3, (band, measured[band.value])
