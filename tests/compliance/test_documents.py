"""The record of processing and the DPIA are generated: they follow the sources, accounts and settings."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from facetrail.accounts.roles import Actor, Role
from facetrail.cli.main import app
from facetrail.compliance import dpia, ropa
from facetrail.compliance.benchmarks import BENCHMARKS, read_benchmark
from facetrail.compliance.document import Format, render
from facetrail.errors import InvalidValueError, PermissionDeniedError
from facetrail.runtime import Facetrail, local_actor
from facetrail.vision.backend import load_backend
from facetrail.vision.calibration import load_calibration
from tests.cli.test_cli import init
from tests.conftest import add_source

AUDITOR = Actor("audrey", Role.AUDITOR)


def measure(record: dict[str, object], name: str) -> str:
    measures = record["security_measures"]
    assert isinstance(measures, list)
    return next(m["state"] for m in measures if m["measure"] == name)


def test_record_follows_a_new_source(ft: Facetrail) -> None:
    add_source(ft, name="press archive", purposes=("press",))
    before = ft.compliance.record_of_processing(AUDITOR)
    ft.sources.add(local_actor(), name="club photos", controller="Rowing Club", purposes=["members"],
                   legal_basis="consent", art9_condition="a", evidence_ref="forms/2026", jurisdictions=["DE", "CH"],
                   retention_days=30, description="members at regattas")
    after = ft.compliance.record_of_processing(AUDITOR)
    assert [p["purpose"] for p in before["purposes"]] == ["press"]
    assert [p["purpose"] for p in after["purposes"]] == ["members", "press"]
    assert {"source": "club photos", "retention_days": 30, "oldest_image_at": None} in after["retention"]
    assert "Rowing Club" in after["controller"]["controllers_named_by_sources"]
    assert after["transfers"]["outside_eea"] == ["CH", "US"] and before["transfers"]["outside_eea"] == ["US"]
    markdown = render(ropa.document(after), Format.MARKDOWN)
    assert "club photos" in markdown and "members at regattas" in markdown
    assert "club photos" not in render(ropa.document(before), Format.MARKDOWN)


def test_recipients_are_the_accounts_that_may_search_each_purpose(ft: Facetrail) -> None:
    add_source(ft, name="a", purposes=("press",))
    add_source(ft, name="b", purposes=("events",))
    ft.accounts.create(local_actor(), name="ivy", role="investigator", purposes=["press"])
    ft.accounts.create(local_actor(), name="ian", role="investigator")
    ft.accounts.create(local_actor(), name="olga", role="operator")
    ft.accounts.create(local_actor(), name="gone", role="investigator")
    ft.accounts.disable(local_actor(), name="gone")
    record = ft.compliance.record_of_processing(AUDITOR)
    by_purpose = {r["purpose"]: {a["account"]: a["scope"] for a in r["accounts"]} for r in record["recipients"]}
    assert by_purpose == {"events": {"ian": "any purpose"}, "press": {"ivy": ["press"], "ian": "any purpose"}}
    assert measure(record, "search keys limited to purposes") == "1 of 2 active search keys"


@pytest.mark.sqlite_only  # reads SQLite's secure_delete among the measures
def test_settings_in_force_are_what_the_record_says(tmp_path: Path) -> None:
    data = tmp_path / "data"
    first = Facetrail.open(data, create=True, workers=1)
    record = first.compliance.record_of_processing(AUDITOR)
    assessment = first.compliance.impact_assessment(AUDITOR)
    first.close()
    second = Facetrail.open(data, workers=1, key_ttl_days=30, manual_check=True, search_per_minute=0,
                            controller_name="Agence Photo SA", dpo_contact="dpo@agence.example",
                            smtp_host="mail.agence.example")
    changed = second.compliance.record_of_processing(AUDITOR)
    changed_assessment = second.compliance.impact_assessment(AUDITOR)
    second.close()
    assert measure(record, "API key lifetime") == "90 days" and measure(changed, "API key lifetime") == "30 days"
    assert measure(changed, "search rate limit") == "none"
    assert "required for every request" in measure(changed, "identity before disclosure")
    assert "when the DPO asks" in measure(record, "identity before disclosure")
    assert record["controller"]["name"] is None
    assert "FACETRAIL_CONTROLLER_NAME" in record["controller"]["settings_missing"]
    assert changed["controller"]["name"] == "Agence Photo SA"
    assert changed["controller"]["dpo_contact"] == "dpo@agence.example"
    assert changed["controller"]["settings_missing"] == ["FACETRAIL_CONTROLLER_CONTACT"]
    assert any("mail.agence.example" in p["state"] for p in changed["transfers"]["processors"])
    assert measure(record, "deleted rows overwritten (SQLite secure_delete)") == "on"
    assert "inside the data directory" in measure(record, "master key")
    assert assessment["processing"]["controller"] is None
    assert changed_assessment["processing"]["controller"] == "Agence Photo SA"
    stalking = next(r for r in changed_assessment["risks"] if r["risk"].startswith("stalking"))
    assert any("required for every request" in m for m in stalking["measures_in_force"])


def test_dpia_is_prefilled_with_volumes_and_the_models_measured_rates(samples_ft: Facetrail) -> None:
    before = samples_ft.compliance.impact_assessment(AUDITOR)
    add_source(samples_ft, name="second", purposes=("other",))
    after = samples_ft.compliance.impact_assessment(AUDITOR)
    assert before["volumes"]["sources"] == 1 and after["volumes"]["sources"] == 2
    assert [s["name"] for s in after["sources"]] == ["samples", "second"]
    faces = before["volumes"]["faces"]
    assert faces > 0 and before["volumes"]["images"] > 0
    calibration = load_calibration(samples_ft.gallery.model_id)  # the default model's
    assert calibration is not None
    accuracy = before["accuracy"]
    assert accuracy["model_id"] == samples_ft.gallery.model_id and accuracy["calibrated"]
    assert accuracy["impostor_comparisons"] == calibration.impostor_comparisons
    assert {b["band"]: b["distance_threshold"] for b in accuracy["bands"]} == {
        band.value: threshold for band, threshold in calibration.thresholds.items()}
    # A stranger's search over the collection: FMR x searchable faces, per band.
    assert accuracy["expected_false_candidates_per_search"]["possible"] == pytest.approx(0.01 * faces, abs=1e-3)
    assert {r["risk"] for r in before["risks"]} >= {"wrongful identification", "stalking and tracking of a person",
                                                   "function creep", "children in the collection"}
    for risk in before["risks"]:
        assert risk["measures_in_force"] and risk["likelihood"] is None and risk["severity"] is None
    assert all(value is None for value in before["controller_assessment"].values())
    page = render(dpia.document(before), Format.HTML)
    assert "wrongful identification" in page and "______" in page and "<script" not in page


def test_benchmark_figures_are_taken_only_for_the_model_in_use(tmp_path: Path) -> None:
    if BENCHMARKS.exists():
        for model_id in (load_backend().model_id, "dlib-resnet-v1"):  # the default model's, and dlib's
            bench = read_benchmark(model_id)
            assert bench is not None and bench.verification_accuracy.endswith("%"), model_id
            assert {b.band for b in bench.bands} == {"strong", "probable", "possible"}
    assert read_benchmark("some-other-model") is None
    assert read_benchmark("dlib-resnet-v1", tmp_path / "missing.md") is None
    (tmp_path / "B.md").write_text("no measurements here\n")
    assert read_benchmark("dlib-resnet-v1", tmp_path / "B.md") is None


def test_documents_need_the_dpo_or_auditor_role_and_are_audited(ft: Facetrail) -> None:
    with pytest.raises(PermissionDeniedError):
        ft.compliance.record_of_processing(Actor("ivy", Role.INVESTIGATOR))
    with pytest.raises(PermissionDeniedError):
        ft.compliance.impact_assessment(Actor("olga", Role.OPERATOR))
    ft.compliance.record_of_processing(Actor("dora", Role.DPO))
    ft.compliance.impact_assessment(AUDITOR)
    actions = [(e.actor, e.action) for e in ft.read_audit(local_actor())]
    assert ("dora", "compliance.ropa") in actions and ("audrey", "compliance.dpia") in actions


def test_cli_prints_the_record_in_each_format(tmp_path: Path) -> None:
    data = init(tmp_path / "data")
    runner = CliRunner()
    result = runner.invoke(app, ["--data", str(data), "source", "add", "--name", "cli source", "--controller", "C",
                                 "--purpose", "demo", "--basis", "consent", "--art9", "a", "--evidence", "e/1",
                                 "--jurisdiction", "FR", "--retention-days", "10"])
    assert result.exit_code == 0, result.output
    as_json = runner.invoke(app, ["--data", str(data), "compliance", "ropa", "--json"])
    assert as_json.exit_code == 0, as_json.output
    assert json.loads(as_json.output)["retention"][0] == {"source": "cli source", "retention_days": 10,
                                                          "oldest_image_at": None}
    html = runner.invoke(app, ["--data", str(data), "compliance", "ropa", "--format", "html"])
    assert html.exit_code == 0 and html.output.startswith("<!doctype html>") and "cli source" in html.output
    out = tmp_path / "dpia.md"
    md = runner.invoke(app, ["--data", str(data), "compliance", "dpia", "--output", str(out)])
    assert md.exit_code == 0 and out.read_text().startswith("# Data protection impact assessment")
    bad = runner.invoke(app, ["--data", str(data), "compliance", "dpia", "--format", "pdf"])
    assert bad.exit_code == 2 and "format" in bad.output


def test_unknown_format_is_refused() -> None:
    with pytest.raises(InvalidValueError, match="format"):
        Format.parse("docx")


def test_html_escapes_what_staff_typed(ft: Facetrail) -> None:
    ft.sources.add(local_actor(), name="<script>alert(1)</script>", controller="C & D", purposes=["demo"],
                   legal_basis="consent", art9_condition="a", evidence_ref="e", jurisdictions=["FR"],
                   retention_days=5, description="a | pipe")
    record = ft.compliance.record_of_processing(AUDITOR)
    page = render(ropa.document(record), Format.HTML)
    assert "<script>alert" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page and "C &amp; D" in page
    assert "a \\| pipe" in render(ropa.document(record), Format.MARKDOWN)
