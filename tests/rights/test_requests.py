"""The request workflow end to end on real data: intake, e-mail code, live check, the DPO, answers.

The requester is George W. Bush, three of whose LFW photos are added to the samples store; his live captures are
built from other photos of him (tests/rights/captures.py says how). Colin Powell is a live person held nowhere.
"""

from __future__ import annotations

import io
import json
import re
import zipfile
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from sqlalchemy import func, select, update
from typer.testing import CliRunner

from facetrail.accounts.roles import Actor, Role
from facetrail.cli.main import app
from facetrail.errors import ConflictError, InvalidValueError, PermissionDeniedError
from facetrail.rights.access import build_package
from facetrail.runtime import Facetrail
from facetrail.store.models import Face, RightsRequest, SearchResultRecord, StoredImage
from tests.conftest import labelled_people, sample_bytes
from tests.rights.captures import BUSH, POWELL, capture, hold_bush, photo

DPO = Actor("dora", Role.DPO)
IVY = Actor("ivy", Role.INVESTIGATOR)
BUSH_QUERY = photo("George_W_Bush_0001.jpg").read_bytes()  # in neither the collection nor the captures


def code_for(ft: Facetrail, email: str) -> str:
    """The newest code mailed to `email`, read from the outbox like the person would."""
    for path in sorted((ft.data / "outbox").glob("*.eml"), reverse=True):
        text = path.read_text()
        if f"To: {email}" in text and "confirmation code" in text:
            found = re.search(r"Your confirmation code: (\d{6})", text)
            assert found
            return found.group(1)
    raise AssertionError(f"no code mailed to {email}")


def full_request(ft: Facetrail, kind: str, person: dict[str, tuple[str, str]] = BUSH,
                 email: str = "george@example.org", *, approve: bool = True, **details: object) -> tuple[str, str]:
    """Intake, the e-mail code and a live capture of `person`; then, when the request waits for the DPO's
    judgement and `approve` is set, the DPO's approval."""
    intake = ft.requests.intake(kind=kind, email=email, details=dict(details), client_ip="203.0.113.5")
    rid, token = intake.request.id, intake.status_token
    assert ft.requests.verify_email(rid, token, code_for(ft, email))
    challenge = ft.requests.challenge(rid, token)
    assert challenge is not None
    assert ft.requests.submit_capture(rid, token, challenge.nonce, capture(challenge.poses, person)) is None
    if approve and ft.requests.get(DPO, rid).manual_check == "required":
        ft.requests.approve(DPO, rid, "the capture's key frames show the person of the matched faces")
    return rid, token


def obama_face_ids(ft: Facetrail) -> set[int]:
    """Faces in photos labelled as Obama's, by searching them at the strong band (the test's ground truth)."""
    found: set[int] = set()
    for name in ("obama.jpg", "obama2.jpg", "obama3.jpg"):
        outcome = ft.search.search(IVY, sample_bytes(name), purpose="demo", case_ref="truth", top_k=100,
                                   min_band="strong")
        found |= {r.face_id for r in outcome.results}
    return found


@pytest.fixture
def rights_ft(samples_ft: Facetrail) -> Iterator[Facetrail]:
    """The samples store with three photos of Bush (source 2)."""
    hold_bush(samples_ft)
    yield samples_ft


def bush_faces(ft: Facetrail) -> list[int]:
    with ft.db.read() as session:
        return sorted(session.scalars(select(Face.id).where(Face.source_id == 2)))


def test_access_package_is_complete(rights_ft: Facetrail) -> None:
    ft = rights_ft
    ft.search.search(IVY, BUSH_QUERY, purpose="demo", case_ref="case-A", top_k=5)
    ft.search.search(IVY, sample_bytes("kit_harington1.jpeg"), purpose="demo", case_ref="case-K", top_k=5,
                     min_band="strong")
    truth = bush_faces(ft)
    request_id, token = full_request(ft, "access")
    status = ft.requests.status(request_id, token)
    assert status.status == "completed" and status.answer["faces"] == len(truth) == 3
    url = status.answer["download"]
    package = ft.requests.download(request_id, url.split("token=")[1])
    archive = zipfile.ZipFile(io.BytesIO(package))
    data = json.loads(archive.read("data.json"))
    assert {f["face_id"] for f in data["faces"]} == set(truth)
    assert all("George_W_Bush" in f["original_name"] for f in data["faces"]) and "index.html" in archive.namelist()
    for face in data["faces"]:
        assert face["source"]["legal_basis"] == "consent" and face["source"]["purposes"] == ["demo"]
        assert face["deleted_by"] and face["source"]["retention_days"] == 365
    # Recipients: exactly the searches that returned one of his faces, with role, purpose and case only.
    with ft.db.read() as session:
        expected = set(session.scalars(select(SearchResultRecord.search_id).where(
            SearchResultRecord.face_id.in_(truth))))
    assert len(data["recipients"]) == len(expected) and {r["case_ref"] for r in data["recipients"]} == {"case-A"}
    assert all(set(r) == {"date", "role", "purpose", "case_ref", "your_faces_shown"} for r in data["recipients"])


def test_case_references_are_withheld_by_the_purposes_policy_with_its_ground(rights_ft: Facetrail) -> None:
    ft = rights_ft
    ft.search.search(IVY, BUSH_QUERY, purpose="demo", case_ref="op-NIGHTJAR", top_k=5)
    with pytest.raises(InvalidValueError, match="legal_ground"):
        ft.disclosure.set(DPO, "demo", "withhold")
    with pytest.raises(PermissionDeniedError):
        ft.disclosure.set(IVY, "demo", "disclose")
    ground = "Art. 23(1)(d) GDPR with the national law on criminal investigations, while the case is open"
    ft.disclosure.set(DPO, "demo", "withhold", ground)
    request_id, token = full_request(ft, "access")
    url = ft.requests.status(request_id, token).answer["download"]
    archive = zipfile.ZipFile(io.BytesIO(ft.requests.download(request_id, url.split("token=")[1])))
    data = json.loads(archive.read("data.json"))
    assert data["recipients"] and all(r["case_ref"] is None and r["case_ref_withheld"] == ground
                                      and r["purpose"] == "demo" and r["role"] == "investigator"
                                      for r in data["recipients"])
    page = archive.read("index.html").decode()
    assert "op-NIGHTJAR" not in page and "case reference withheld (legal ground: Art. 23(1)(d)" in page
    listed = json.loads(CliRunner().invoke(app, ["--data", str(ft.data), "request", "policies", "--json"]).output)
    assert listed[0]["purpose"] == "demo" and listed[0]["case_refs"] == "withhold" and listed[0]["set_at"][-1] == "Z"


def test_the_package_hides_other_peoples_faces(rights_ft: Facetrail) -> None:
    """The group photo two_people.jpg in Obama's package: Biden's face hidden, Obama's not."""
    ft = rights_ft
    truth = obama_face_ids(ft)
    people = labelled_people()
    intake = ft.requests.intake(kind="access", email="barack@example.org")
    package, summary = build_package(ft.db, ft.blobs, intake.request, sorted(truth), ft.settings.max_image_pixels)
    archive = zipfile.ZipFile(io.BytesIO(package))
    data = json.loads(archive.read("data.json"))
    assert summary["faces"] == len(truth)
    assert {Path(f["original_name"]).name for f in data["faces"]} == {
        n for n, who in people.items() if "barack_obama" in who}
    group = next(f for f in data["faces"] if f["original_name"].endswith("two_people.jpg"))
    with ft.db.read() as session:
        image = session.get(StoredImage, group["image_id"])
        assert image is not None
        biden = next(f for f in session.scalars(select(Face).where(Face.image_id == image.id))
                     if f.id != group["face_id"])
    original = np.asarray(Image.open(io.BytesIO(sample_bytes("two_people.jpg"))).convert("RGB"), dtype=float)
    shown = np.asarray(Image.open(io.BytesIO(archive.read(group["image_file"]))).convert("RGB"), dtype=float)
    b, o = (biden.box_top, biden.box_bottom, biden.box_left, biden.box_right), group["box"]
    assert np.abs(shown[b[0]:b[1], b[2]:b[3]] - original[b[0]:b[1], b[2]:b[3]]).mean() > 10

    def detail(pixels: np.ndarray) -> float:  # mean gradient: what a face is recognised from
        region = pixels[b[0]:b[1], b[2]:b[3]].mean(axis=2)
        return float(np.abs(np.diff(region, axis=0)).mean() + np.abs(np.diff(region, axis=1)).mean())

    assert detail(shown) < detail(original) / 4
    found = ft.analyzer.backend.detect(shown.astype(np.uint8))  # the default detector no longer finds him there
    assert len(found) == 1 and found[0].box.left < o["right"] and found[0].box.right > o["left"], found
    assert np.abs(shown[o["top"]:o["bottom"], o["left"]:o["right"]]
                  - original[o["top"]:o["bottom"], o["left"]:o["right"]]).mean() < 8


def test_repeated_access_requests_are_each_answered_in_full(rights_ft: Facetrail) -> None:
    answers = [rights_ft.requests.status(*full_request(rights_ft, "access")).answer for _ in range(3)]
    assert answers[0]["faces"] == 3 and all(a["faces"] == answers[0]["faces"] for a in answers)


def test_wrong_code_or_unknown_face_reveals_nothing(rights_ft: Facetrail) -> None:
    ft = rights_ft
    intake = ft.requests.intake(kind="confirm", email="someone@example.org", client_ip="198.51.100.7")
    rid, token = intake.request.id, intake.status_token
    assert not ft.requests.verify_email(rid, token, "000000" if code_for(ft, "someone@example.org") != "000000"
                                        else "111111")
    with pytest.raises(ConflictError):  # no live check before the e-mail address is confirmed
        ft.requests.submit_capture(rid, token, "nonce", capture(["front"], BUSH))
    unverified = ft.requests.status(rid, token)
    assert unverified.answer is None and unverified.status == "identity_pending"
    # A live person whose face is not held: the same wait for the DPO, then the same shape, with nothing found.
    colin, colin_token = full_request(ft, "confirm", POWELL, email="colin@example.org", approve=False)
    waiting = ft.requests.status(colin, colin_token)
    assert waiting.answer is None and waiting.status == "identity_pending" and waiting.live_check_done
    ft.requests.approve(DPO, colin, "a live capture; nothing held matches it")
    no_match = ft.requests.status(colin, colin_token)
    assert no_match.as_dict().keys() == unverified.as_dict().keys()
    assert no_match.answer == {"holds_data": False, "faces": 0, "images": 0}
    # Five wrong codes lock the code out: the right one no longer works.
    other = ft.requests.intake(kind="confirm", email="late@example.org", client_ip="198.51.100.8")
    for _ in range(5):
        ft.requests.verify_email(other.request.id, other.status_token, "999999x")
    assert not ft.requests.verify_email(other.request.id, other.status_token, code_for(ft, "late@example.org"))


def test_manual_check_holds_every_kind_until_approved(rights_ft: Facetrail) -> None:
    rights_ft.close()
    ft = Facetrail.open(rights_ft.data, workers=1, manual_check=True)
    try:
        rid, token = full_request(ft, "erasure", approve=False)
        assert ft.requests.status(rid, token).answer is None and bush_faces(ft) != []
        ft.requests.approve(DPO, rid, "key frames and held faces are the same man")
        answer = ft.requests.status(rid, token).answer
        assert answer["erasure_receipt"]["faces_erased"] == 3 and bush_faces(ft) == []  # judged: counts shown
        rid2, token2 = full_request(ft, "access", email="other@example.org", approve=False)
        with pytest.raises(InvalidValueError, match="justification"):
            ft.requests.reject(DPO, rid2, "")
        ft.requests.reject(DPO, rid2, "the capture does not show the requester")
        status = ft.requests.status(rid2, token2)
        assert status.status == "refused" and status.answer is None
        assert status.refusal is not None and "supervisory" in status.refusal.complaint
    finally:
        ft.close()


def test_extension_needs_reasons_and_the_first_month(rights_ft: Facetrail) -> None:
    ft = rights_ft
    rid, _token = full_request(ft, "rectification", message="wrong date")
    with pytest.raises(InvalidValueError, match="reasons"):
        ft.requests.extend(DPO, rid, months=1, reasons="  ")
    ft.requests.extend(DPO, rid, months=2, reasons="the archive is being migrated")
    view = ft.requests.get(DPO, rid)
    assert (ft.requests.due(view) - view.received_at).days >= 89
    late = ft.requests.intake(kind="rectification", email="s@example.org")
    with ft.db.write() as session, session.begin():
        session.execute(update(RightsRequest).where(RightsRequest.id == late.request.id).values(
            received_at=datetime.now(UTC) - timedelta(days=40)))
    with pytest.raises(ConflictError, match="first month"):
        ft.requests.extend(DPO, late.request.id, months=1, reasons="busy")


def test_refusal_needs_a_justification_and_tells_of_the_right_to_complain(rights_ft: Facetrail) -> None:
    ft = rights_ft
    intake = ft.requests.intake(kind="access", email="x@example.org")
    with pytest.raises(InvalidValueError, match="justification"):
        ft.requests.refuse(DPO, intake.request.id, "")
    ft.requests.refuse(DPO, intake.request.id, "the fifth identical request today", unfounded=True)
    status = ft.requests.status(intake.request.id, intake.status_token)
    assert "supervisory authority" in status.refusal.complaint
    with pytest.raises(PermissionDeniedError):
        ft.requests.refuse(IVY, intake.request.id, "no")


def test_intake_validates_and_records_at_once(rights_ft: Facetrail) -> None:
    ft = rights_ft
    with pytest.raises(InvalidValueError, match="email"):
        ft.requests.intake(kind="access", email="not-an-address")
    with pytest.raises(InvalidValueError, match="kind"):
        ft.requests.intake(kind="forget-me-maybe", email="a@example.org")
    with pytest.raises(InvalidValueError, match="consent"):
        ft.requests.intake(kind="opt-out", email="a@example.org")
    intake = ft.requests.intake(kind="objection", email="a@example.org", details={"reasons": "my situation"})
    request = ft.requests.get(DPO, intake.request.id)
    assert request.status == "identity_pending" and [e.to_status for e in request.events] == [
        "received", "identity_pending"]
    assert request.due_at.date() >= (request.received_at + timedelta(days=28)).date()
    # Disclosures and decisions wait for the DPO's judgement; erasure, restriction and opt-out do not.
    kinds = {k: ft.requests.intake(kind=k, email=f"{i}@example.org", details={"consent_to_keep_templates": True}
                                   if k == "opt-out" else {}).request.manual_check
             for i, k in enumerate(("confirm", "access", "portability", "erasure", "restriction", "opt-out"))}
    assert kinds == {"confirm": "required", "access": "required", "portability": "required", "erasure": "none",
                     "restriction": "none", "opt-out": "none"}


def test_overdue_command_exits_non_zero(rights_ft: Facetrail) -> None:
    ft = rights_ft
    runner = CliRunner()
    assert runner.invoke(app, ["--data", str(ft.data), "request", "overdue"]).exit_code == 0
    intake = ft.requests.intake(kind="access", email="late@example.org")
    with ft.db.write() as session, session.begin():
        session.execute(update(RightsRequest).where(RightsRequest.id == intake.request.id).values(
            due_at=datetime.now(UTC) - timedelta(days=1)))
    result = runner.invoke(app, ["--data", str(ft.data), "request", "overdue"])
    assert result.exit_code == 1 and intake.request.id in result.output
    listed = json.loads(runner.invoke(app, ["--data", str(ft.data), "request", "list", "--json"]).output)
    assert listed[0]["id"] == intake.request.id and listed[0]["overdue"] is True


def test_erasure_opt_out_restriction_and_objection_through_requests(rights_ft: Facetrail) -> None:
    """Each kind of request ends in its effect on the data once identity is verified."""
    ft = rights_ft
    held = bush_faces(ft)

    def bush_results(min_band: str = "auto") -> list[int]:
        outcome = ft.search.search(IVY, BUSH_QUERY, purpose="demo", case_ref="check", top_k=50, min_band=min_band)
        return [r.face_id for r in outcome.results]

    assert set(held) <= set(bush_results("strong"))
    # Restriction (automatic): kept, but out of search; the answer gives no count, the staff record does.
    rid, token = full_request(ft, "restriction", email="joe@example.org")
    assert "restricted_faces" not in ft.requests.status(rid, token).answer
    assert ft.requests.get(DPO, rid).staff_answer == {"restricted_faces": 3}
    assert bush_results() == []  # at the default (automatic) threshold, nobody
    assert not set(held) & set(bush_results("none"))  # and his faces at no distance at all
    with ft.db.read() as session:
        assert session.scalar(select(func.count()).select_from(Face).where(Face.restricted.is_(True))) == 3
    # An objection waits for the DPO's judgement, then the decision; an upheld one erases (restricted included).
    rid, token = full_request(ft, "objection", email="joe2@example.org", reasons="I never agreed to this")
    assert ft.requests.status(rid, token).status == "verified"
    ft.requests.decide_objection(DPO, rid, uphold=True, reason="no compelling grounds")
    answer = ft.requests.status(rid, token).answer
    assert answer["objection"] == "upheld" and answer["erasure_receipt"]["faces_erased"] == 3
    assert bush_faces(ft) == []
    # Opt-out (with consent to keep only his templates): his face is dropped at the door from now on.
    rid, token = full_request(ft, "opt-out", email="joe3@example.org", consent_to_keep_templates=True)
    assert ft.requests.status(rid, token).answer["opted_out"] is True
    from facetrail.sources.inputs import from_paths
    from tests.conftest import add_source
    from tests.rights.captures import BUSH_HELD, OPERATOR

    source = add_source(ft, name="second batch")
    report = ft.ingest.ingest(OPERATOR, source, from_paths([photo(n) for n in BUSH_HELD], ft.input_limits))
    assert report.faces_suppressed == 3 and report.faces_added == 0


def test_download_link_expires(rights_ft: Facetrail) -> None:
    from facetrail.errors import NotFoundError

    rid, token = full_request(rights_ft, "access")
    package_token = rights_ft.requests.status(rid, token).answer["download"].split("token=")[1]
    assert rights_ft.requests.download(rid, package_token)[:2] == b"PK"
    with pytest.raises(NotFoundError):
        rights_ft.requests.download(rid, "not-the-token")
    with rights_ft.db.write() as session, session.begin():
        session.execute(update(RightsRequest).where(RightsRequest.id == rid).values(
            package_expires_at=datetime.now(UTC) - timedelta(seconds=1)))
    with pytest.raises(NotFoundError, match="expired"):
        rights_ft.requests.download(rid, package_token)
    with rights_ft.db.read() as session:
        key = session.get(RightsRequest, rid).package_key  # type: ignore[union-attr]
    assert key is not None
    data_key = rights_ft.blobs.key_id(key)
    assert rights_ft.requests.purge_expired_packages() == 1  # also done whenever the data directory is opened
    assert not rights_ft.blobs.exists(key) and rights_ft.vault.keyring.existing([data_key]) == set()


def test_the_status_link_expires_some_time_after_the_request_closed(rights_ft: Facetrail) -> None:
    from facetrail.errors import NotFoundError

    rid, token = full_request(rights_ft, "confirm")
    assert rights_ft.requests.status(rid, token).status == "completed"
    days = rights_ft.settings.status_link_days
    with rights_ft.db.write() as session, session.begin():
        session.execute(update(RightsRequest).where(RightsRequest.id == rid).values(
            closed_at=datetime.now(UTC) - timedelta(days=days, seconds=1)))
    with pytest.raises(NotFoundError, match="expired"):
        rights_ft.requests.status(rid, token)
    with pytest.raises(NotFoundError, match="no request matches"):  # a wrong token learns nothing more
        rights_ft.requests.status(rid, "not-the-token")


def test_an_erasure_shreds_the_access_packages_that_showed_the_person(rights_ft: Facetrail) -> None:
    from facetrail.errors import NotFoundError

    ft = rights_ft
    rid, token = full_request(ft, "access")
    package_token = ft.requests.status(rid, token).answer["download"].split("token=")[1]
    with ft.db.read() as session:
        request = session.get(RightsRequest, rid)
        assert request is not None and request.package_key is not None
        package_key = request.package_key
    package_data_key = ft.blobs.key_id(package_key)
    assert ft.requests.download(rid, package_token)[:2] == b"PK"

    erasure, _ = full_request(ft, "erasure")
    receipt = ft.requests.get(DPO, erasure).staff_answer["erasure_receipt"]  # type: ignore[index]
    assert receipt["access_packages_deleted"] == 1
    assert not ft.blobs.exists(package_key) and ft.vault.keyring.existing([package_data_key]) == set()
    with pytest.raises(NotFoundError):
        ft.requests.download(rid, package_token)
