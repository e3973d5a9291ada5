"""Identity proof: the live challenge on real photos (see tests/rights/captures.py for how the captures were
built), matching only after it passed, the DPO's evidence and decision, and the evidence shredded on close."""

from __future__ import annotations

import base64
import io
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from PIL import Image
from sqlalchemy import select, update
from typer.testing import CliRunner

from facetrail.accounts.roles import Actor, Role
from facetrail.cli.main import app
from facetrail.errors import ConflictError, InvalidValueError, PermissionDeniedError, RateLimitedError
from facetrail.rights.liveness import Pose, new_poses, pose_of
from facetrail.rights.proof import MAX_CAPTURES, CaptureFrame
from facetrail.rights.views import evidence_view
from facetrail.runtime import Facetrail
from facetrail.store.models import AuditEntry, Face, IdentityChallenge, RightsRequest
from tests.rights.captures import BUSH, POWELL, bush_ft, capture, mirrored, photo
from tests.rights.test_requests import code_for

__all__ = ["bush_ft"]  # the fixture, used by name
DPO = Actor("dora", Role.DPO)


def verified(ft: Facetrail, kind: str, email: str, **details: object) -> tuple[str, str]:
    intake = ft.requests.intake(kind=kind, email=email, details=dict(details))
    assert ft.requests.verify_email(intake.request.id, intake.status_token, code_for(ft, email))
    return intake.request.id, intake.status_token


def answer(ft: Facetrail, kind: str, email: str, person: dict[str, tuple[str, str]], *,
           poses_of: object = None) -> tuple[str, str, str | None]:
    """A verified request and a capture of `person` for its challenge; the capture's failure or None."""
    rid, token = verified(ft, kind, email)
    challenge = ft.requests.challenge(rid, token)
    assert challenge is not None
    poses = poses_of(challenge.poses) if callable(poses_of) else challenge.poses
    return rid, token, ft.requests.submit_capture(rid, token, challenge.nonce, capture(poses, person))


def test_challenges_are_random_turn_the_head_and_are_single_use(bush_ft: Facetrail) -> None:
    orders = {tuple(new_poses()) for _ in range(200)}
    assert len(orders) > 15  # 24 orders of 4 poses with no pose twice in a row
    assert all(len(o) == 4 and all(a != b for a, b in zip(o, o[1:], strict=False)) for o in orders)
    ft = bush_ft
    intake = ft.requests.intake(kind="access", email="a@example.org")
    rid, token = intake.request.id, intake.status_token
    assert ft.requests.challenge(rid, token) is None  # nothing before the e-mail address is confirmed
    assert ft.requests.verify_email(rid, token, code_for(ft, "a@example.org"))
    first = ft.requests.challenge(rid, token)
    assert first is not None and ft.requests.challenge(rid, token) == first  # the same until used
    frames = capture(first.poses, BUSH)
    assert ft.requests.submit_capture(rid, token, first.nonce, capture(mirrored(first.poses), BUSH)) == "wrong-pose"
    with pytest.raises(ConflictError, match="expired or was already used"):  # a used challenge never answers
        ft.requests.submit_capture(rid, token, first.nonce, frames)
    second = ft.requests.challenge(rid, token)
    assert second is not None and second.nonce != first.nonce
    with ft.db.write() as session, session.begin():
        session.execute(update(IdentityChallenge).where(IdentityChallenge.request_id == rid).values(
            expires_at=datetime.now(UTC) - timedelta(seconds=1)))
    with pytest.raises(ConflictError, match="expired"):
        ft.requests.submit_capture(rid, token, second.nonce, capture(second.poses, BUSH))
    with pytest.raises(ConflictError):  # a nonce of another request does not answer this one
        ft.requests.submit_capture(rid, token, "not-a-nonce", frames)


def test_the_photos_show_the_poses_the_captures_use(bush_ft: Facetrail) -> None:
    """The test data's premise, measured: each photo shows its pose to the pipeline."""
    from facetrail.rights import identity

    for person in (BUSH, POWELL):
        for pose, names in person.items():
            for name in names:
                reading = identity.read_frame(bush_ft.analyzer, CaptureFrame(0, photo(name).read_bytes()),
                                              max_pixels=10**8, crop_size=160)
                assert reading.faces == 1 and pose_of(reading.yaw) is Pose(pose), (name, reading.yaw)


def test_the_live_check_rejects_the_bad_captures_and_accepts_the_good_one(bush_ft: Facetrail) -> None:
    ft = bush_ft
    calls: list[int] = []
    match_faces = ft.requests.proof.match_faces
    ft.requests.proof.match_faces = lambda template: calls.append(1) or match_faces(template)  # type: ignore[method-assign]  # counts the comparisons with the collection

    still = photo(BUSH["front"][0]).read_bytes()
    rid, token = verified(ft, "access", "still@example.org")
    challenge = ft.requests.challenge(rid, token)
    assert challenge is not None
    same = [CaptureFrame(step, still) for step in range(4)]
    assert ft.requests.submit_capture(rid, token, challenge.nonce, same) == "repeated-frame"
    # The same still photo saved again at other qualities (new bytes, new pixels) still shows no head turn.
    challenge = ft.requests.challenge(rid, token)
    assert challenge is not None
    resaved = []
    for step in range(4):
        out = io.BytesIO()
        Image.open(io.BytesIO(still)).save(out, "JPEG", quality=70 + 5 * step)
        resaved.append(CaptureFrame(step, out.getvalue()))
    assert ft.requests.submit_capture(rid, token, challenge.nonce, resaved) == "wrong-pose"

    # A capture made for another challenge (the poses in another order).
    assert answer(ft, "access", "replay@example.org", BUSH, poses_of=mirrored)[2] == "wrong-pose"

    # A face that changes mid-way: Bush for two steps, then Powell.
    rid, token = verified(ft, "access", "swap@example.org")
    challenge = ft.requests.challenge(rid, token)
    assert challenge is not None
    frames = capture(challenge.poses[:2], BUSH) + [
        CaptureFrame(f.step + 2, f.data) for f in capture(challenge.poses[2:], POWELL)]
    assert ft.requests.submit_capture(rid, token, challenge.nonce, frames) == "face-changed"
    assert calls == []  # no capture that failed was ever compared with the collection

    # Another person, live and following the challenge: the check passes, nothing of the collection matches.
    powell, _, failure = answer(ft, "access", "colin@example.org", POWELL)
    assert failure is None and calls == [1]
    # The right person: his three held faces, at the strong band.
    bush, _, failure = answer(ft, "access", "george@example.org", BUSH)
    assert failure is None and calls == [1, 1]
    with ft.db.read() as session:
        held = sorted(session.scalars(select(Face.id).where(Face.source_id == 2)))
        assert session.get(RightsRequest, powell).matched_face_ids == []  # type: ignore[union-attr]
        request = session.get(RightsRequest, bush)
        assert request is not None and request.matched_face_ids == held and len(held) == 3
        assert {m["band"] for m in request.evidence["matches"]} == {"strong"}  # type: ignore[index]


def test_captures_per_request_are_limited_and_bad_input_is_refused(bush_ft: Facetrail) -> None:
    ft = bush_ft
    rid, token = verified(ft, "erasure", "many@example.org")
    for _ in range(MAX_CAPTURES):
        challenge = ft.requests.challenge(rid, token)
        assert challenge is not None
        assert ft.requests.submit_capture(rid, token, challenge.nonce, []) == "missing-step"
    challenge = ft.requests.challenge(rid, token)
    assert challenge is not None
    with pytest.raises(RateLimitedError):
        ft.requests.submit_capture(rid, token, challenge.nonce, capture(challenge.poses, BUSH))
    from facetrail.errors import MediaError

    rid, token = verified(ft, "erasure", "broken@example.org")
    challenge = ft.requests.challenge(rid, token)
    assert challenge is not None
    with pytest.raises(MediaError):
        ft.requests.submit_capture(rid, token, challenge.nonce,
                                   [CaptureFrame(0, b"not an image"), *capture(challenge.poses, BUSH)[1:]])


def test_the_dpo_judges_the_evidence_and_it_is_shredded_on_close(bush_ft: Facetrail, tmp_path: Path) -> None:
    ft = bush_ft
    rid, token, failure = answer(ft, "access", "george@example.org", BUSH)
    ft.requests.add_document(rid, token, "letter.pdf", "application/pdf", b"%PDF-1.4 a letter to George")
    assert failure is None
    status = ft.requests.status(rid, token)
    assert status.status == "identity_pending" and status.answer is None  # disclosure waits for the DPO
    with pytest.raises(PermissionDeniedError):
        ft.requests.evidence_of(Actor("ivy", Role.INVESTIGATOR), rid)
    view = evidence_view(ft.requests, ft.requests.evidence_of(DPO, rid))
    assert view["email"]["verified"] and view["email"]["address"] == "george@example.org"
    assert [f["pose"] for f in view["key_frames"]] == view["captures"][-1]["poses"]
    for frame in view["key_frames"]:
        assert Image.open(io.BytesIO(base64.b64decode(frame["jpeg_base64"]))).size[0] > 20
    assert len(view["matches"]) == 3 and all(m["band"] == "strong" and m["score"] >= 80 and m["crop_base64"]
                                             for m in view["matches"])
    assert base64.b64decode(view["documents"][0]["data_base64"]).startswith(b"%PDF")

    result = CliRunner().invoke(app, ["--data", str(ft.data), "request", "show", rid, "--evidence",
                                      str(tmp_path / "ev"), "--json"])
    assert result.exit_code == 0, result.output
    written = json.loads(result.output)["files"]
    assert any(f.endswith("sheet.jpg") for f in written) and len(written) == 4 + 3 + 1 + 1
    with pytest.raises(InvalidValueError, match="reason"):
        ft.requests.approve(DPO, rid, " ")
    with ft.db.read() as session:
        request = session.get(RightsRequest, rid)
        assert request is not None and request.evidence_key_id
        key_id, blobs = request.evidence_key_id, [f["blob"] for f in request.evidence["key_frames"]]  # type: ignore[index]
    assert ft.vault.keyring.existing([key_id]) == {key_id} and all(ft.blobs.exists(b) for b in blobs)

    ft.requests.approve(DPO, rid, "the key frames show the man in the three held photos; letter addressed to him")
    status = ft.requests.status(rid, token)
    assert status.status == "completed" and status.answer["faces"] == 3
    # Closed: the key is destroyed, the files are gone, only the count of attempts is left.
    assert ft.vault.keyring.existing([key_id]) == set() and not any(ft.blobs.exists(b) for b in blobs)
    assert not any(p.is_file() for p in (ft.data / "blobs" / "evidence").rglob("*"))
    after = evidence_view(ft.requests, ft.requests.evidence_of(DPO, rid))
    assert after["key_frames"] == [] and after["documents"] == [] and after["deleted_at"]
    with ft.db.read() as session:
        actions = [(e.action, e.details) for e in session.scalars(select(AuditEntry))]
    assert sum(a == "request.evidence_viewed" and rid in d for a, d in actions) == 3
    assert any("identity approved: the key frames show" in d for a, d in actions if a == "request.event")


def test_automatic_kinds_answer_the_same_for_a_person_held_or_not(bush_ft: Facetrail) -> None:
    ft = bush_ft
    answers = {}
    for kind in ("erasure", "opt-out", "restriction"):
        details = {"consent_to_keep_templates": True} if kind == "opt-out" else {}
        for who, person in (("powell", POWELL), ("bush", BUSH)):
            rid, token = verified(ft, kind, f"{who}-{kind}@example.org", **details)
            challenge = ft.requests.challenge(rid, token)
            assert challenge is not None
            assert ft.requests.submit_capture(rid, token, challenge.nonce, capture(challenge.poses, person)) is None
            status = ft.requests.status(rid, token)
            assert status.status == "completed", status
            answers[(kind, who)] = status.answer
            staff = ft.requests.get(DPO, rid).staff_answer
            assert staff is not None
        assert answers[(kind, "powell")] == answers[(kind, "bush")], kind
        assert not any(isinstance(v, int) and not isinstance(v, bool) for v in answers[(kind, "bush")].values())
    # And the effects took place: Bush's held faces were erased, the staff record says how many.
    with ft.db.read() as session:
        assert session.scalars(select(Face.id).where(Face.source_id == 2)).all() == []
        receipts = [r.staff_answer for r in session.scalars(select(RightsRequest).where(
            RightsRequest.kind == "erasure"))]
    assert sorted(r["erasure_receipt"]["faces_erased"] for r in receipts if r) == [0, 3]


def test_an_operator_may_make_access_automatic_and_a_bad_kind_is_refused(bush_ft: Facetrail) -> None:
    bush_ft.close()
    with pytest.raises(InvalidValueError, match="auto_approve"):
        Facetrail.open(bush_ft.data, workers=1, auto_approve=["erasure", "forget"]).requests  # noqa: B018  # wiring validates
    ft = Facetrail.open(bush_ft.data, workers=1, auto_approve=["confirm"])
    try:
        rid, token, failure = answer(ft, "confirm", "george@example.org", BUSH)
        assert failure is None and ft.requests.status(rid, token).answer["holds_data"] is True
    finally:
        ft.close()


def test_the_template_kept_for_an_opt_out_is_the_capture(bush_ft: Facetrail) -> None:
    """An opt-out keeps the held faces' templates and the capture's own, so a new photo is dropped at the door."""
    ft = bush_ft
    rid, token = verified(ft, "opt-out", "george@example.org", consent_to_keep_templates=True)
    challenge = ft.requests.challenge(rid, token)
    assert challenge is not None
    assert ft.requests.submit_capture(rid, token, challenge.nonce, capture(challenge.poses, BUSH)) is None
    staff = ft.requests.get(DPO, rid).staff_answer
    assert staff is not None and staff["templates_kept"] == 4
    from facetrail.sources.inputs import from_paths
    from tests.conftest import add_source
    from tests.rights.captures import OPERATOR

    source = add_source(ft, name="new photos")
    report = ft.ingest.ingest(OPERATOR, source, from_paths([photo("George_W_Bush_0001.jpg")], ft.input_limits))
    assert report.faces_suppressed == 1 and report.faces_added == 0


def test_the_portal_can_answer_an_automatic_kind_after_its_response(bush_ft: Facetrail) -> None:
    """The portal's capture answer returns before an erasure runs (its timing must not tell whether anything was
    held): the service leaves the request verified, and `answer_verified` carries it out."""
    ft = bush_ft
    rid, token = verified(ft, "erasure", "george@example.org")
    challenge = ft.requests.challenge(rid, token)
    assert challenge is not None
    assert ft.requests.submit_capture(rid, token, challenge.nonce, capture(challenge.poses, BUSH),
                                      answer_now=False) is None
    assert ft.requests.status(rid, token).status == "verified"
    with ft.db.read() as session:
        assert len(session.scalars(select(Face.id).where(Face.source_id == 2)).all()) == 3
    ft.requests.answer_verified(rid)
    ft.requests.answer_verified(rid)  # once only: a second call finds it answered
    assert ft.requests.status(rid, token).status == "completed"
    with ft.db.read() as session:
        assert session.scalars(select(Face.id).where(Face.source_id == 2)).all() == []


def test_the_dpo_reads_the_evidence_and_decides_through_the_api(bush_ft: Facetrail) -> None:
    from fastapi.testclient import TestClient

    from facetrail.api import create_app
    from facetrail.runtime import local_actor

    ft = bush_ft
    rid, _token, failure = answer(ft, "portability", "george@example.org", BUSH)
    assert failure is None
    key = ft.accounts.create(local_actor(), name="dora", role="dpo")[1]
    with TestClient(create_app(ft)) as client:
        headers = {"Authorization": f"Bearer {key}"}
        evidence = client.get(f"/v1/requests/{rid}/evidence", headers=headers)
        assert evidence.status_code == 200, evidence.text
        body = evidence.json()
        assert len(body["key_frames"]) == 4 and len(body["matches"]) == 3 and body["email"]["verified"]
        assert all(m["crop_base64"] and m["band"] == "strong" for m in body["matches"])
        assert client.post(f"/v1/requests/{rid}/approve", headers=headers, json={}).status_code == 422
        approved = client.post(f"/v1/requests/{rid}/approve", headers=headers,
                               json={"reason": "key frames match the held faces"})
        assert approved.status_code == 200 and approved.json()["status"] == "completed"
        assert approved.json()["answer"]["faces"] == 3
        gone = client.get(f"/v1/requests/{rid}/evidence", headers=headers).json()
        assert gone["key_frames"] == [] and gone["deleted_at"]
