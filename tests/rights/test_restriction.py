"""Restriction (Art. 18): a restricted face is kept in the store but no search returns it until it is lifted."""

from __future__ import annotations

import json

from sqlalchemy import select

from facetrail.accounts.roles import Actor
from facetrail.runtime import Facetrail
from facetrail.store.models import Face
from tests.conftest import sample_bytes, template_of


def top_face(ft: Facetrail, actor: Actor, photo: str) -> list[int]:
    outcome = ft.search.search(actor, sample_bytes(photo), purpose="demo", case_ref="art18", top_k=100)
    return [hit.face_id for hit in outcome.results]


def test_a_restricted_face_is_kept_but_never_found_until_lifted(samples_ft: Facetrail, actor: Actor) -> None:
    ft = samples_ft
    before = top_face(ft, actor, "biden.jpg")
    face = before[0]  # biden.jpg's own face, found at distance 0
    result = ft.restriction.restrict(actor.name, [face], "REQ-18")
    assert result["face_ids"] == [face] and result["not_found"] == 0

    assert top_face(ft, actor, "biden.jpg") == before[1:]  # the others are still found, in the same order
    with ft.db.read() as session:
        row = session.get(Face, face)
        assert row is not None and row.restricted
        assert template_of(ft, row.template).shape == (ft.gallery.dim,)  # kept, template and all
    assert face not in ft.gallery.index().ids().tolist()
    assert ft.restriction.restrict(actor.name, [face], "REQ-18")["unchanged"] == 1

    lifted = ft.restriction.lift(actor.name, [face, 99999], "REQ-18")
    assert lifted["face_ids"] == [face] and lifted["not_found"] == 1
    assert top_face(ft, actor, "biden.jpg") == before

    actions = [(e.action, json.loads(e.details)) for e in ft.read_audit(actor, limit=1000)
               if e.action.startswith("restriction.")]
    assert [a for a, _ in actions] == ["restriction.applied", "restriction.applied", "restriction.lifted"]
    assert all(d["request_id"] == "REQ-18" for _, d in actions)
    assert ft.verify_audit(actor).ok


def test_a_restriction_holds_in_a_process_that_had_the_index_loaded(samples_ft: Facetrail, actor: Actor) -> None:
    """Another process (a running server) with the face in its loaded index drops it at its next search."""
    server = Facetrail.open(samples_ft.data, workers=1)
    try:
        face = top_face(server, actor, "obama.jpg")[0]
        samples_ft.restriction.restrict(actor.name, [face], None)
        assert face not in top_face(server, actor, "obama.jpg")
        with server.db.read() as session:
            assert session.scalar(select(Face.restricted).where(Face.id == face)) is True
        samples_ft.restriction.lift(actor.name, [face], None)
        assert top_face(server, actor, "obama.jpg")[0] == face
    finally:
        server.close()
