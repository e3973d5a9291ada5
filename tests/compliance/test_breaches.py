"""The breach register: the 72-hour clock, notification rules, append-only phases, the people in scope."""

from __future__ import annotations

import json
import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select
from typer.testing import CliRunner

from facetrail.accounts.roles import Actor, Role
from facetrail.cli.main import app
from facetrail.compliance.breach_scope import BreachScope
from facetrail.compliance.breaches import BreachService
from facetrail.compliance.views import breach_view
from facetrail.errors import ConflictError, InvalidValueError, NotFoundError, PermissionDeniedError
from facetrail.runtime import Facetrail, local_actor
from facetrail.sources.inputs import from_paths
from facetrail.store.models import Face, StoredImage
from tests.cli.test_cli import init
from tests.conftest import add_source
from tests.rights.captures import BUSH_HELD, photo
from tests.rights.test_requests import full_request

DPO = Actor("dora", Role.DPO)
AUDITOR = Actor("audrey", Role.AUDITOR)
AWARE = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)


class Clock:
    """The time the service sees, moved by the test."""

    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


def breach_fields(**overrides: object) -> dict[str, object]:
    fields: dict[str, object] = {
        "title": "backup disk lost", "nature": "an encrypted backup disk was lost in transit",
        "data_categories": ["biometric templates", "photographs"], "subject_categories": ["event attendees"],
        "approx_subjects": 500, "approx_records": 1200, "consequences": "low: the disk is encrypted",
        "measures": "master key rotated", "aware_at": AWARE}
    fields.update(overrides)
    return fields


@pytest.fixture
def clock() -> Clock:
    return Clock(AWARE + timedelta(hours=10))


@pytest.fixture
def register(ft: Facetrail, clock: Clock) -> BreachService:
    return BreachService(ft.db, ft.audit, clock=clock)


def test_the_72_hour_clock_runs_from_awareness(register: BreachService, clock: Clock) -> None:
    breach = register.add(DPO, **breach_fields())
    state = register.clock(breach)
    assert state.due_at == AWARE + timedelta(hours=72)
    assert (state.state, state.hours_left) == ("running", pytest.approx(62.0))
    clock.now = AWARE + timedelta(hours=80)
    late = register.clock(breach)
    assert (late.state, late.hours_left) == ("overdue", pytest.approx(-8.0))
    assert breach_view(breach, clock.now)["clock"] == {"aware_at": "2026-11-02T09:00:00Z",
                                                        "due_at": "2026-11-05T09:00:00Z", "hours_left": -8.0,
                                                        "state": "overdue"}


def test_a_late_notification_needs_its_reasons(register: BreachService, clock: Clock) -> None:
    breach = register.add(DPO, **breach_fields())
    clock.now = AWARE + timedelta(hours=90)
    with pytest.raises(InvalidValueError) as refused:
        register.update(DPO, breach.id, note="notified the CNIL", authority_status="notified")
    assert refused.value.field == "delay_reasons"
    updated = register.update(DPO, breach.id, note="notified the CNIL", authority_status="notified",
                              authority_reference="CNIL-2026-042", delay_reasons="the loss was confirmed only then")
    assert updated.authority_notified_at == clock.now
    assert register.clock(updated).state == "notified late"


def test_notified_in_time_stops_the_clock(register: BreachService, clock: Clock) -> None:
    breach = register.add(DPO, **breach_fields())
    updated = register.update(DPO, breach.id, note="notified", authority_status="notified")
    clock.now = AWARE + timedelta(days=30)
    assert register.clock(updated).state == "notified"


def test_not_notifying_needs_a_reason(register: BreachService) -> None:
    breach = register.add(DPO, **breach_fields())
    with pytest.raises(InvalidValueError) as refused:
        register.update(DPO, breach.id, note="no risk", subjects_status="not_required")
    assert refused.value.field == "notification_note"
    updated = register.update(DPO, breach.id, note="no risk to people", subjects_status="not_required",
                              notification_note="Art. 34(3)(a): the data were encrypted and the key is safe")
    assert updated.subjects_status == "not_required"


@pytest.mark.sqlite_only  # tampers with the SQLite file itself
def test_phases_are_kept_in_an_append_only_history(ft: Facetrail, register: BreachService) -> None:
    breach = register.add(DPO, **breach_fields())
    register.update(DPO, breach.id, note="more people than thought", approx_subjects=900)
    register.update(DPO, breach.id, note="done", close=True)
    final = register.get(AUDITOR, breach.id)
    assert [u.note for u in final.updates] == ["recorded", "more people than thought", "done"]
    assert final.updates[1].changes == {"approx_subjects": {"from": 500, "to": 900}}
    assert final.updates[0].changes["title"] == {"from": None, "to": "backup disk lost"}
    with pytest.raises(ConflictError):
        register.update(DPO, breach.id, note="again", approx_subjects=1)
    conn = sqlite3.connect(ft.data / "facetrail.db")
    for statement in ("UPDATE breach_updates SET note = 'rewritten'", "DELETE FROM breach_updates"):
        with pytest.raises(sqlite3.IntegrityError, match="append-only"):
            conn.execute(statement)
    conn.close()
    actions = [(e.action, json.loads(e.details).get("fields")) for e in ft.read_audit(DPO, limit=1000)
               if e.action.startswith("breach.")]
    assert actions[0][0] == "breach.add" and actions[1] == ("breach.update", ["approx_subjects"])
    assert actions[2] == ("breach.update", ["closed_at"])
    # The audit log keeps field names and statuses, never the free text.
    assert all("backup disk" not in e.details for e in ft.read_audit(DPO, limit=1000))


@pytest.mark.parametrize("override,field", [
    ({"title": "  "}, "title"), ({"data_categories": []}, "data_categories"),
    ({"data_categories": "photos"}, "data_categories"), ({"approx_subjects": -1}, "approx_subjects"),
    ({"aware_at": "yesterday"}, "aware_at"), ({"aware_at": AWARE + timedelta(days=5)}, "aware_at"),
    ({"occurred_at": AWARE + timedelta(hours=1)}, "occurred_at"), ({"colour": "red"}, "colour"),
    ({"nature": None}, "nature")])
def test_bad_values_name_their_field(register: BreachService, override: dict[str, object], field: str) -> None:
    with pytest.raises(InvalidValueError) as refused:
        register.add(DPO, **breach_fields(**override))
    assert refused.value.field == field


def test_roles_and_missing_breaches(register: BreachService) -> None:
    with pytest.raises(PermissionDeniedError):
        register.add(AUDITOR, **breach_fields())
    with pytest.raises(PermissionDeniedError):
        register.list(Actor("ivy", Role.INVESTIGATOR))
    breach = register.add(DPO, **breach_fields())
    assert [b.id for b in register.list(AUDITOR)] == [breach.id]
    with pytest.raises(PermissionDeniedError):
        register.update(AUDITOR, breach.id, note="x", approx_subjects=2)
    with pytest.raises(PermissionDeniedError):
        register.affected(AUDITOR, breach.id)
    with pytest.raises(NotFoundError):
        register.get(AUDITOR, 999)
    with pytest.raises(InvalidValueError, match="scope"):
        register.update(DPO, breach.id, note="scope", scope=BreachScope.of([42]))
    with pytest.raises(ConflictError, match="no scope"):
        register.affected(DPO, breach.id)


def test_affected_lists_the_faces_in_scope_and_the_requesters_it_can_name(samples_ft: Facetrail) -> None:
    ft = samples_ft
    other = add_source(ft, name="other", purposes=("demo",))
    ft.ingest.ingest(local_actor(), other, from_paths([photo(BUSH_HELD[0])], ft.input_limits))
    request_id, _token = full_request(ft, "access")  # Bush, whose one held face is in the other source
    with ft.db.read() as session:
        in_other = set(session.scalars(select(Face.id).where(Face.source_id == other)))
        images_other = set(session.scalars(select(StoredImage.id).where(StoredImage.source_id == other)))
    assert in_other
    ft.breaches.add(DPO, **breach_fields(aware_at=datetime.now(UTC)), scope=BreachScope.of([other]))
    result = ft.breaches.affected(DPO, 1).as_dict()
    assert set(result["face_ids"]) == in_other and set(result["image_ids"]) == images_other
    assert result["by_source"] == {str(other): {"images": len(images_other), "faces": len(in_other)}}
    # Bush's request matched his face in the other source: he can be told, by e-mail.
    assert [(r["request_id"], r["email"]) for r in result["requesters"]] == [(request_id, "george@example.org")]
    assert "holds faces, not names" in result["cannot_name"]
    # A range before anything was ingested holds nothing (and no requester).
    ft.breaches.update(DPO, 1, note="narrowed", scope=BreachScope.of([other], end=datetime(2020, 1, 1, tzinfo=UTC)))
    assert ft.breaches.affected(DPO, 1).as_dict()["faces"] == 0
    # Rights requests exposed: every request received in the range, whatever its faces.
    ft.breaches.update(DPO, 1, note="portal", scope=BreachScope.of([other], start=datetime(2020, 1, 1, tzinfo=UTC),
                                                                     end=datetime(2020, 1, 2, tzinfo=UTC),
                                                                     requests=True))
    assert ft.breaches.affected(DPO, 1).requesters == ()
    ft.breaches.update(DPO, 1, note="portal, all time", scope=BreachScope.of([other], start=None, requests=True))
    assert [r[0] for r in ft.breaches.affected(DPO, 1).requesters] == [request_id]
    audited = [json.loads(e.details) for e in ft.read_audit(DPO, limit=1000) if e.action == "breach.affected"]
    assert len(audited) == 4 and audited[0]["faces"] == len(in_other)


def test_cli_records_updates_and_lists_breaches(tmp_path: Path) -> None:
    data = str(init(tmp_path / "data"))
    runner = CliRunner()
    added = runner.invoke(app, ["--data", data, "breach", "add", "--json", "--title", "laptop stolen",
                                "--nature", "a laptop with an export", "--data-category", "face crops",
                                "--subject-category", "attendees", "--consequences", "identification",
                                "--measures", "remote wipe", "--aware-at", "2026-11-30T08:00Z", "--subjects", "20"])
    assert added.exit_code == 0, added.output
    view = json.loads(added.output)
    assert view["clock"]["due_at"] == "2026-12-03T08:00:00Z" and view["approx_subjects"] == 20
    updated = runner.invoke(app, ["--data", data, "breach", "update", "1", "--json", "--note", "phase 2",
                                  "--records", "40", "--people", "pending"])
    assert updated.exit_code == 0, updated.output
    assert [h["note"] for h in json.loads(updated.output)["history"]] == ["recorded", "phase 2"]
    listed = runner.invoke(app, ["--data", data, "breach", "list", "--json"])
    assert [b["approx_records"] for b in json.loads(listed.output)] == [40]
    shown = runner.invoke(app, ["--data", data, "breach", "show", "1"])
    assert shown.exit_code == 0 and "laptop stolen" in shown.output and "phase 2" in shown.output
    bad = runner.invoke(app, ["--data", data, "breach", "update", "1", "--note", "x", "--authority", "maybe"])
    assert bad.exit_code == 2 and "authority_status" in bad.output
    missing = runner.invoke(app, ["--data", data, "breach", "show", "7"])
    assert missing.exit_code == 1 and "no breach 7" in missing.output
    no_scope = runner.invoke(app, ["--data", data, "breach", "affected", "1"])
    assert no_scope.exit_code == 1 and "no scope" in no_scope.output
