"""Rights over people seen in videos: erasure, access, restriction and opt-out act on whole tracks."""

from __future__ import annotations

import io
import json
import zipfile
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
from sqlalchemy import select

from facetrail.accounts.roles import Actor, Role
from facetrail.media.image import decode_image
from facetrail.rights.access import build_package
from facetrail.rights.tracks import whole_tracks
from facetrail.runtime import Facetrail
from facetrail.sources.inputs import from_paths
from facetrail.store.models import Face, RightsRequest, StoredImage, Track, Video
from facetrail.store.templates import encode_template
from facetrail.vision.pipeline import analyze_faces
from tests.conftest import add_source, template_of
from tests.rights.biden import files_holding, raw_blob
from tests.video.clips import WDA, frame_at, side_by_side
from tests.video.test_video_search import AT_LEAST_POSSIBLE


@dataclass(frozen=True)
class HeldFace:
    id: int
    template: bytes  # decrypted
    sealed: bytes
    crop: bytes  # decrypted
    crop_raw: bytes  # as on disk
    crop_key: str
    key_id: str


def track_of(ft: Facetrail, actor: Actor, clip: Path, seconds: float) -> tuple[int, int]:
    """(face id, track id) of the first result of a search with the clip's frame at `seconds`."""
    photo, _ = frame_at(clip, seconds)
    hit = ft.search.search(actor, photo, purpose="demo", case_ref="rights").results[0]
    assert hit.video is not None and Path(hit.video.name) == clip
    return hit.face_id, hit.video.track_id


def held_faces(ft: Facetrail, track_id: int) -> list[HeldFace]:
    with ft.db.read() as session:
        faces = list(session.scalars(select(Face).where(Face.track_id == track_id)))
    held = []
    for face in faces:
        assert face.crop_key is not None and face.key_id is not None
        held.append(HeldFace(face.id, encode_template(template_of(ft, face.template)), face.template,
                             ft.blobs.get(face.crop_key), raw_blob(ft, face.crop_key), face.crop_key, face.key_id))
    return held


def test_erasing_a_person_seen_in_a_video_leaves_no_byte_and_finds_nothing(video_copy: Facetrail,
                                                                           actor: Actor) -> None:
    ft = video_copy
    clip = WDA[1]
    face_id, track_id = track_of(ft, actor, clip, 2.3)
    faces = held_faces(ft, track_id)
    assert faces  # the best template, and others where the pose varied
    for face in faces:  # before: sealed in the database, and the crop's sealed blob on disk
        assert files_holding(ft.data, face.sealed) == ["facetrail.db"]
        assert files_holding(ft.data, face.crop_raw) != []
    receipt = ft.erasure.erase(actor.name, [face_id], request_id="REQ-VIDEO")  # one face: the whole track goes
    assert sorted(receipt["face_ids"]) == sorted(f.id for f in faces)
    ft.search.search(actor, frame_at(WDA[0], 1.0)[0], purpose="demo", case_ref="later")  # the store moves on
    ft.close()
    for face in faces:
        for needle in (face.sealed, face.template, face.crop, face.crop_raw):
            assert files_holding(ft.data, needle) == []
        assert ft.vault.keyring.existing([face.key_id]) == set()
    reopened = Facetrail.open(ft.data, workers=1)
    try:
        with reopened.db.read() as session:
            assert session.get(Track, track_id) is None
            assert session.scalar(select(Video.id).where(Video.original_name == str(clip))) is None
            assert not session.scalars(select(StoredImage.id).where(StoredImage.original_name.like(f"{clip}%"))).all()
        for seconds in (5.7, 7.3):  # other frames of the same person find nothing of them
            outcome = reopened.search.search(actor, frame_at(clip, seconds)[0], purpose="demo", case_ref="after")
            assert not [h for h in outcome.results if h.band in AT_LEAST_POSSIBLE
                        and h.video is not None and Path(h.video.name) == clip]
            assert not {h.face_id for h in outcome.results} & {f.id for f in faces}
    finally:
        reopened.close()


def test_erasing_someone_in_a_key_frame_kept_for_others_blacks_them_out(video_copy: Facetrail, actor: Actor,
                                                                         tmp_path: Path) -> None:
    ft = video_copy
    pair = side_by_side(WDA[0], WDA[3], tmp_path / "pair.mp4")
    source = add_source(ft, "pairs", purposes=("demo",))
    report = ft.ingest.ingest(actor, source, from_paths([pair], ft.input_limits))
    assert report.videos_added == 1 and report.videos[0].tracks == 2, report
    with ft.db.read() as session:
        frames = list(session.scalars(select(StoredImage).where(StoredImage.source_id == source)))
        faces = {image.id: list(session.scalars(select(Face).where(Face.image_id == image.id))) for image in frames}
    assert frames and all(len(held) == 2 for held in faces.values())  # both people in every key frame
    gone = [face for held in faces.values() for face in held if face.box_left < 512]  # the left person
    stays = [face for held in faces.values() for face in held if face.box_left >= 512]
    assert len({f.track_id for f in gone}) == 1 and len({f.track_id for f in stays}) == 1
    ft.erasure.erase(actor.name, [gone[0].id], request_id=None)
    with ft.db.read() as session:
        assert session.scalars(select(Face.id).where(Face.id.in_([f.id for f in gone]))).all() == []
        kept = {image.id: image for image in session.scalars(select(StoredImage).where(
            StoredImage.source_id == source))}
    assert set(kept) == set(faces)  # every key frame stays: the right person is still in each
    for image_id, image in kept.items():
        assert image.blob_key is not None and image.face_count == 1
        pixels = decode_image(ft.blobs.get(image.blob_key), max_pixels=ft.settings.max_image_pixels).pixels
        for face in faces[image_id]:
            region = pixels[face.box_top:face.box_bottom, face.box_left:face.box_right]
            if face.box_left < 512:
                assert float(region.mean()) < 10  # blacked out
            else:
                assert float(region.mean()) > 40  # untouched


def test_the_access_package_lists_videos_time_ranges_and_key_frames(video_ft: Facetrail, actor: Actor) -> None:
    face_id, track_id = track_of(video_ft, actor, WDA[2], 4.1)
    with video_ft.db.read() as session:
        faces = whole_tracks(session, [face_id])
        track = session.get(Track, track_id)
        assert track is not None and len(faces) == track.templates
    request = RightsRequest(id="REQ-ACCESS", kind="access", received_at=datetime.now(UTC))
    package, summary = build_package(video_ft.db, video_ft.blobs, request, faces, video_ft.settings.max_image_pixels)
    assert summary["faces"] == len(faces)
    with zipfile.ZipFile(io.BytesIO(package)) as archive:
        data = json.loads(archive.read("data.json"))
        names = set(archive.namelist())
        page = archive.read("index.html").decode()
    [video] = data["videos"]
    assert Path(video["video"]) == WDA[2] and video["seen"] == track.ranges
    assert any(start <= 4.1 <= end for start, end in video["seen"])
    assert len(video["key_frames"]) == len(faces)
    for frame in video["key_frames"]:
        assert frame["image_file"] in names and frame["crop_file"] in names
    assert "Videos you appear in" in page and WDA[2].name in page


def test_restricting_one_face_of_a_track_restricts_the_track(video_copy: Facetrail, actor: Actor) -> None:
    ft = video_copy
    face_id, track_id = track_of(ft, actor, WDA[3], 2.6)
    result = ft.restriction.restrict(actor.name, [face_id], None)
    with ft.db.read() as session:
        restricted = list(session.scalars(select(Face.restricted).where(Face.track_id == track_id)))
    assert len(result["face_ids"]) == len(restricted) >= 1 and all(restricted)
    outcome = ft.search.search(actor, frame_at(WDA[3], 5.1)[0], purpose="demo", case_ref="restricted",
                               min_band="none", top_k=50)
    assert all(h.video is None or h.video.track_id != track_id for h in outcome.results)


def test_an_opt_out_suppresses_matching_tracks_at_ingestion(video_copy: Facetrail, actor: Actor) -> None:
    ft = video_copy
    photo, _ = frame_at(WDA[0], 6.2)
    pixels = decode_image(photo, max_pixels=ft.settings.max_image_pixels).pixels
    [face] = analyze_faces(ft.analyzer.backend, pixels, with_crops=False)
    ft.suppressions.add("REQ-OPTOUT", [np.asarray(face.template, dtype=np.float32)], ["*"])
    source = add_source(ft, "second", purposes=("demo",))
    report = ft.ingest.ingest(actor, source, from_paths([WDA[0], WDA[1]], ft.input_limits))
    assert report.videos_suppressed == 1 and report.videos_added == 1 and report.faces_suppressed > 0
    by_name = {Path(v.name): v for v in report.videos}
    assert by_name[WDA[0]].tracks == 0 and by_name[WDA[0]].tracks_suppressed >= 1
    with ft.db.read() as session:
        assert session.scalar(select(Video.id).where(Video.source_id == source,
                                                     Video.original_name == str(WDA[0]))) is None


def test_an_order_refuses_new_videos_and_its_erasure_takes_every_track(video_copy: Facetrail, actor: Actor,
                                                                        tmp_path: Path) -> None:
    ft = video_copy
    dpo = Actor("dora", Role.DPO)
    order = ft.orders.add(dpo, authority="CNIL", reference="MED-VIDEO", received_on="2026-11-01",
                          jurisdictions=["FR"], source_ids=[1], cease=True, erase=True, deadline="2026-12-31",
                          daily_penalty=100)
    pair = side_by_side(WDA[1], WDA[2], tmp_path / "pair.mp4", seconds=1.0)
    refused = ft.ingest.ingest(actor, 1, from_paths([pair], ft.input_limits))
    assert refused.videos_added == 0 and refused.refused_by_order == {order.id: 1}
    assert "MED-VIDEO" in refused.errors[0].cause or str(order.id) in refused.errors[0].cause
    ft.orders.run(dpo, order.id)
    with ft.db.read() as session:
        for table in (Track, Video, Face, StoredImage):
            assert session.scalars(select(table.id)).all() == [], table.__name__
    outcome = ft.search.search(actor, frame_at(WDA[0], 4.4)[0], purpose="demo", case_ref="after-order",
                               min_band="none")
    assert outcome.results == []
