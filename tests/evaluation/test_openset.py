"""1:N on LFW's open-set protocol: the automatic threshold keeps strangers out of the searches it promises to."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from facetrail.cli.main import app
from facetrail.config import get_settings
from facetrail.evaluation import lfw
from facetrail.evaluation.distractors import FaceModel, comparison_fmr
from facetrail.evaluation.openset import (
    BEGIN,
    expected_fpir,
    pairwise_distances,
    select,
    templates_for,
    write_section,
)
from facetrail.ingest.analysis import vision_config
from facetrail.search.reach import reach
from facetrail.vision.backend import load_backend
from facetrail.vision.calibration import Band
from facetrail.vision.composite import DEFAULT_MODEL, MODEL_IDS
from tests.conftest import LFW, ROOT

LFW_ROOT = LFW.parent
CACHE = ROOT / ".bench-cache"  # shared with `make bench-fpir`: the same photos' templates are computed once
POOL = 1500  # non-mated photos: about 1.1 million pairs of strangers (enough close pairs at 300 faces)


@pytest.mark.slow
def test_the_default_threshold_keeps_its_fpir_on_lfw_non_mated_probes() -> None:
    """The default (min_band auto, target_fpir 1%) threshold of the default vision model (YuNet + Intel, from its
    own calibration), as a search picks it for a gallery of N faces, measured on LFW photos of people never
    enrolled and never used for calibration: each photo in turn is the probe and the gallery N of the others
    (the exact mean over every such gallery). Within a factor of 2."""
    settings = get_settings()
    config = vision_config(settings)
    backend = load_backend(config)
    assert backend.model_id == MODEL_IDS[DEFAULT_MODEL], "FACETRAIL_VISION_MODEL is set: not the default model"
    calibration = backend.calibration()
    assert calibration is not None and calibration.model_id == backend.model_id and settings.min_band == "auto"
    keys = select(LFW_ROOT, enrolled=700, non_mated=POOL).non_mated
    templates = templates_for(LFW_ROOT, keys, config=config, model_id=backend.model_id, workers=2, cache=CACHE)
    assert templates.enrolled.mean() > 0.99
    distances = pairwise_distances(templates.vectors)
    for gallery_size in (100, 300):
        limit = reach(calibration, gallery_size, None, settings.target_fpir).max_distance
        measured = expected_fpir(distances, limit, gallery_size)
        close = int((distances <= limit).sum() // 2)
        assert close >= 15, f"only {close} pairs of strangers at or below the threshold: too few to measure"
        assert settings.target_fpir / 2 <= measured <= settings.target_fpir * 2, (gallery_size, measured)
        # The fixed per-comparison bands looser than it would have shown a stranger in far more searches.
        probable = expected_fpir(distances, calibration.threshold(Band.PROBABLE), gallery_size)
        assert limit < calibration.threshold(Band.PROBABLE) and probable > 2 * measured, (gallery_size, probable)
        assert expected_fpir(distances, calibration.threshold(Band.POSSIBLE), gallery_size) > probable


def test_expected_fpir_is_the_mean_over_every_gallery() -> None:
    """Against brute force: every gallery of N drawn from a pool of 7, each photo the probe in turn."""
    rng = np.random.default_rng(3)
    points = rng.normal(size=(8, 4)).astype(np.float32)
    distances = pairwise_distances(points)
    threshold = float(np.median(distances[np.isfinite(distances)]))
    for n in (1, 3, 7):
        shown = []
        for probe in range(8):
            others = [i for i in range(8) if i != probe]
            shown += [float((distances[probe, list(g)] <= threshold).any()) for g in itertools.combinations(others, n)]
        assert expected_fpir(distances, threshold, n) == pytest.approx(np.mean(shown))
    with pytest.raises(ValueError, match="gallery size"):
        expected_fpir(distances, threshold, 8)


def test_failed_photos_never_match() -> None:
    points = np.array([[0, 0], [0, 0.1], [np.nan, np.nan]], dtype=np.float32)
    distances = pairwise_distances(points)
    assert np.isinf(distances[2]).all() and np.isinf(distances[:, 2]).all() and np.isinf(np.diag(distances)).all()


def test_the_draw_leaves_out_the_calibration_people_and_extends_itself() -> None:
    small = select(LFW_ROOT, enrolled=50, non_mated=80)
    large = select(LFW_ROOT, enrolled=100, non_mated=300)
    assert large.gallery[:50] == small.gallery and large.non_mated[:80] == small.non_mated
    calibration_people = {lfw.identity(k) for k in lfw.pair_images(lfw.read_pairs(LFW_ROOT / "pairsDevTrain.txt"))}
    people = [lfw.identity(k) for k in large.gallery + large.non_mated]
    assert not set(people) & calibration_people and len(set(people)) == len(people)
    assert all(lfw.identity(g) == lfw.identity(m) and g != m for g, m in zip(large.gallery, large.mated, strict=True))
    with pytest.raises(ValueError, match="people with several photos"):
        select(LFW_ROOT, enrolled=100_000, non_mated=1)
    with pytest.raises(ValueError, match="no LFW images"):
        select(LFW_ROOT / "nowhere", enrolled=1, non_mated=1)


def test_a_copy_without_the_calibration_pairs_is_refused_by_name(tmp_path: Path) -> None:
    (tmp_path / "images" / "Aaron_Eckhart").mkdir(parents=True)
    (tmp_path / "images" / "Aaron_Eckhart" / "Aaron_Eckhart_0001.jpg").write_bytes(
        (LFW / "Aaron_Eckhart" / "Aaron_Eckhart_0001.jpg").read_bytes())
    result = CliRunner().invoke(app, ["bench", "fpir", "--lfw", str(tmp_path), "--enrolled", "1", "--non-mated", "1",
                                      "--sizes", "1"])
    assert result.exit_code != 0 and f"{tmp_path / 'pairsDevTrain.txt'}: missing" in result.output


def test_distractors_have_the_real_templates_shape() -> None:
    """Fitted on vectors with a known structure, the synthetic faces have its mean and its two distances."""
    rng = np.random.default_rng(5)
    centres = rng.normal(0.2, 0.1, size=(400, 16))
    first = (centres + rng.normal(0, 0.03, size=centres.shape)).astype(np.float32)
    second = (centres + rng.normal(0, 0.03, size=centres.shape)).astype(np.float32)
    model = FaceModel.fit(first, first, second)
    faces = model.sample(4000, seed=1)
    assert faces.shape == (4000, 16) and faces.dtype == np.float32
    assert np.allclose(faces.mean(axis=0), first.mean(axis=0), atol=0.02)
    real = np.linalg.norm(first[:200, None] - first[None, 200:], axis=2).mean()
    synthetic = np.linalg.norm(faces[:200, None] - faces[None, 2000:2200], axis=2).mean()
    assert synthetic == pytest.approx(real, rel=0.1)
    assert comparison_fmr(first, faces, 0.0) == 0.0 and comparison_fmr(first, faces, 1e9) == 1.0
    with pytest.raises(ValueError, match="too few"):
        FaceModel.fit(first[:5], first[:5], second[:5])


def test_write_section_replaces_only_its_own(tmp_path: Path) -> None:
    path = tmp_path / "B.md"
    path.write_text("# Benchmarks\n\n## Other\n\nkept\n")
    write_section(path, "first\n")
    write_section(path, "second\n")
    text = path.read_text()
    assert text.count(BEGIN) == 1 and "second" in text and "first" not in text and "kept" in text
    assert text.count("## 1:N bands (FPIR/FNIR)") == 1


def test_bench_fpir_on_a_small_draw(tmp_path: Path) -> None:
    report = tmp_path / "BENCHMARKS.md"
    report.write_text("# Benchmarks\n\nkept text\n")
    args = ["bench", "fpir", "--lfw", str(LFW_ROOT), "--enrolled", "20", "--non-mated", "40", "--sizes", "20,2000",
            "--workers", "1", "--cache", str(CACHE), "--output", str(report)]
    result = CliRunner().invoke(app, [*args, "--json"])
    assert result.exit_code == 0, result.output
    run = json.loads(result.output)
    assert run["enrolled"] == 20 and run["non_mated"] == 40
    assert {r["gallery_size"] for r in run["rows"]} == {20, 2000}
    assert {r["threshold_name"] for r in run["rows"]} == {"auto (FPIR 0.01)", "possible", "probable", "strong"}
    for r in run["rows"]:
        assert 0 <= r["fpir"] <= 1 and 0 <= r["fnir"] <= 1 and r["false_alarms"] == round(r["fpir"] * 40)
    auto = [r for r in run["rows"] if r["threshold_name"].startswith("auto")]
    assert auto[0]["threshold"] > auto[1]["threshold"]  # a larger gallery, a stricter threshold
    text = report.read_text()
    assert "kept text" in text and BEGIN in text and "| 2,000 | 1,980 | auto (FPIR 0.01) |" in text
    bad = CliRunner().invoke(app, [*args[:8], "--sizes", "10"])
    assert bad.exit_code != 0 and "smaller than the 20 enrolled faces" in bad.output
    bad = CliRunner().invoke(app, [*args[:8], "--sizes", "many"])
    assert bad.exit_code != 0 and "sizes" in bad.output
