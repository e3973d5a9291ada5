"""Opt-out is honoured at the door (hard rule 6): suppressed faces are never stored, for the purposes covered."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import func, select

from facetrail.accounts.roles import Actor
from facetrail.errors import InvalidValueError
from facetrail.policy.suppression import SuppressionList
from facetrail.runtime import Facetrail
from facetrail.sources.inputs import from_paths
from facetrail.store.models import Face, StoredImage, Suppression
from facetrail.store.templates import decode_template, seal_template
from facetrail.vision.calibration import Band, load_calibration
from tests.conftest import SAMPLES, add_source, sample_bytes
from tests.rights.biden import BIDEN_PHOTOS, GROUPS, detected_boxes, find_biden, iou, stored_faces, stored_pixels


def templates_of(ft: Facetrail, face_ids: list[int]) -> dict[str, np.ndarray]:
    return {f.image_name: decode_template(f.template, ft.gallery.dim) for f in stored_faces(ft, face_ids)}


def obama_template(ft: Facetrail, actor: Actor) -> np.ndarray:
    hit = ft.search.search(actor, sample_bytes("obama.jpg"), purpose="demo", case_ref="t", top_k=1).results[0]
    return templates_of(ft, [hit.face_id])["obama.jpg"]


def test_the_threshold_is_the_calibrated_strong_band(samples_ft: Facetrail) -> None:
    calibration = load_calibration(samples_ft.gallery.model_id)
    assert calibration is not None
    assert samples_ft.suppressions.threshold == calibration.threshold(Band.STRONG)


def test_a_template_matches_the_same_person_for_the_purposes_covered(samples_ft: Facetrail, actor: Actor) -> None:
    ft = samples_ft
    biden = templates_of(ft, find_biden(ft, actor))
    obama = obama_template(ft, actor)
    others = [biden["biden2.jpg"], biden["two_people.jpg"], obama]
    assert ft.suppressions.screen(others, ["demo"]) == [False, False, False]  # an empty list drops nothing

    assert ft.suppressions.add("REQ-1", [biden["biden.jpg"]], ["demo"], actor_name=actor.name) == 1
    assert ft.suppressions.screen(others, ["demo"]) == [True, True, False]
    assert ft.suppressions.screen(others, ["press", "demo"]) == [True, True, False]
    assert ft.suppressions.screen(others, ["press"]) == [False, False, False]  # not covered

    ft.suppressions.add("REQ-2", np.stack([biden["obama_and_biden.jpg"]]), ["*"])
    assert ft.suppressions.screen(others, ["press"]) == [True, True, False]  # "*" covers every purpose
    entries = [e for e in ft.read_audit(actor, limit=1000) if e.action == "suppression.added"]
    assert [json.loads(e.details)["purposes"] for e in entries] == [["demo"], ["*"]]

    assert ft.suppressions.remove("REQ-2") == 1
    assert ft.suppressions.screen(others, ["press"]) == [False, False, False]


def test_entries_added_by_another_process_are_seen(samples_ft: Facetrail, actor: Actor) -> None:
    ft = samples_ft
    biden = templates_of(ft, find_biden(ft, actor))
    # As a second process holds it:
    other = SuppressionList(ft.db, ft.audit, ft.vault, model_id=ft.gallery.model_id, dim=ft.gallery.dim)
    assert other.screen([biden["biden2.jpg"]], ["demo"]) == [False] and len(other) == 0
    ft.suppressions.add("REQ-1", [biden["biden.jpg"]], ["demo"])
    assert other.screen([biden["biden2.jpg"]], ["demo"]) == [True] and len(other) == 1
    # A row written by other code, without the change counter: the table's size gives it away.
    key = ft.vault.new_key("suppression")
    with ft.db.write() as session, session.begin():
        session.add(Suppression(request_id="REQ-3", model_id=ft.gallery.model_id, purposes=["press"],
                                template=seal_template(ft.vault, key, biden["biden.jpg"]), key_id=key.id))
    assert other.screen([biden["biden2.jpg"]], ["press"]) == [True] and len(other) == 2


def test_bad_entries_are_refused(samples_ft: Facetrail, actor: Actor) -> None:
    template = obama_template(samples_ft, actor)
    with pytest.raises(InvalidValueError, match="purposes"):
        samples_ft.suppressions.add(None, [template], "demo")
    with pytest.raises(InvalidValueError, match="purpose"):
        samples_ft.suppressions.add(None, [template], ["Not A Purpose"])
    with pytest.raises(InvalidValueError, match="templates"):
        samples_ft.suppressions.add(None, [], ["demo"])
    with pytest.raises(InvalidValueError, match="templates"):
        samples_ft.suppressions.add(None, [template[:64]], ["demo"])
    assert len(samples_ft.suppressions) == 0


@pytest.mark.slow
def test_after_erasure_and_opt_out_ingesting_the_samples_again_adds_no_biden_face(
        samples_ft: Facetrail, actor: Actor) -> None:
    ft = samples_ft
    biden_ids = find_biden(ft, actor)
    biden = stored_faces(ft, biden_ids)
    ft.erasure.erase(actor.name, biden_ids, request_id="REQ-OPT")
    ft.suppressions.add("REQ-OPT", [decode_template(f.template, ft.gallery.dim) for f in biden], ["demo"])

    again = add_source(ft, name="samples again", purposes=("demo",))
    report = ft.ingest.ingest(actor, again, from_paths([SAMPLES], ft.input_limits))
    assert report.faces_suppressed == 4 and report.images_suppressed == 2
    assert (report.images_added, report.faces_added, report.errors) == (20, 22, [])
    assert report.counts()["faces_suppressed"] == 4
    finish = [e for e in ft.read_audit(actor, limit=1000) if e.action == "ingest.finish"][-1]
    assert json.loads(finish.details)["faces_suppressed"] == 4 and "biden" not in finish.details.lower()

    with ft.db.read() as session:
        images = {Path(i.original_name).name: i for i in session.scalars(
            select(StoredImage).where(StoredImage.source_id == again))}
        faces = session.scalar(select(func.count()).select_from(Face).where(Face.source_id == again))
    assert faces == 22 and not set(images) & set(BIDEN_PHOTOS)  # his portraits are not recorded at all
    assert {g: images[g].face_count for g in GROUPS} == {"two_people.jpg": 1, "obama_and_biden.jpg": 2}
    crops = list((ft.data / "blobs" / "crops").rglob(f"*-{again}-*.jpg"))
    assert len(crops) == 22  # no crop of his was written

    for photo in BIDEN_PHOTOS:
        assert ft.search.search(actor, sample_bytes(photo), purpose="demo", case_ref="t",
                                min_band="probable").results == []
    obama = ft.search.search(actor, sample_bytes("obama2.jpg"), purpose="demo", case_ref="t", top_k=100)
    found = {Path(h.original_name).name for h in obama.results if h.source_id == again}
    assert set(GROUPS) <= found  # other people in the same photos are still ingested

    by_name = {f.image_name: f for f in biden}
    for group in GROUPS:  # his region is blacked out in the stored copy of the group photos
        key = images[group].blob_key
        assert key is not None
        pixels = stored_pixels(ft, key)
        box = by_name[group].box
        assert pixels[box.top:box.bottom, box.left:box.right].mean() < 8
        assert all(iou(found_box, box) < 0.1 for found_box in detected_boxes(ft, pixels))


def test_a_source_for_another_purpose_is_not_affected(samples_ft: Facetrail, actor: Actor, tmp_path: Path) -> None:
    ft = samples_ft
    biden = templates_of(ft, find_biden(ft, actor))
    ft.suppressions.add("REQ-DEMO", [biden["biden.jpg"]], ["demo"])
    folder = tmp_path / "press"
    folder.mkdir()
    (folder / "b.jpg").write_bytes(sample_bytes("biden2.jpg"))
    press = add_source(ft, name="press", purposes=("press",))
    report = ft.ingest.ingest(actor, press, from_paths([folder], ft.input_limits))
    assert (report.faces_added, report.faces_suppressed) == (1, 0)
    demo = add_source(ft, name="demo two", purposes=("demo", "press"))
    report = ft.ingest.ingest(actor, demo, from_paths([folder], ft.input_limits))
    assert (report.faces_added, report.faces_suppressed, report.images_suppressed) == (0, 1, 1)


def test_a_withdrawal_cut_off_after_its_keys_went_matches_nobody_and_finishes(samples_ft: Facetrail,
                                                                              actor: Actor) -> None:
    ft = samples_ft
    biden = templates_of(ft, find_biden(ft, actor))
    assert ft.suppressions.add("REQ-W", [biden["biden.jpg"]], ["demo"]) == 1
    assert ft.suppressions.screen([biden["biden2.jpg"]], ["demo"]) == [True]
    with ft.db.read() as session:
        keys = [k for k in session.scalars(select(Suppression.key_id)) if k]
    ft.vault.keyring.destroy(keys)  # the withdrawal's first step, and then the process died
    restarted = SuppressionList(ft.db, ft.audit, ft.vault, model_id=ft.gallery.model_id, dim=ft.gallery.dim)
    assert restarted.screen([biden["biden2.jpg"]], ["demo"]) == [False] and len(restarted) == 0
    assert ft.suppressions.remove("REQ-W") == 1  # asked again, it finishes
    with ft.db.read() as session:
        assert session.scalar(select(func.count()).select_from(Suppression)) == 0
