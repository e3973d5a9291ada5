"""Erasing Joe Biden from the samples store leaves nothing that finds, shows or holds him (hard rule 9)."""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import func, select

from facetrail.accounts.roles import Actor
from facetrail.errors import InvalidValueError, NotFoundError
from facetrail.runtime import Facetrail
from facetrail.sources.inputs import from_paths
from facetrail.store.models import Erasure, Face, Person, SearchResultRecord, StoredImage
from facetrail.store.templates import decode_template
from facetrail.vision.calibration import Band
from tests.conftest import SAMPLES, add_source, sample_bytes
from tests.rights.biden import (
    BIDEN_PHOTOS,
    GROUPS,
    StoredFace,
    detected_boxes,
    engine_files,
    files_holding,
    find_biden,
    iou,
    raw_blob,
    region,
    stored_faces,
    stored_pixels,
)


@dataclass
class Erased:
    ft: Facetrail
    faces: list[StoredFace]
    receipt: dict[str, object]
    search_id: str  # a search made before the erasure that showed Biden's faces


@pytest.fixture
def erased(samples_ft: Facetrail, actor: Actor) -> Erased:
    face_ids = find_biden(samples_ft, actor)
    faces = stored_faces(samples_ft, face_ids)
    # What the request workflow finds is exactly his four faces: two portraits and one face in each group.
    assert sorted(f.image_name for f in faces) == sorted([*BIDEN_PHOTOS, *GROUPS])
    before = samples_ft.search.search(actor, sample_bytes("biden2.jpg"), purpose="demo", case_ref="before")
    assert {h.face_id for h in before.results} == set(face_ids)
    receipt = samples_ft.erasure.erase(actor.name, face_ids, request_id="REQ-BIDEN")
    return Erased(samples_ft, faces, receipt, before.search_id)


def query_face(ft: Facetrail, actor: Actor, photo: str, box_like: StoredFace) -> int:
    """The index of the face in `photo` (searched as a query) that is the stored face `box_like`."""
    outcome = ft.search.search(actor, sample_bytes(photo), purpose="demo", case_ref="which-face", min_band="none")
    return max(outcome.query_faces, key=lambda q: iou(q.box, box_like.box)).index


def test_the_receipt_holds_ids_and_counts_only(erased: Erased, actor: Actor) -> None:
    receipt = erased.receipt
    assert receipt["request_id"] == "REQ-BIDEN" and receipt["face_ids"] == [f.id for f in erased.faces]
    assert (receipt["faces_erased"], receipt["crops_deleted"], receipt["index_entries_removed"]) == (4, 4, 4)
    assert (receipt["images_redacted"], receipt["images_deleted"]) == (2, 2)
    text = json.dumps(receipt)
    for face in erased.faces:
        assert face.image_name not in text and face.crop_key not in text
    with erased.ft.db.read() as session:
        row = session.get(Erasure, receipt["erasure_id"])
        assert row is not None and row.state == "completed" and row.receipt == receipt
        # The plan kept until the end is ids and actions: no box or blob key of his outlives the erasure.
        assert set(row.plan) == {"uid", "faces", "keys", "images", "not_found", "counts"}
        assert "blob_key" not in json.dumps(row.plan) and "boxes" not in json.dumps(row.plan)
    # Crypto-shredded: the keys of his four faces and of his four images' (deleted or unredacted) bytes.
    assert receipt["data_keys_destroyed"] == 8 and erased.ft.vault.keyring.existing(row.plan["keys"]) == set()
    assert {f.key_id for f in erased.faces} | {f.image_key_id for f in erased.faces} == set(row.plan["keys"])
    entries = erased.ft.read_audit(actor, limit=1000)
    actions = [e.action for e in entries]
    assert actions.count("erasure.planned") == 1 and actions.count("erasure.completed") == 1
    completed = next(e for e in entries if e.action == "erasure.completed")
    assert json.loads(completed.details) == receipt
    assert erased.ft.verify_audit(actor).ok
    assert erased.ft.erasure.pending() == [] and erased.ft.erasure.resume(actor.name) == []


def test_no_photo_of_biden_finds_him_any_more(erased: Erased, actor: Actor) -> None:
    ft = erased.ft
    by_name = {f.image_name: f for f in erased.faces}
    queries = [(photo, 0) for photo in BIDEN_PHOTOS]
    queries += [(group, query_face(ft, actor, group, by_name[group])) for group in GROUPS]
    for photo, face in queries:
        outcome = ft.search.search(actor, sample_bytes(photo), purpose="demo", case_ref="after", face=face,
                                   top_k=100, min_band="none")
        assert outcome.results, photo  # the gallery still answers, with other people far away
        assert {h.band for h in outcome.results} <= {Band.POSSIBLE, Band.NONE}, photo
        assert not {h.face_id for h in outcome.results} & {f.id for f in erased.faces}
        probable = ft.search.search(actor, sample_bytes(photo), purpose="demo", case_ref="after", face=face,
                                    min_band="probable")
        assert probable.results == [], photo


def test_no_erased_template_is_left_in_the_index(erased: Erased) -> None:
    index = erased.ft.gallery.index()
    with erased.ft.db.read() as session:
        stored = sorted(session.scalars(select(Face.id)))
    assert sorted(index.ids().tolist()) == stored and len(stored) == 26 - 4
    strong = erased.ft.search.scorer.max_distance(Band.STRONG)
    for face in erased.faces:
        template = decode_template(face.template, erased.ft.gallery.dim)  # decrypted
        nearest = erased.ft.gallery.search(template, 1, None)[0]
        assert nearest.distance > strong


def test_group_photos_keep_obama_and_lose_biden(samples_ft: Facetrail, actor: Actor) -> None:
    ft = samples_ft
    faces = {f.image_name: f for f in stored_faces(ft, find_biden(ft, actor))}
    obama = ft.search.search(actor, sample_bytes("obama2.jpg"), purpose="demo", case_ref="o", top_k=100)
    obama_in_groups = {Path(h.original_name).name: h for h in obama.results if Path(h.original_name).name in GROUPS}
    assert set(obama_in_groups) == set(GROUPS)
    before = {g: stored_pixels(ft, faces[g].image_key or "") for g in GROUPS}
    for group in GROUPS:  # the detector finds Biden in the stored image before the erasure
        assert max(iou(box, faces[group].box) for box in detected_boxes(ft, before[group])) > 0.5

    ft.erasure.erase(actor.name, [f.id for f in faces.values()], request_id=None)

    after_search = ft.search.search(actor, sample_bytes("obama2.jpg"), purpose="demo", case_ref="o", top_k=100)
    kept = {h.face_id for h in after_search.results}
    assert {h.face_id for h in obama_in_groups.values()} <= kept
    with ft.db.read() as session:
        counts = dict(session.execute(select(StoredImage.original_name, StoredImage.face_count)).all())
    assert {Path(name).name: n for name, n in counts.items() if Path(name).name in GROUPS} == {
        "two_people.jpg": 1, "obama_and_biden.jpg": 2}
    for group in GROUPS:
        biden, obama_box = faces[group].box, obama_in_groups[group].box
        pixels = stored_pixels(ft, faces[group].image_key or "")
        assert pixels.shape == before[group].shape
        assert not np.array_equal(region(pixels, biden), region(before[group], biden))
        assert region(pixels, biden).mean() < 8  # blacked out (JPEG leaves a little noise)
        boxes = detected_boxes(ft, pixels)
        assert all(iou(box, biden) < 0.1 for box in boxes), group
        assert max(iou(box, obama_box) for box in boxes) > 0.5, group  # the rest of the photo is intact


def test_images_left_without_a_face_are_deleted_rows_and_blobs(erased: Erased) -> None:
    ft = erased.ft
    portraits = [f for f in erased.faces if f.image_name in BIDEN_PHOTOS]
    with ft.db.read() as session:
        names = {Path(n).name for n in session.scalars(select(StoredImage.original_name))}
        assert session.scalar(select(func.count()).select_from(StoredImage)) == 22 - 2
    assert not names & set(BIDEN_PHOTOS) and set(GROUPS) <= names
    for face in portraits:
        assert face.image_key is not None and not ft.blobs.exists(face.image_key)
    for face in erased.faces:
        assert not ft.blobs.exists(face.crop_key)


def assert_erasure_leaves_no_bytes(ft: Facetrail, actor: Actor, *, database_file: str) -> None:
    faces = stored_faces(ft, find_biden(ft, actor))
    assert len(faces) == 4
    ids = {f.id for f in faces}
    engine = engine_files(ft)
    for face in faces:  # before: sealed in the database (or its log), in the index file and in each crop's blob
        clear = files_holding(ft.data, face.template)
        assert [f for f in clear if not f.startswith(engine)] == [] and files_holding(ft.data, face.crop) == []
        # A vector engine that stores vectors in clear (Milvus) holds them in its own files only.
        assert bool(clear) == bool(engine), clear
        assert files_holding(ft.data, face.sealed) == [database_file]
        assert files_holding(ft.data, raw_blob(ft, face.crop_key)) != []
    assert ids <= ft.gallery.persisted_ids()
    conn = sqlite3.connect(ft.vault.keyring.path)
    wrapped = [row[0] for f in faces for row in conn.execute("SELECT wrapped FROM data_keys WHERE id = ?",
                                                             (f.key_id,))]
    conn.close()
    assert len(wrapped) == 4 and all(files_holding(ft.data, w) for w in wrapped)

    ft.erasure.erase(actor.name, [f.id for f in faces], request_id="REQ-BYTES")
    # The destroyed keys themselves are gone from the keyring's file and its log (secure_delete, truncation).
    assert [files_holding(ft.data, w) for w in wrapped] == [[] for _ in wrapped]

    for face in faces:
        assert files_holding(ft.data, face.sealed) == [], face.image_name
        assert files_holding(ft.data, face.template) == [], face.image_name  # the engine's copy is gone too
        assert not ft.blobs.exists(face.crop_key)
        assert ft.vault.keyring.existing([face.key_id]) == set()  # crypto-shredded: no copy can be opened
    assert not ids & ft.gallery.persisted_ids()
    # Still true once the store has been written to again and closed.
    ft.search.search(actor, sample_bytes("obama.jpg"), purpose="demo", case_ref="later")
    ft.close()
    for face in faces:
        assert files_holding(ft.data, face.sealed) == []
    assert not ids & ft.gallery.persisted_ids()


@pytest.mark.sqlite_only  # PostgreSQL: tests/rights/test_erasure_postgres.py
def test_no_byte_of_his_templates_or_crops_remains_in_any_file(samples_ft: Facetrail, actor: Actor) -> None:
    """Templates in the database file itself: secure_delete zeroes the deleted rows there."""
    assert_erasure_leaves_no_bytes(samples_ft, actor, database_file="facetrail.db")


@pytest.mark.slow
@pytest.mark.sqlite_only
def test_no_byte_remains_when_the_templates_are_still_in_the_write_ahead_log(ft: Facetrail, actor: Actor) -> None:
    """Just ingested, the templates sit in the -wal file: the erasure's checkpoint must fold and truncate it."""
    source = add_source(ft)
    report = ft.ingest.ingest(actor, source, from_paths([SAMPLES], ft.input_limits))
    assert report.faces_added == 26
    assert_erasure_leaves_no_bytes(ft, actor, database_file="facetrail.db-wal")


def test_a_person_left_without_a_face_is_deleted_with_its_name(samples_ft: Facetrail, actor: Actor) -> None:
    ft, name = samples_ft, "Joseph Robinette Biden Jr."
    ft.people.cluster(actor, source_id=1)
    biden = find_biden(ft, actor)
    with ft.db.read() as session:
        people = set(session.scalars(select(Face.person_id).where(Face.id.in_(biden))))
        others = set(session.scalars(select(Face.person_id).where(Face.id.not_in(biden))))
    assert len(people) == 1 and not people & others  # clustering put his four faces together, alone
    person = people.pop()
    assert person is not None
    # A name no sample's metadata holds (obama3.jpg's caption names "Joe Biden", which erasing faces
    # cannot know about), so that finding it anywhere afterwards can only mean the person row survived.
    ft.people.name(actor, person, name)
    ft.erasure.erase(actor.name, biden, request_id=None)
    with ft.db.read() as session:
        assert session.get(Person, person) is None
        remaining = set(session.scalars(select(Person.id)))
    assert remaining == {p for p in others if p is not None}
    assert files_holding(ft.data, name.encode()) == []


def test_search_history_keeps_ids_but_shows_nothing(erased: Erased, actor: Actor) -> None:
    with erased.ft.db.read() as session:
        shown = set(session.scalars(select(SearchResultRecord.face_id).where(
            SearchResultRecord.search_id == erased.search_id)))
    assert shown == {f.id for f in erased.faces}  # who was shown his faces stays answerable (Art. 15)
    with pytest.raises(NotFoundError):
        erased.ft.search.result_crop(actor, erased.search_id, erased.faces[0].id)


def test_a_restricted_face_is_erased_too_and_was_not_in_the_index(samples_ft: Facetrail, actor: Actor) -> None:
    biden = find_biden(samples_ft, actor)
    samples_ft.restriction.restrict(actor.name, biden[:1], "REQ-R")
    receipt = samples_ft.erasure.erase(actor.name, biden, request_id="REQ-E")
    assert receipt["faces_erased"] == 4 and receipt["index_entries_removed"] == 3
    with samples_ft.db.read() as session:
        assert session.scalar(select(func.count()).select_from(Face).where(Face.id.in_(biden))) == 0


def test_erasing_again_or_unknown_ids_changes_nothing(erased: Erased, actor: Actor) -> None:
    ft = erased.ft
    with ft.db.read() as session:
        faces_before = session.scalar(select(func.count()).select_from(Face))
    again = ft.erasure.erase(actor.name, [f.id for f in erased.faces] + [99999], request_id="REQ-AGAIN")
    assert again["faces_erased"] == 0 and again["images_redacted"] == again["images_deleted"] == 0
    assert again["erasure_id"] != erased.receipt["erasure_id"]
    with ft.db.read() as session:
        assert session.scalar(select(func.count()).select_from(Face)) == faces_before
    for bad in (["4"], [True], "4"):
        with pytest.raises(InvalidValueError):
            ft.erasure.erase(actor.name, bad, request_id=None)  # type: ignore[arg-type]  # wrong on purpose


def test_a_process_with_a_stale_index_does_not_write_erased_templates_back(samples_ft: Facetrail,
                                                                           actor: Actor) -> None:
    """A server with the index loaded, and an erasure run by another process (the command line)."""
    server = Facetrail.open(samples_ft.data, workers=1)
    try:
        server.search.search(actor, sample_bytes("obama.jpg"), purpose="demo", case_ref="load")
        faces = stored_faces(samples_ft, find_biden(samples_ft, actor))
        samples_ft.erasure.erase(actor.name, [f.id for f in faces], request_id=None)
        assert not {f.id for f in faces} & samples_ft.gallery.persisted_ids()
    finally:
        server.close()  # saves its index
    assert not {f.id for f in faces} & samples_ft.gallery.persisted_ids()


def test_a_stored_image_damaged_on_disk_is_deleted_rather_than_kept(samples_ft: Facetrail, actor: Actor) -> None:
    faces = {f.image_name: f for f in stored_faces(samples_ft, find_biden(samples_ft, actor))}
    damaged, intact = faces["two_people.jpg"].image_key, faces["obama_and_biden.jpg"].image_key
    assert damaged is not None and intact is not None
    kind, name = damaged.split("/", 1)
    path = samples_ft.blobs.root / kind / name[:2] / name
    path.write_bytes(path.read_bytes()[:4000])  # truncated on disk: cannot be decrypted, let alone redacted
    receipt = samples_ft.erasure.erase(actor.name, [f.id for f in faces.values()], request_id=None)
    assert receipt["images_redacted"] == 2
    assert not samples_ft.blobs.exists(damaged) and samples_ft.blobs.exists(intact)


def test_two_erasures_planned_on_one_group_photo_both_black_out_their_face(samples_ft: Facetrail,
                                                                           actor: Actor) -> None:
    """Biden's and Obama's erasures are both planned before either runs (two requests approved at once); the
    second finds the photo already redacted by the first under a new key, and must still black out its own
    face and shred the version the first one left."""
    ft = samples_ft
    biden = {f.image_name: f for f in stored_faces(ft, find_biden(ft, actor))}["obama_and_biden.jpg"]
    obama_hit = next(h for h in ft.search.search(actor, sample_bytes("obama2.jpg"), purpose="demo", case_ref="o",
                                                 top_k=100).results if h.original_name.endswith("obama_and_biden.jpg"))
    obama = stored_faces(ft, [obama_hit.face_id])[0]
    first = ft.erasure._plan(actor.name, [biden.id], None)  # planned one after the other, run one after the other
    second = ft.erasure._plan(actor.name, [obama.id], None)
    ft.erasure._finish(actor.name, first)
    with ft.db.read() as session:
        between = session.get(StoredImage, biden.image_id)
        assert between is not None and between.key_id not in (None, biden.image_key_id)
        redacted_once = between.key_id
    ft.erasure._finish(actor.name, second)

    pixels = stored_pixels(ft, biden.image_key or "")
    for face in (biden, obama):
        assert region(pixels, face.box).mean() < 8, face.image_name  # both faces blacked out
    assert ft.vault.keyring.existing([biden.image_key_id or "", redacted_once]) == set()  # both versions shredded
    with ft.db.read() as session:
        image = session.get(StoredImage, biden.image_id)
        assert image is not None and image.face_count == 1 and ft.vault.keyring.existing([image.key_id or ""])
