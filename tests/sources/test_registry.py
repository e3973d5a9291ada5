"""Editing sources: in place for descriptions, evidence, retention and contacts; a new version, with its reason,
for a change of the legal terms; every change audited, the history kept and never rewritten."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from sqlalchemy import select, text
from sqlalchemy.exc import DatabaseError

from facetrail.accounts.roles import Actor, Role
from facetrail.errors import InvalidValueError, NotFoundError, PermissionDeniedError
from facetrail.runtime import Facetrail
from facetrail.sources.inputs import from_paths
from facetrail.store.db import make_engine, migrate
from facetrail.store.models import StoredImage
from tests.conftest import LFW, add_source, migrated_to, sample_bytes


def updates(ft: Facetrail, actor: Actor) -> list[dict[str, object]]:
    return [json.loads(e.details) for e in ft.read_audit(actor, limit=1000) if e.action == "source.update"]


def test_description_evidence_retention_and_contacts_change_in_place_audited(ft: Facetrail, actor: Actor) -> None:
    source_id = add_source(ft)
    source = ft.sources.update(actor, source_id, description="club photos", evidence_ref="forms/2027",
                               retention_days=30, controller_contact="privacy@club.example",
                               representative="EU Rep Ltd, Dublin")
    assert (source.version, source.retention_days, source.evidence_ref) == (1, 30, "forms/2027")
    assert (source.controller_contact, source.representative) == ("privacy@club.example", "EU Rep Ltd, Dublin")
    assert ft.sources.get(actor, source_id).description == "club photos"
    assert updates(ft, actor) == [{"source_id": source_id, "changes": {
        "description": {"from": "", "to": "club photos"},
        "evidence_ref": {"from": "consent-records/1", "to": "forms/2027"},
        "retention_days": {"from": 365, "to": 30},
        "controller_contact": {"from": "", "to": "privacy@club.example"},
        "representative": {"from": "", "to": "EU Rep Ltd, Dublin"}}}]
    assert [v.version for v in ft.sources.versions(actor, source_id)] == [1]
    ft.sources.update(actor, source_id, retention_days=30)  # its current value: no change, no entry
    assert len(updates(ft, actor)) == 1


def test_a_change_of_legal_terms_is_a_new_version_and_search_uses_it(samples_ft: Facetrail, actor: Actor) -> None:
    with pytest.raises(InvalidValueError) as caught:
        samples_ft.sources.update(actor, 1, purposes=["press"])
    assert caught.value.field == "reason"
    source = samples_ft.sources.update(actor, 1, purposes=["press", "archive"], legal_basis="legitimate_interests",
                                       art9_condition="e", reason="photos made public by the people in them")
    assert source.version == 2 and source.purposes == ["press", "archive"]
    history = [(v.version, v.purposes, v.legal_basis, v.art9_condition, v.reason)
               for v in samples_ft.sources.versions(actor, 1)]
    assert history == [(1, ["demo"], "consent", "a", "registered"),
                       (2, ["press", "archive"], "legitimate_interests", "e",
                        "photos made public by the people in them")]
    assert updates(samples_ft, actor)[-1] == {"source_id": 1, "version": 2,
                                              "reason": "photos made public by the people in them", "changes": {
        "purposes": {"from": ["demo"], "to": ["press", "archive"]},
        "legal_basis": {"from": "consent", "to": "legitimate_interests"},
        "art9_condition": {"from": "a", "to": "e"}}}
    # Each image records the version it was ingested under: the samples 1, a photo ingested now 2.
    new_photo = sorted((LFW / "Abdullah_Gul").glob("*.jpg"))[0]
    assert samples_ft.ingest.ingest(actor, 1, from_paths([new_photo], samples_ft.input_limits)).images_added == 1
    with samples_ft.db.read() as session:
        versions = dict(session.execute(select(StoredImage.original_name, StoredImage.source_version)).all())
    assert versions.pop(str(new_photo)) == 2 and set(versions.values()) == {1}
    # Search reaches the source under its current purposes only.
    assert samples_ft.search.search(actor, sample_bytes("obama2.jpg"), purpose="press", case_ref="c").results
    with pytest.raises(InvalidValueError, match="'demo'.*archive, press"):
        samples_ft.search.search(actor, sample_bytes("obama2.jpg"), purpose="demo", case_ref="c")


def test_versions_are_never_rewritten(ft: Facetrail, actor: Actor) -> None:
    source_id = add_source(ft)
    with ft.db.write() as session, session.begin(), pytest.raises(DatabaseError, match="never rewritten"):
        session.execute(text("UPDATE source_versions SET legal_basis = 'contract' WHERE source_id = :id"),
                        {"id": source_id})
    assert ft.sources.versions(actor, source_id)[0].legal_basis == "consent"


@pytest.mark.parametrize("fields,field", [
    ({}, "source"),
    ({"retention_days": 0}, "retention_days"),
    ({"legal_basis": "we-want-to", "reason": "x"}, "legal_basis"),
    ({"art9_condition": "z", "reason": "x"}, "art9_condition"),
    ({"purposes": ["Not A Purpose"], "reason": "x"}, "purpose"),
    ({"evidence_ref": "  "}, "evidence_ref"),
    ({"controller_contact": "x" * 501}, "controller_contact"),
])
def test_bad_edits_name_the_field_and_change_nothing(ft: Facetrail, actor: Actor, fields: dict[str, object],
                                                    field: str) -> None:
    source_id = add_source(ft)
    with pytest.raises(InvalidValueError) as caught:
        ft.sources.update(actor, source_id, **fields)
    assert caught.value.field == field
    assert updates(ft, actor) == [] and ft.sources.get(actor, source_id).version == 1


def test_only_operators_edit_and_unknown_sources_are_not_found(ft: Facetrail, actor: Actor) -> None:
    source_id = add_source(ft)
    with pytest.raises(PermissionDeniedError):
        ft.sources.update(Actor("ivy", Role.INVESTIGATOR), source_id, description="x")
    with pytest.raises(NotFoundError):
        ft.sources.update(actor, 99, description="x")


def test_existing_sources_get_their_first_version_on_upgrade(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'old.db'}")
    migrated_to(engine, "0005")
    with engine.begin() as conn:
        conn.execute(text("INSERT INTO sources (name, controller, purposes, legal_basis, art9_condition, "
                          "evidence_ref, jurisdictions, retention_days, description, created_at, created_by) VALUES "
                          "('old', 'C', '[\"press\"]', 'public_task', 'g', 'law', '[\"FR\"]', 90, '', "
                          "'2026-01-02 03:04:05', 'local:ops')"))
    migrate(engine)
    with engine.connect() as conn:
        assert conn.execute(text("SELECT version, controller_contact FROM sources")).one() == (1, "")
        assert conn.execute(text("SELECT source_id, version, purposes, legal_basis, art9_condition, reason, "
                                 "created_by FROM source_versions")).one() == (
            1, 1, '["press"]', "public_task", "g", "registered", "local:ops")
    engine.dispose()
