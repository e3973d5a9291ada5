"""The stalker's flow through the HTTP portal: their own mailbox and ordinary photos of someone in the collection
(biden.jpg and biden2.jpg of the samples; Joe Biden's faces are held in four sample photos).

They must learn nothing and get nothing: confirm, access and portability never complete without the DPO, every
page before identity is proven is the same whether or not the person is held, and the collection is compared with
nothing until a live capture passed. Erasure and opt-out, automatic by default, answer without counts.
"""

from __future__ import annotations

import io
import re

import pytest
from PIL import Image
from sqlalchemy import select

from facetrail.accounts.roles import Actor, Role
from facetrail.rights.views import evidence_view
from facetrail.store.models import Face
from tests.conftest import sample_bytes
from tests.rights.biden import find_biden
from tests.rights.captures import POWELL
from tests.web.conftest import Portal, read_code

DPO = Actor("dora", Role.DPO)
IVY = Actor("ivy", Role.INVESTIGATOR)
STALKER = "stalker@example.net"


def resaved(photo: bytes, quality: int) -> bytes:
    out = io.BytesIO()
    Image.open(io.BytesIO(photo)).convert("RGB").save(out, "JPEG", quality=quality)
    return out.getvalue()


def photo_attacks(nonce_and_poses: tuple[str, list[str]]) -> list[list[tuple[int, bytes]]]:
    """What someone holding photos of the person can send for a challenge of four steps."""
    steps = range(len(nonce_and_poses[1]))
    biden, biden2 = sample_bytes("biden.jpg"), sample_bytes("biden2.jpg")
    return [
        [(step, biden2) for step in steps],  # one photo, sent for every step
        [(step, resaved(biden2, 60 + 10 * step)) for step in steps],  # the same photo saved again and again
        [(step, biden if step % 2 else biden2) for step in steps],  # both photos, taken turn about
    ]


@pytest.fixture
def counted(portal: Portal) -> list[int]:
    """Every comparison of a capture with the collection, counted."""
    calls: list[int] = []
    match = portal.ft.requests.proof.match_faces
    portal.ft.requests.proof.match_faces = (  # type: ignore[method-assign]  # a counting wrapper of the real one
        lambda template: calls.append(1) or match(template))
    return calls


@pytest.mark.parametrize("kind", ["confirm", "access", "portability"])
def test_photos_of_someone_disclose_nothing(portal: Portal, counted: list[int], kind: str) -> None:
    held = find_biden(portal.ft, IVY)
    assert len(held) >= 3
    request_id, token = portal.new_request(kind, STALKER)
    portal.send_code(request_id, token, read_code(portal.data, STALKER))
    for frames in photo_attacks(portal.challenge(request_id, token)):
        nonce, _ = portal.challenge(request_id, token)
        page = portal.send_frames(request_id, token, nonce, frames)
        assert re.search(r"note=capture-(repeated-frame|wrong-pose|face-changed)", str(page.url)), page.url
        assert 'id="answer"' not in page.text and 'id="download"' not in page.text
    assert counted == []  # the collection was never compared with anything
    status = portal.client.get(f"/portal/api/requests/{request_id}", params={"token": token}).json()
    assert status["status"] == "identity_pending" and status["answer"] is None and not status["live_check_done"]

    # With their own live face the check passes, and then the request waits for the DPO, whatever matched.
    page = portal.send_capture(request_id, token, POWELL)
    assert "note=capture-ok" in str(page.url) and counted == [1]
    assert "A member of our data protection team checks your identity" in page.text
    status = portal.client.get(f"/portal/api/requests/{request_id}", params={"token": token}).json()
    assert status["status"] == "identity_pending" and status["answer"] is None
    # The DPO sees a stranger's face that matches nobody, and the four failed attempts, and refuses.
    evidence = evidence_view(portal.ft.requests, portal.ft.requests.evidence_of(DPO, request_id))
    assert evidence["matches"] == [] and len(evidence["captures"]) == 4 and len(evidence["key_frames"]) == 4
    portal.ft.requests.reject(DPO, request_id, "the requester's face matches none of the faces held")
    refused = portal.status_page(request_id, token).text
    assert "Refused" in refused and 'id="answer"' not in refused and 'id="download"' not in refused
    assert find_biden(portal.ft, IVY) == held


@pytest.mark.parametrize("kind", ["erasure", "opt-out"])
def test_automatic_kinds_cannot_be_done_to_someone_and_reveal_no_counts(portal: Portal, counted: list[int],
                                                                         kind: str) -> None:
    held = find_biden(portal.ft, IVY)
    response = portal.intake(kind, STALKER, consent=True)
    link = re.search(r'id="status-link" href="[^"]*/portal/requests/(\w+)\?token=([^"&]+)"', response.text)
    assert response.status_code == 201 and link
    request_id, token = link.group(1), link.group(2)
    portal.send_code(request_id, token, read_code(portal.data, STALKER))
    for frames in photo_attacks(portal.challenge(request_id, token)):
        nonce, _ = portal.challenge(request_id, token)
        assert "note=capture-ok" not in str(portal.send_frames(request_id, token, nonce, frames).url)
    assert counted == [] and find_biden(portal.ft, IVY) == held  # nothing was done to him
    # With their own face it is carried out, on their own faces (none), in words that hold for anyone.
    answered = portal.send_capture(request_id, token, POWELL)
    assert "Answered" in answered.text and not re.search(r"<dd>\d+</dd>", answered.text)
    status = portal.client.get(f"/portal/api/requests/{request_id}", params={"token": token}).json()
    assert status["status"] == "completed"
    assert not any(isinstance(v, int) and not isinstance(v, bool) for v in status["answer"].values())
    assert find_biden(portal.ft, IVY) == held
    with portal.ft.db.read() as session:
        assert set(held) <= set(session.scalars(select(Face.id)))
