"""Calibration: thresholds at the target false-match rates, stored per model, checked on LFW View 1 test."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from facetrail.errors import InvalidValueError
from facetrail.evaluation import lfw
from facetrail.evaluation.metrics import band_fmrs, impostor_distances
from facetrail.evaluation.pipelines import extract_templates
from facetrail.vision.backend import VisionConfig, load_backend
from facetrail.vision.calibration import Band, Calibration, load_calibration
from facetrail.vision.composite import MODEL_IDS, VisionModel
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


def test_every_pipeline_ships_its_calibration() -> None:
    """The default pipeline (YuNet + Intel, unit-length 256-d templates) and dlib's (128-d, same person below
    about 0.6) each carry their own bands, measured on LFW View 1 train."""
    default = load_backend(VisionConfig()).calibration()
    assert default is not None and default.model_id == MODEL_IDS[VisionModel.YUNET_INTEL]
    for model in VisionModel:
        cal = load_calibration(MODEL_IDS[model])
        assert cal is not None and cal.impostor_comparisons > 1_000_000, model
        assert "pairsDevTrain" in cal.data
        assert 0 < cal.threshold(Band.STRONG) < cal.threshold(Band.PROBABLE) < cal.threshold(Band.POSSIBLE) < 2
    dlib = load_calibration(MODEL_IDS[VisionModel.DLIB])
    assert dlib is not None and 0.3 < dlib.threshold(Band.STRONG) and dlib.threshold(Band.POSSIBLE) < 0.7


@pytest.mark.slow
def test_bands_hold_on_lfw_view1_test_pairs() -> None:
    """On images the calibration never saw (View 1 test), each band of the default pipeline's calibration has a
    false-match rate within 3x of its target: every different-person pair among the View 1 test images is
    compared."""
    config = VisionConfig()
    backend = load_backend(config)
    cal = backend.calibration()
    assert cal is not None and cal.model_id == backend.model_id
    keys = lfw.pair_images(lfw.read_pairs(ROOT / "pairsDevTest.txt"))
    templates = extract_templates("facetrail", [lfw.image_path(ROOT, k) for k in keys], keys, config=config,
                                  model_id=cal.model_id, workers=2)
    impostors = impostor_distances(templates, keys)
    assert len(impostors) > 500_000
    measured = band_fmrs(impostors, {b.value: cal.threshold(b) for b in (Band.STRONG, Band.PROBABLE,
                                                                           Band.POSSIBLE)})
    for band in (Band.STRONG, Band.PROBABLE, Band.POSSIBLE):
        ratio = measured[band.value] / band.target_fmr
        assert 1 / 3 <= ratio <= 3, (band, measured[band.value])


def test_distance_at_inverts_the_false_match_rate() -> None:
    cal = Calibration.from_impostors("m", np.random.default_rng(2).normal(1.0, 0.12, 200_000), data="synthetic")
    for fmr in (1e-6, 1e-4, 3e-3, 1e-2, 0.2):  # 1e-6: below what 200,000 comparisons measure (extrapolated)
        assert cal.fmr(cal.distance_at(fmr)) == pytest.approx(fmr, rel=1e-6)
    assert cal.distance_at(1e-6) < cal.distance_at(1e-4) < cal.distance_at(1e-2)
    assert cal.measured_fmr == pytest.approx(1 / 200_000)
    for bad in (0.0, 1.0, -0.1, 2.0):
        with pytest.raises(InvalidValueError, match="fmr"):
            cal.distance_at(bad)


def test_fpir_grows_with_the_gallery_and_its_threshold_shrinks() -> None:
    """1 - (1 - FMR)^N: at 'possible' (1e-2 per comparison) a stranger is shown in 63% of searches of 100 faces;
    the gallery threshold for a 1% FPIR moves down as the gallery grows, and meets its target."""
    from facetrail.vision.calibration import comparison_fmr, fpir_of

    cal = load_calibration("dlib-resnet-v1")
    assert cal is not None
    possible = cal.threshold(Band.POSSIBLE)
    assert cal.fpir(possible, 1) == pytest.approx(cal.fmr(possible))
    assert cal.fpir(possible, 100) == pytest.approx(1 - (1 - cal.fmr(possible)) ** 100)
    assert 0.6 < cal.fpir(possible, 100) < 0.67 and cal.fpir(possible, 0) == 0.0
    thresholds = [cal.gallery_threshold(0.01, n) for n in (1, 10, 1_000, 100_000, 10_000_000)]
    assert thresholds == sorted(thresholds, reverse=True) and len(set(thresholds)) == len(thresholds)
    for n, t in zip((1, 10, 1_000, 100_000, 10_000_000), thresholds, strict=True):
        assert cal.fpir(t, n) == pytest.approx(0.01, rel=1e-6)
    assert comparison_fmr(0.01, 1) == pytest.approx(0.01) and fpir_of(comparison_fmr(0.05, 777), 777) == 0.05
    assert fpir_of(1.0, 3) == 1.0
    with pytest.raises(InvalidValueError, match="target_fpir"):
        cal.gallery_threshold(1.5, 10)
    with pytest.raises(InvalidValueError, match="gallery_size"):
        cal.gallery_threshold(0.01, 0)
    with pytest.raises(InvalidValueError, match="gallery_size"):
        cal.fpir(0.5, -1)
