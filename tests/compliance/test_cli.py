"""`facetrail order ...`: record, run, follow and report on an order from the command line."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

from typer.testing import CliRunner

from facetrail.cli.main import app
from facetrail.runtime import Facetrail

# Received a month before the run, due a month after it: the order run below complies on time on any day the test
# runs (a fixed deadline made it late once the calendar passed it).
TODAY = datetime.now(UTC).date()
RECEIVED, DEADLINE = TODAY - timedelta(days=30), TODAY + timedelta(days=30)
ADD = ["order", "add", "--authority", "CNIL", "--reference", "MED-2021-134", "--received", RECEIVED.isoformat(),
       "--deadline", DEADLINE.isoformat(), "--jurisdiction", "FR", "--cease", "--erase", "--daily-penalty", "100000"]


def test_an_order_from_the_command_line_to_the_authoritys_report(jft: Facetrail, tmp_path: Path) -> None:
    jft.close()
    runner = CliRunner()
    base = ["--data", str(jft.data)]
    added = runner.invoke(app, [*base, *ADD, "--json"])
    assert added.exit_code == 0, added.output
    assert json.loads(added.output)["images_remaining"] == 4
    late = runner.invoke(app, [*base, "order", "status", "1", "--as-of", f"{DEADLINE + timedelta(days=3)}T10:00:00Z",
                                 "--json"])
    assert (json.loads(late.output)["days_late"], json.loads(late.output)["penalty_accrued"]) == (3, 300000)
    table = runner.invoke(app, [*base, "order", "list"])
    assert "CNIL" in table.output and "4 images" in table.output and "4 faces" in table.output
    ran = runner.invoke(app, [*base, "order", "run", "1", "--json"])
    assert ran.exit_code == 0, ran.output
    assert json.loads(ran.output)["images_remaining"] == 0 and json.loads(ran.output)["complied"] is True
    report_md, report_json = tmp_path / "report.md", tmp_path / "report.json"
    shown = runner.invoke(app, [*base, "order", "status", "--report", str(report_md)])
    assert shown.exit_code == 0 and "compliance report written" in shown.output
    text = report_md.read_text()
    assert "## Order 1: CNIL, MED-2021-134" in text and "| items in scope remaining | 0 image(s), 0 face(s) |" in text
    assert "complied on time" in text and "not the person's residence" in text
    runner.invoke(app, [*base, "order", "status", "1", "--report", str(report_json)])
    made = json.loads(report_json.read_text())
    assert made["orders"][0]["images_erased"] == 4 and len(made["orders"][0]["erasures"]) == 1
    assert made["audit_head"]["seq"] > 0
    verify = runner.invoke(app, [*base, "audit", "verify"])
    assert verify.exit_code == 0


def test_bad_order_input_names_the_field(jft: Facetrail) -> None:
    jft.close()
    runner = CliRunner()
    base = ["--data", str(jft.data)]
    bad = runner.invoke(app, [*base, *ADD[:-6], "--json"])  # no jurisdiction, no measure
    assert bad.exit_code == 2 and json.loads(bad.output)["field"] == "scope"
    when = runner.invoke(app, [*base, "order", "status", "--as-of", "yesterday", "--json"])
    assert when.exit_code == 2 and json.loads(when.output)["field"] == "as_of"
    missing = runner.invoke(app, [*base, "order", "run", "9"])
    assert missing.exit_code == 1 and "no enforcement order 9" in missing.output
