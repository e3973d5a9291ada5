"""The people service on the real sample photos: clustering, incremental runs, corrections, audit, roles."""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

import pytest

from facetrail.accounts.roles import Actor, Role
from facetrail.errors import InvalidValueError, NotFoundError, PermissionDeniedError
from facetrail.people.clustering import default_threshold
from facetrail.runtime import Facetrail, local_actor
from facetrail.sources.inputs import from_paths
from tests.conftest import SAMPLES, add_source
from tests.people.conftest import group_photos, sample_faces


def people_of(ft: Facetrail) -> dict[int, int | None]:
    """face id -> person id, as the service shows it."""
    placed: dict[int, int | None] = {f.face_id: None for f in sample_faces(ft)}
    for person in ft.people.list(local_actor()):
        for face in ft.people.show(local_actor(), person.id).faces:
            placed[face.face_id] = person.id
    return placed


def labelled_people(ft: Facetrail) -> dict[str, set[int | None]]:
    """label -> the people its one-person photos' faces are in."""
    placed = people_of(ft)
    found: dict[str, set[int | None]] = defaultdict(set)
    for face in sample_faces(ft):
        if face.label is not None:
            found[face.label].add(placed[face.face_id])
    return found


def audit_details(ft: Facetrail, action: str) -> list[dict[str, object]]:
    return [json.loads(e.details) for e in ft.read_audit(local_actor(), limit=10_000) if e.action == action]


def test_clustering_the_samples_groups_each_identity(samples_ft: Facetrail, actor: Actor) -> None:
    report = samples_ft.people.cluster(actor)
    assert report.faces == len(sample_faces(samples_ft)) == 26 and report.joined == 0
    assert report.threshold == default_threshold(samples_ft.gallery.model_id)
    found = labelled_people(samples_ft)
    assert set(found) == {"barack_obama", "joe_biden", "kit_harington", "rose_leslie", "alex_lacamoire",
                          "lin_manuel_miranda"}
    for name in found:  # with the default model, Alex Lacamoire's two photos are one person too
        assert len(found[name]) == 1, (name, found[name])
    owners = [p for name, people in found.items() for p in people]
    assert len(owners) == len(set(owners))
    placed = people_of(samples_ft)
    for file, people in group_photos().items():
        in_photo = {placed[f.face_id] for f in sample_faces(samples_ft) if f.file == file}
        assert {next(iter(found[p])) for p in people} <= in_photo, file
    obama = next(iter(found["barack_obama"]))
    assert obama is not None
    obama_faces = {f.face_id for f in samples_ft.people.show(actor, obama).faces}
    assert all(placed[f.face_id] != obama for f in sample_faces(samples_ft) if f.label == "joe_biden")
    assert len(obama_faces) == 11  # his 9 one-person photos and the 2 group photos with him
    assert sum(p.faces for p in samples_ft.people.list(actor)) == 26
    assert audit_details(samples_ft, "people.cluster")[0] == {
        "source_id": 1, "model_id": samples_ft.gallery.model_id, "threshold": round(report.threshold, 4), "faces": 26,
        "joined": 0, "people_created": report.people_created}


def test_a_second_run_places_nothing_and_writes_nothing(samples_ft: Facetrail, actor: Actor) -> None:
    first = samples_ft.people.cluster(actor)
    before = samples_ft.people.list(actor)
    second = samples_ft.people.cluster(actor)
    assert (second.faces, second.people_created, second.sources) == (0, 0, [])
    assert samples_ft.people.list(actor) == before
    assert len(audit_details(samples_ft, "people.cluster")) == 1 and first.faces == 26


def test_ingestion_with_cluster_people_places_new_faces_in_existing_people(tmp_path: Path, actor: Actor) -> None:
    later = {"obama2.jpg", "biden2.jpg", "kit_harington3.jpg", "rose_leslie2.jpg"}
    first = [p for p in sorted(SAMPLES.iterdir()) if p.name not in later]
    ft = Facetrail.open(tmp_path / "data", create=True, workers=1, cluster_people=True)
    ft.people.chunk = 5  # several chunks, each committed (and audited) on its own
    try:
        source = add_source(ft)
        ft.ingest.ingest(actor, source, from_paths(first, ft.input_limits))
        people_before = {p.id for p in ft.people.list(actor)}
        assert sum(p.faces for p in ft.people.list(actor)) == 22  # placed by ingestion itself
        chunks = audit_details(ft, "people.cluster")
        assert len(chunks) == 5 and sum(int(str(c["faces"])) for c in chunks) == 22
        ft.ingest.ingest(actor, source, from_paths([SAMPLES / name for name in sorted(later)], ft.input_limits))
        assert {p.id for p in ft.people.list(actor)} == people_before  # nobody new
        found = labelled_people(ft)
        for name in ("barack_obama", "joe_biden", "kit_harington", "rose_leslie"):
            assert len(found[name]) == 1, name
        runs = audit_details(ft, "people.cluster")
        assert runs[-1]["joined"] == runs[-1]["faces"] == 4 and runs[-1]["people_created"] == 0
    finally:
        ft.close()


def test_clustering_is_off_by_default_after_ingestion(ft: Facetrail, actor: Actor) -> None:
    source = add_source(ft)
    ft.ingest.ingest(actor, source, from_paths([SAMPLES / "obama.jpg"], ft.input_limits))
    assert ft.people.list(actor) == []
    assert ft.people.cluster(actor, source_id=source).faces == 1
    with pytest.raises(NotFoundError, match="source 9 is not registered"):
        ft.people.cluster(actor, source_id=9)


def test_people_never_span_sources(samples_ft: Facetrail, actor: Actor) -> None:
    other = add_source(samples_ft, name="press", purposes=("press",))
    samples_ft.ingest.ingest(actor, other, from_paths([SAMPLES / "obama.jpg"], samples_ft.input_limits))
    report = samples_ft.people.cluster(actor)
    assert report.sources == [1, other]
    press = samples_ft.people.list(actor, source_id=other)
    assert [p.faces for p in press] == [1]
    obama = samples_ft.people.list(actor, source_id=1)[0]
    with pytest.raises(InvalidValueError, match="never span sources"):
        samples_ft.people.merge(actor, obama.id, [press[0].id])


def test_name_merge_and_split_are_audited(samples_ft: Facetrail, actor: Actor) -> None:
    samples_ft.people.cluster(actor)
    obama = samples_ft.people.list(actor)[0]  # the most faces
    faces = [f.face_id for f in samples_ft.people.show(actor, obama.id).faces]
    named = samples_ft.people.name(actor, obama.id, "  Barack Obama ")
    assert named.name == "Barack Obama" and named.faces == len(faces)
    split = samples_ft.people.split(actor, obama.id, faces[:3])
    assert split.faces == 3 and split.name is None and split.id != obama.id
    assert samples_ft.people.show(actor, obama.id).person.faces == len(faces) - 3
    merged = samples_ft.people.merge(actor, obama.id, [split.id])
    assert merged.faces == len(faces) and merged.name == "Barack Obama"
    with pytest.raises(NotFoundError):
        samples_ft.people.show(actor, split.id)
    assert samples_ft.people.name(actor, obama.id, "").name is None
    assert audit_details(samples_ft, "people.name") == [{"person_id": obama.id, "named": True},
                                                        {"person_id": obama.id, "named": False}]
    assert audit_details(samples_ft, "people.split") == [{"person_id": obama.id, "new_person_id": split.id,
                                                          "face_ids": faces[:3], "faces_moved": 3}]
    assert audit_details(samples_ft, "people.merge") == [{"person_id": obama.id, "merged_ids": [split.id],
                                                          "faces_moved": 3}]
    entries = samples_ft.read_audit(actor, limit=10_000)
    assert not any("Obama" in e.details or ".jpg" in e.details for e in entries if e.action.startswith("people."))
    assert samples_ft.verify_audit(actor).ok


def test_a_merged_name_is_kept_when_the_survivor_has_none(samples_ft: Facetrail, actor: Actor) -> None:
    samples_ft.people.cluster(actor)
    first, second = samples_ft.people.list(actor)[:2]
    samples_ft.people.name(actor, second.id, "Joe Biden")
    merged = samples_ft.people.merge(actor, first.id, [second.id])
    assert merged.name == "Joe Biden" and merged.faces == first.faces + second.faces


def test_show_lists_faces_with_their_images_and_is_recorded(samples_ft: Facetrail, actor: Actor) -> None:
    samples_ft.people.cluster(actor)
    details = [samples_ft.people.show(actor, p.id) for p in samples_ft.people.list(actor)]
    detail = next(d for d in details if any(Path(f.original_name).name == "biden.jpg" for f in d.faces))
    biden = detail.person
    names = sorted(Path(f.original_name).name for f in detail.faces)
    assert names == ["biden.jpg", "biden2.jpg", "obama_and_biden.jpg", "two_people.jpg"]
    assert biden.face_id in {f.face_id for f in detail.faces}
    assert biden.face_id == max(detail.faces, key=lambda f: (f.size_px, -f.face_id)).face_id
    shown = audit_details(samples_ft, "people.show")
    assert len(shown) == len(details) and {"person_id": biden.id, "faces": 4} in shown


def test_bad_requests_are_refused_with_the_field(samples_ft: Facetrail, actor: Actor) -> None:
    samples_ft.people.cluster(actor)
    first, second = samples_ft.people.list(actor)[:2]
    own = [f.face_id for f in samples_ft.people.show(actor, first.id).faces]
    other = samples_ft.people.show(actor, second.id).faces[0].face_id
    cases = [
        (lambda: samples_ft.people.merge(actor, first.id, [first.id]), "other_ids"),
        (lambda: samples_ft.people.merge(actor, first.id, []), "other_ids"),
        (lambda: samples_ft.people.merge(actor, first.id, [second.id, second.id]), "other_ids"),
        (lambda: samples_ft.people.split(actor, first.id, [other]), "face_ids"),
        (lambda: samples_ft.people.split(actor, first.id, own), "face_ids"),
        (lambda: samples_ft.people.split(actor, first.id, [True]), "face_ids"),
        (lambda: samples_ft.people.name(actor, first.id, "x" * 201), "name"),
        (lambda: samples_ft.people.name(actor, first.id, "a\nb"), "name"),
    ]
    for call, field in cases:
        with pytest.raises(InvalidValueError) as info:
            call()
        assert info.value.field == field
    with pytest.raises(NotFoundError, match="person 9999"):
        samples_ft.people.merge(actor, first.id, [9999])
    with pytest.raises(NotFoundError):
        samples_ft.people.name(actor, 9999, "nobody")
    assert samples_ft.people.show(actor, first.id).person.faces == first.faces  # nothing half-done


@pytest.mark.parametrize("role", [Role.INVESTIGATOR, Role.DPO, Role.AUDITOR])
def test_only_operators_reach_people(samples_ft: Facetrail, role: Role) -> None:
    someone = Actor(name=f"{role.value}-1", role=role)
    calls = [lambda: samples_ft.people.cluster(someone), lambda: samples_ft.people.list(someone),
             lambda: samples_ft.people.show(someone, 1), lambda: samples_ft.people.name(someone, 1, "x"),
             lambda: samples_ft.people.merge(someone, 1, [2]), lambda: samples_ft.people.split(someone, 1, [1])]
    for call in calls:
        with pytest.raises(PermissionDeniedError):
            call()
    operator = Actor(name="op-1", role=Role.OPERATOR)
    assert samples_ft.people.cluster(operator).faces == 26
