"""`facetrail bench accuracy` runs end to end on a slice of LFW and writes its report and calibration."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from facetrail.cli.main import app
from facetrail.vision.backend import load_backend
from facetrail.vision.calibration import load_calibration
from tests.conftest import LFW


def test_bench_accuracy_on_a_slice(tmp_path: Path) -> None:
    report = tmp_path / "BENCHMARKS.md"
    report.write_text("# Benchmarks\n\nkept text\n")
    calibration = tmp_path / "cal.json"
    args = ["bench", "accuracy", "--lfw", str(LFW.parent), "--stride", "60", "--no-peer", "--no-cluster",
            "--workers", "2", "--cache", str(tmp_path / "cache"), "--output", str(report),
            "--calibration-out", str(calibration)]
    result = CliRunner().invoke(app, [*args, "--json"])
    assert result.exit_code == 0, result.output
    (facetrail,) = json.loads(result.output)
    assert facetrail["name"] == "facetrail" and facetrail["failed_to_enrol"] == 0
    assert facetrail["verification"]["accuracy_mean"] > 0.9
    text = report.read_text()
    model_id = load_backend().model_id  # the configured (default) vision model's
    assert "kept text" in text and "<!-- accuracy:begin -->" in text and f"| facetrail | {model_id} |" in text
    assert load_calibration(model_id, calibration) is not None
    # A second run replaces its section rather than appending another; templates come from the cache.
    assert CliRunner().invoke(app, args).exit_code == 0
    assert report.read_text().count("<!-- accuracy:begin -->") == 1
    assert list((tmp_path / "cache").glob("facetrail-*.npz"))


def test_bench_accuracy_with_an_onnx_model(tmp_path: Path) -> None:
    """The path an operator takes to evaluate (and calibrate) a new model: meaningless numbers with a random
    tiny model, but every step runs, and the calibration it writes is for that model."""
    from tests.vision.test_onnx_backend import build_model, describe

    model = describe(build_model(tmp_path / "tiny.onnx", batch="n"))
    calibration = tmp_path / "tiny.calibration.json"
    result = CliRunner().invoke(app, [
        "bench", "accuracy", "--lfw", str(LFW.parent), "--model", str(model), "--stride", "60", "--no-peer",
        "--no-cluster", "--workers", "1", "--output", str(tmp_path / "B.md"), "--calibration-out", str(calibration),
        "--json"])
    assert result.exit_code == 0, result.output
    (run,) = json.loads(result.output)
    assert run["model_id"].startswith("onnx-")
    assert load_calibration(run["model_id"], calibration) is not None
    assert f"accuracy-{run['model_id']}" in (tmp_path / "B.md").read_text()


def test_bench_compares_vision_pipelines(tmp_path: Path) -> None:
    """--pipeline: each named pipeline on an LFW slice and the sample photos, dlib's LFW figures cited from the
    accuracy section already in the file, one calibration per template space, one "Vision pipelines" section."""
    from facetrail.evaluation.accuracy import reference_row
    from tests.conftest import SAMPLES

    report = tmp_path / "BENCHMARKS.md"
    report.write_text(Path("BENCHMARKS.md").read_text())
    calibrations = tmp_path / "calibrations"
    args = ["bench", "accuracy", "--lfw", str(LFW.parent), "--stride", "60", "--workers", "1", "--samples",
            str(SAMPLES), "--pipeline", "dlib", "--pipeline", "yunet-intel", "--samples-only", "yunet-dlib",
            "--pipeline", "yunet-dlib", "--output", str(report), "--calibrations", str(calibrations)]
    result = CliRunner().invoke(app, [*args, "--json"])
    assert result.exit_code == 0, result.output
    body = json.loads(result.output)
    (intel,) = body["lfw"]
    assert intel["name"] == "yunet-intel" and intel["model_id"] == "yunet-s.intel-reid-0095"
    assert intel["failed_to_enrol"] <= intel["images"] // 100 and intel["verification"]["accuracy_mean"] > 0.9
    assert set(body["samples"]) == {"dlib", "yunet-intel", "yunet-dlib"}
    for name, measured in body["samples"].items():
        assert measured["photos"] == 22 and measured["photos_missing_faces"] == 0, name
        assert measured["separated"], name
    assert [p.name for p in calibrations.iterdir()] == ["yunet-s.intel-reid-0095.json"]
    assert load_calibration("yunet-s.intel-reid-0095", calibrations / "yunet-s.intel-reid-0095.json") is not None
    text = report.read_text()
    assert text.count("<!-- vision-pipelines:begin -->") == 1 and "<!-- accuracy:begin -->" in text
    section = text[text.index("<!-- vision-pipelines:begin -->"):text.index("<!-- vision-pipelines:end -->")]
    cited = reference_row(report)
    assert cited is not None and cited["accuracy"].endswith("%")
    assert f"| dlib | dlib-resnet-v1 | {cited['accuracy']} | {cited['tar']} |" in section  # not re-measured
    assert "| yunet-intel | yunet-s.intel-reid-0095 |" in section
    assert "| yunet-dlib | yunet-s.dlib-resnet-v1 |" in section
