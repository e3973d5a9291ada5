"""The staff console without a browser: sign-in, lock-out, sessions that expire, CSRF, refusals audited."""

from __future__ import annotations

import io
import re
import zipfile
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from httpx2 import Response
from sqlalchemy import select, update
from typer.testing import CliRunner

from facetrail.accounts.staff import LOCK_MINUTES, MAX_FAILURES, StaffSignIn
from facetrail.api import create_app
from facetrail.cli.main import app as cli
from facetrail.errors import InvalidValueError
from facetrail.runtime import Facetrail, local_actor
from facetrail.store.models import Account, RightsRequest, StaffPassword, StaffSession
from tests.conftest import SAMPLES, add_source, sample_bytes
from tests.web.conftest import csrf_of
from tests.web.staff import PASSWORD, audit_entries, console_search, received_days_ago, sign_in, staff


@pytest.fixture
def client(ft: Facetrail) -> Iterator[TestClient]:
    with TestClient(create_app(ft)) as instance:
        yield instance


def test_a_password_signs_in_and_out_and_every_step_is_audited(ft: Facetrail, client: TestClient) -> None:
    staff(ft, "dana", "dpo")
    assert client.get("/console", follow_redirects=False).headers["location"] == "/console/sign-in"
    response = sign_in(client, "dana")
    assert response.status_code == 303 and response.headers["location"] == "/console"
    cookie = response.headers["set-cookie"]
    assert "ft_console=" in cookie and "HttpOnly" in cookie and "Path=/console" in cookie
    assert "samesite=strict" in cookie.lower()
    home = client.get("/console")
    assert home.status_code == 200 and "Welcome, dana" in home.text and 'href="/console/requests"' in home.text
    assert 'href="/console/search"' not in home.text  # a DPO does not search
    client.post("/console/sign-out", data={"csrf": csrf_of(home.text)})
    assert client.get("/console", follow_redirects=False).status_code == 303
    assert [(a, b) for a, b, _ in audit_entries(ft, "console.")] == [("dana", "console.signin"),
                                                                      ("dana", "console.signout")]
    assert audit_entries(ft, "account.password")[0][2]["name"] == "dana"


def test_wrong_passwords_lock_the_account_even_for_the_right_one(ft: Facetrail, client: TestClient) -> None:
    staff(ft, "ivan", "investigator")
    for _ in range(MAX_FAILURES - 1):
        refused = sign_in(client, "ivan", "not the password at all")
        assert refused.status_code == 401 and "wrong account name or password" in refused.text
    locked = sign_in(client, "ivan", "still not the password")
    assert locked.status_code == 401 and "locked until" in locked.text
    after = sign_in(client, "ivan")  # the right password, during the lock
    assert after.status_code == 401 and "locked until" in after.text
    assert "ft_console" not in after.headers.get("set-cookie", "")
    failures = audit_entries(ft, "console.")
    reasons = [d.get("reason") for _, action, d in failures if action == "console.signin_failed"]
    assert reasons == ["wrong-password"] * MAX_FAILURES + ["locked"]
    assert [action for _, action, _ in failures].count("console.locked") == 1
    # Once the lock is over, the right password signs in.
    later = StaffSignIn(ft.db, ft.audit, clock=lambda: datetime.now(UTC) + timedelta(minutes=LOCK_MINUTES + 1))
    assert later.sign_in("ivan", PASSWORD, ip="127.0.0.1").actor.name == "ivan"


def test_unknown_names_and_accounts_without_password_get_the_same_answer(ft: Facetrail, client: TestClient) -> None:
    ft.accounts.create(local_actor(), name="nopass", role="dpo")
    for name in ("nobody", "nopass"):
        refused = sign_in(client, name)
        assert refused.status_code == 401 and "wrong account name or password" in refused.text
    assert [d["reason"] for _, _, d in audit_entries(ft, "console.signin_failed")] == ["unknown-account",
                                                                                       "no-password"]


def test_sessions_expire_when_idle_and_when_the_account_is_disabled(ft: Facetrail, client: TestClient) -> None:
    staff(ft, "dana", "dpo")
    sign_in(client, "dana")
    assert client.get("/console").status_code == 200
    with ft.db.write() as session, session.begin():
        session.execute(update(StaffSession).values(expires_at=datetime.now(UTC) - timedelta(seconds=1)))
    assert client.get("/console", follow_redirects=False).headers["location"] == "/console/sign-in"
    sign_in(client, "dana")
    assert client.get("/console").status_code == 200
    ft.accounts.disable(local_actor(), name="dana")
    assert client.get("/console", follow_redirects=False).status_code == 303
    assert sign_in(client, "dana").status_code == 401


def test_an_expired_account_neither_signs_in_nor_keeps_its_session(ft: Facetrail, client: TestClient) -> None:
    staff(ft, "dana", "dpo")
    sign_in(client, "dana")
    assert client.get("/console").status_code == 200
    with ft.db.write() as session, session.begin():
        session.execute(update(Account).values(expires_at=datetime.now(UTC) - timedelta(seconds=1)))
    assert client.get("/console", follow_redirects=False).status_code == 303
    assert sign_in(client, "dana").status_code == 401
    assert [d["reason"] for _, _, d in audit_entries(ft, "console.signin_failed")] == ["expired"]


def test_a_session_never_outlives_its_longest_life(ft: Facetrail) -> None:
    staff(ft, "dana", "dpo")
    now = [datetime.now(UTC)]
    service = StaffSignIn(ft.db, ft.audit, clock=lambda: now[0], idle=timedelta(minutes=30),
                          longest=timedelta(hours=1))
    token = service.sign_in("dana", PASSWORD, ip="127.0.0.1").token
    for step in (20, 20, 19):  # active every 20 minutes: the idle clock restarts each time
        now[0] += timedelta(minutes=step)
        assert service.actor_of(token) is not None
    now[0] += timedelta(minutes=2)  # 61 minutes after sign-in
    assert service.actor_of(token) is None


def test_forms_without_the_csrf_token_or_from_another_site_are_refused(ft: Facetrail, client: TestClient) -> None:
    staff(ft, "dana", "dpo")
    token = csrf_of(client.get("/console/sign-in").text)
    missing = client.post("/console/sign-in", data={"name": "dana", "password": PASSWORD})
    assert missing.status_code == 403 and "reload" in missing.text.lower()
    foreign = client.post("/console/sign-in", data={"name": "dana", "password": PASSWORD, "csrf": token},
                          headers={"Origin": "https://evil.example"})
    assert foreign.status_code == 403
    wrong = client.post("/console/sign-in", data={"name": "dana", "password": PASSWORD, "csrf": "x" * 43})
    assert wrong.status_code == 403
    assert audit_entries(ft, "console.signin") == []
    assert sign_in(client, "dana").status_code == 303
    signed_in = client.get("/console")
    assert client.post("/console/sign-out", data={}).status_code == 403  # a signed-in session needs it too
    assert client.get("/console").status_code == 200, signed_in.text


def test_a_page_of_another_role_answers_403_and_is_audited(ft: Facetrail, client: TestClient) -> None:
    staff(ft, "ivan", "investigator")
    sign_in(client, "ivan")
    refused = client.get("/console/requests")
    assert refused.status_code == 403 and "Not for your role" in refused.text
    assert refused.headers["content-security-policy"].startswith("default-src 'self'")
    denied = audit_entries(ft, "auth.denied")
    assert denied[-1][0] == "ivan" and denied[-1][2]["route"] == "/console/requests"
    assert denied[-1][2]["role"] == "investigator"


def test_passwords_are_checked_and_stored_hashed(ft: Facetrail) -> None:
    staff(ft, "dana", "dpo")
    service = StaffSignIn(ft.db, ft.audit)
    for bad in ("short", " leading space password", "aaaaaaaaaaaaaaaa"):
        with pytest.raises(InvalidValueError):
            service.set_password(local_actor(), "dana", bad)
    with ft.db.read() as session:
        stored = session.scalars(select(StaffPassword.password_hash)).one()
    assert stored.startswith("$argon2id$") and PASSWORD not in stored


def test_the_stand_in_hash_for_an_account_without_password_costs_what_a_real_one_does() -> None:
    """An unknown name is checked against a fixed hash: it must have the hasher's parameters (a library upgrade
    that changes them fails here), be a valid hash, and match no password."""
    from argon2.exceptions import VerifyMismatchError

    from facetrail.accounts import staff as staff_module

    hasher = staff_module._HASHER
    assert not hasher.check_needs_rehash(staff_module._DUMMY)
    with pytest.raises(VerifyMismatchError):  # a well-formed hash that was verified, not one refused unread
        hasher.verify(staff_module._DUMMY, PASSWORD)


def test_the_command_line_sets_a_password(ft: Facetrail, client: TestClient) -> None:
    ft.accounts.create(local_actor(), name="dana", role="dpo")
    result = CliRunner().invoke(cli, ["--data", str(ft.data), "user", "password", "dana", "--password-stdin",
                                      "--json"], input=PASSWORD + "\n")
    assert result.exit_code == 0, result.output
    assert '"password_set": true' in result.output
    assert sign_in(client, "dana").status_code == 303
    bad = CliRunner().invoke(cli, ["--data", str(ft.data), "user", "password", "nobody", "--password-stdin"],
                             input=PASSWORD + "\n")
    assert bad.exit_code == 1 and "no account named 'nobody'" in bad.output


def test_the_dashboard_shows_orders_breaches_and_requests_and_the_auditor_reads_it(
        ft: Facetrail, client: TestClient) -> None:
    source = add_source(ft)
    ft.orders.add(local_actor(), authority="CNIL", reference="MED-2021-134", received_on="2026-01-01",
                  source_ids=[source], cease=True, erase=True, deadline="2026-02-01", daily_penalty=1000)
    ft.breaches.add(local_actor(), title="disk lost", nature="an encrypted disk was lost",
                    data_categories=["templates"], subject_categories=["attendees"], consequences="none expected",
                    measures="key rotated",
                    aware_at=datetime.now(UTC) - timedelta(hours=80))
    received_days_ago(ft, "access", "a@example.org", 1)
    staff(ft, "dana", "dpo")
    staff(ft, "audrey", "auditor")
    sign_in(client, "dana")
    page = client.get("/console/compliance").text
    assert "CNIL MED-2021-134" in page and "day(s) late" in page and " accrued" in page
    assert 'class="overdue"' in page and "disk lost" in page and "overdue" in page
    assert "identity_pending 1" in page
    client.post("/console/sign-out", data={"csrf": csrf_of(page)})
    sign_in(client, "audrey")
    page = client.get("/console/compliance").text
    assert "disk lost" in page and "Requests by status" not in page  # the auditor does not handle requests
    verified = client.post("/console/compliance/verify", data={"csrf": csrf_of(page)})
    assert verified.status_code == 200 and "Intact:" in verified.text
    assert audit_entries(ft, "audit.verify")[-1][0] == "audrey"


def test_search_form_errors_name_the_field(ft: Facetrail, client: TestClient) -> None:
    add_source(ft, purposes=("demo", "security"))
    ft.accounts.create(local_actor(), name="scoped", role="investigator", purposes=["security"])
    StaffSignIn(ft.db, ft.audit).set_password(local_actor(), "scoped", PASSWORD)
    sign_in(client, "scoped")
    form = client.get("/console/search").text
    assert '<option value="security"' in form and '<option value="demo"' not in form  # the key's purposes only
    token = csrf_of(form)
    photo = {"photo": ("q.jpg", sample_bytes("obama.jpg"), "image/jpeg")}
    no_case = client.post("/console/search", data={"purpose": "security", "case": " ", "csrf": token}, files=photo)
    assert no_case.status_code == 422 and "case reference" in no_case.text
    assert re.search(r'id="case"[^>]*aria-invalid="true"', no_case.text)  # the error is shown beside its field
    outside = client.post("/console/search", data={"purpose": "demo", "case": "C1", "csrf": token}, files=photo)
    assert outside.status_code == 403 and "may search only for the purposes security" in outside.text
    not_photo = client.post("/console/search", data={"purpose": "security", "case": "C1", "csrf": token},
                            files={"photo": ("q.jpg", b"not an image", "image/jpeg")})
    assert not_photo.status_code == 422 and "image" in not_photo.text.lower()
    assert audit_entries(ft, "auth.denied")[-1][2]["route"] == "/console/search"


def test_a_crop_is_shown_only_to_the_account_whose_search_returned_it(samples_ft: Facetrail) -> None:
    staff(samples_ft, "ivan", "investigator")
    staff(samples_ft, "olga", "investigator")
    with TestClient(create_app(samples_ft)) as ivan, TestClient(create_app(samples_ft)) as olga:
        sign_in(ivan, "ivan")
        result = console_search(ivan, sample_bytes("biden.jpg"))
        crop = re.search(r'src="(/console/searches/[0-9a-f]+/faces/\d+/crop)"', result.text)
        assert crop, result.text
        shown = ivan.get(crop.group(1))
        assert shown.status_code == 200 and shown.headers["content-type"] == "image/jpeg"
        sign_in(olga, "olga")
        assert olga.get(crop.group(1)).status_code == 403
        assert olga.get("/console/searches/0/faces/1/crop").status_code == 404
    assert audit_entries(samples_ft, "auth.denied")[-1][0] == "olga"


def test_the_dpos_decisions_need_their_text_and_the_services_rules(ft: Facetrail, client: TestClient) -> None:
    request_id = received_days_ago(ft, "access", "a@example.org", 1)
    staff(ft, "dana", "dpo")
    sign_in(client, "dana")
    page = client.get(f"/console/requests/{request_id}").text
    assert 'id="identity-form"' in page and 'id="fulfil-form"' not in page  # not verified: nothing to answer yet

    def decide(decision: str, text: str, **more: str) -> Response:
        return client.post(f"/console/requests/{request_id}/decide",
                           data={"decision": decision, "text": text, "csrf": csrf_of(page), **more},
                           follow_redirects=False)

    for decision in ("approve", "reject", "extend", "refuse"):
        empty = decide(decision, " ")
        assert empty.status_code == 422 and "Write the reasons" in empty.text
    early = decide("approve", "looks right")
    assert early.status_code == 409 and "no passed live check" in early.text
    assert decide("fulfil", "").status_code == 409  # answered only once verified
    assert decide("extend", "Need more time.", months="1").status_code == 409  # only once verified
    # The identity verified (set here directly: the live check's own flow is the portal tests').
    with ft.db.write() as session, session.begin():
        session.execute(update(RightsRequest).where(RightsRequest.id == request_id).values(status="verified"))
    page = client.get(f"/console/requests/{request_id}").text
    assert 'id="identity-form"' not in page and 'id="fulfil-form"' in page and 'id="extend-form"' in page
    assert decide("extend", "too long", months="3").status_code == 422
    extended = decide("extend", "We need the archive back from storage.", months="2")
    assert extended.status_code == 303 and extended.headers["location"].endswith("?done=extend")
    page = client.get(extended.headers["location"]).text
    assert "Deadline extended" in page and 'id="extend-form"' not in page  # only one extension
    before = ft.requests.get(local_actor(), request_id)
    assert before.extension_months == 2 and before.extension_reasons == "We need the archive back from storage."
    refused = decide("refuse", "The requester asked us to stop.")
    assert refused.status_code == 303
    assert ft.requests.get(local_actor(), request_id).status == "refused"
    page = client.get(f"/console/requests/{request_id}").text
    assert 'id="refuse-form"' not in page and "The requester asked us to stop." in page
    assert client.get("/console/requests/nope").status_code == 404


def test_the_faces_of_the_photo_are_listed_and_another_one_can_be_searched(samples_ft: Facetrail) -> None:
    staff(samples_ft, "ivan", "investigator")
    with TestClient(create_app(samples_ft)) as client:
        sign_in(client, "ivan")
        token = csrf_of(client.get("/console/search").text)

        def search(face: str) -> Response:
            return client.post("/console/search", data={"purpose": "demo", "case": "C1", "face": face, "csrf": token},
                               files={"photo": ("q.jpg", sample_bytes("two_people.jpg"), "image/jpeg")})

        people = {name: who.split(" (")[0] for name, who in (
            line.split("\t", 1) for line in (SAMPLES / "labels.tsv").read_text().splitlines()[1:])}
        tops = []
        for face in ("", "2"):
            page = search(face)
            assert page.status_code == 200
            rows = re.findall(r"<tr(?: class=\"used\")?>\s*<td>(\d)( \(searched\))?</td>", page.text)
            assert [number for number, _ in rows] == ["1", "2"]  # both faces of the photo, by number
            assert [number for number, searched in rows if searched] == ["1" if not face else "2"]
            # The first image holding one person only (the photo itself, and the other of both, come first).
            alone = [people[Path(n).name] for n in re.findall(r'data-image="([^"]+)"', page.text)
                     if "," not in people[Path(n).name]]
            tops.append(alone[0])
        assert set(tops) == {"barack_obama", "joe_biden"}, tops
        for bad in ("3", "x"):
            refused = search(bad)
            assert refused.status_code == 422 and 'id="face"' in refused.text
            assert re.search(r'id="face"[^>]*aria-invalid="true"', refused.text)


def test_an_operator_creates_and_disables_accounts_and_sees_the_key_once(ft: Facetrail, client: TestClient) -> None:
    staff(ft, "otto", "operator")
    sign_in(client, "otto")
    page = client.get("/console/accounts").text
    assert '<option value="investigator"' in page and '<option value="dpo"' not in page  # a DPO makes DPOs
    token = csrf_of(page)

    def create(**fields: str) -> Response:
        return client.post("/console/accounts", data={"csrf": token, **fields})

    created = create(name="ines", role="investigator", purposes="security, press", expires_days="30")
    assert created.status_code == 201
    key = re.search(r'<code id="api-key">([^<]+)</code>', created.text)
    assert key and client.get("/v1/sources", headers={"Authorization": f"Bearer {key.group(1)}"}).status_code == 200
    listed = client.get("/console/accounts").text
    assert key.group(1) not in listed and 'data-name="ines"' in listed and "press, security" in listed
    assert ft.accounts.authenticate(key.group(1)).purposes == frozenset({"security", "press"})

    bad = create(name="no spaces allowed", role="investigator")
    assert bad.status_code == 422 and re.search(r'id="name"[^>]*aria-invalid="true"', bad.text)
    assert create(name="x1", role="investigator", expires_days="soon").status_code == 422
    assert create(name="x2", role="investigator", purposes="not a purpose!").status_code == 422
    overseer = create(name="dora", role="dpo")
    assert overseer.status_code == 403  # the service's own check, audited
    assert audit_entries(ft, "auth.denied")[-1][2]["route"] == "/console/accounts"

    disabled = client.post("/console/accounts/ines/disable", data={"csrf": token}, follow_redirects=False)
    assert disabled.status_code == 303
    assert client.get("/v1/sources", headers={"Authorization": f"Bearer {key.group(1)}"}).status_code == 401
    assert "disabled" in client.get("/console/accounts").text
    assert [d["name"] for _, _, d in audit_entries(ft, "account.")
            if "name" in d][-2:] == ["ines", "ines"]  # account.add, account.disable


def test_an_investigator_may_not_open_the_accounts_page(ft: Facetrail, client: TestClient) -> None:
    staff(ft, "ivan", "investigator")
    sign_in(client, "ivan")
    assert client.get("/console/accounts").status_code == 403
    assert audit_entries(ft, "auth.denied")[-1][0] == "ivan"


SOURCE_FORM = {"name": "press archive", "controller": "Agency", "purposes": "press, security",
               "legal_basis": "public_task", "art9_condition": "g", "evidence_ref": "law 2026-1",
               "jurisdictions": "FR, DE", "retention_days": "90", "description": ""}


def test_an_operator_registers_a_source_and_ingests_uploads(ft: Facetrail, client: TestClient) -> None:
    staff(ft, "otto", "operator")
    sign_in(client, "otto")
    token = csrf_of(client.get("/console/sources").text)
    for change, field in (({"retention_days": "soon"}, "retention_days"), ({"jurisdictions": "FR, XX"},
                          "jurisdictions"), ({"legal_basis": ""}, "legal_basis"), ({"art9_condition": "z"},
                          "art9_condition")):
        refused = client.post("/console/sources", data={**SOURCE_FORM, **change, "csrf": token})
        assert refused.status_code == 422, change
        assert re.search(rf'id="{field}"[^>]*aria-invalid="true"', refused.text), (field, refused.text[-3000:])
    assert ft.sources.list(local_actor()) == []
    created = client.post("/console/sources", data={**SOURCE_FORM, "csrf": token}, follow_redirects=False)
    assert created.status_code == 303
    source = ft.sources.list(local_actor())[0]
    assert (source.name, source.purposes, source.jurisdictions) == ("press archive", ["press", "security"],
                                                                    ["FR", "DE"])
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w") as members:
        members.writestr("inside/kit.jpg", sample_bytes("kit_harington1.jpeg"))
        members.writestr("inside/notes.txt", "not an image")
    report = client.post(f"/console/sources/{source.id}/images", data={"csrf": token}, files=[
        ("files", ("biden.jpg", sample_bytes("biden.jpg"), "image/jpeg")),
        ("files", ("broken.jpg", b"not a jpeg", "image/jpeg")),
        ("files", ("batch.zip", archive.getvalue(), "application/zip"))])
    assert report.status_code == 200
    text = re.sub(r"\s+", " ", report.text)
    assert "2 image(s) added with 2 face(s)" in text
    assert re.search(r'id="report-errors"><li>broken\.jpg: ', text)
    assert re.search(r'id="report-skipped"><li>[^<]*notes\.txt: ', text)
    assert audit_entries(ft, "ingest")[-1][0] == "otto"


def test_an_investigator_sees_the_sources_but_cannot_register_or_ingest(ft: Facetrail, client: TestClient) -> None:
    add_source(ft)
    staff(ft, "ivan", "investigator")
    sign_in(client, "ivan")
    page = client.get("/console/sources").text
    assert "samples" in page and 'id="source-form"' not in page and "Ingest</button>" not in page
    token = csrf_of(page)
    assert client.post("/console/sources", data={**SOURCE_FORM, "csrf": token}).status_code == 403
    assert client.post("/console/sources/1/images", data={"csrf": token},
                       files=[("files", ("b.jpg", sample_bytes("biden.jpg"), "image/jpeg"))]).status_code == 403
    assert [d["route"] for _, _, d in audit_entries(ft, "auth.denied")][-2:] == ["/console/sources",
                                                                                 "/console/sources/{source_id}/images"]
