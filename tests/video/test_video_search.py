"""Videos become tracks with time ranges, and a frame of a person finds their track (one result per track)."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest
from sqlalchemy import func, select

from facetrail.accounts.roles import Actor
from facetrail.runtime import Facetrail
from facetrail.sources.inputs import from_paths
from facetrail.store.models import Face, StoredImage, Track, Video
from facetrail.vision.calibration import Band
from tests.video.clips import HAMILTON, WDA, frame_at, jpeg_size
from tests.video.conftest import VideoStore

AT_LEAST_POSSIBLE = {Band.STRONG, Band.PROBABLE, Band.POSSIBLE}


def test_the_summary_reports_each_video(video_store: VideoStore) -> None:
    report = video_store.report
    assert report.videos_added == 5 and report.outcome.value == "complete"
    by_name = {Path(v.name).name: v for v in report.videos}
    assert set(by_name) == {p.name for p in [*WDA, HAMILTON]}
    for clip in WDA:
        summary = by_name[clip.name]
        assert summary.frames_decoded == 200 and summary.frames_analysed == 8  # 8 s at 25 fps, sampled at 1/s
        assert summary.faces_detected >= 6 and summary.templates_kept >= 1
    hamilton = by_name[HAMILTON.name]
    assert hamilton.frames_decoded == 275 and hamilton.faces_detected > 0
    # People followed across frames: at most one track for every two faces seen (the default model sees up to five
    # people on stage at once, each followed from one sampled frame to the next), not one track per face.
    assert 1 <= hamilton.tracks <= hamilton.faces_detected // 2
    assert hamilton.templates_kept < hamilton.faces_detected
    assert report.faces_added == sum(v.templates_kept for v in report.videos)


def test_each_wda_clip_has_one_dominant_track(video_ft: Facetrail) -> None:
    with video_ft.db.read() as session:
        for clip in WDA:
            video = session.scalar(select(Video).where(Video.original_name == str(clip)))
            assert video is not None and video.duration_s == pytest.approx(8.0)
            sightings = sorted(session.scalars(select(Track.sightings).where(Track.video_id == video.id)),
                               reverse=True)
            assert sightings and sightings[0] >= 0.75 * sum(sightings) and sightings[0] >= 6, (clip.name, sightings)


def test_key_frames_are_stored_images_of_their_video(video_ft: Facetrail) -> None:
    with video_ft.db.read() as session:
        frames = session.execute(select(StoredImage, Video).join(Video, StoredImage.video_id == Video.id)).all()
        assert frames
        for image, video in frames:
            assert image.frame_time is not None and 0 <= image.frame_time <= video.duration_s + 1
            assert image.blob_key is not None and image.original_name.startswith(video.original_name)
            stored = video_ft.blobs.get(image.blob_key)
            assert jpeg_size(stored) == (video.width, video.height)
        # Every face of a video belongs to a track of that video.
        orphans = session.scalar(select(func.count()).select_from(Face).join(StoredImage)
                                 .where(StoredImage.video_id.is_not(None), Face.track_id.is_(None)))
        assert orphans == 0


@pytest.mark.parametrize("clip", WDA, ids=lambda p: p.stem)
def test_a_frame_of_a_politician_finds_their_clip_first_and_no_other(video_ft: Facetrail, actor: Actor,
                                                                      clip: Path) -> None:
    photo, time = frame_at(clip, 3.4)  # between two sampled frames: not a stored one
    outcome = video_ft.search.search(actor, photo, purpose="demo", case_ref="wda", top_k=20)
    assert outcome.results, clip.name
    first = outcome.results[0]
    assert first.video is not None and Path(first.video.name) == clip
    assert any(start <= time <= end for start, end in first.video.ranges)
    shown = {Path(h.video.name) for h in outcome.results if h.video is not None and h.band in AT_LEAST_POSSIBLE}
    assert shown & set(WDA) == {clip}


def test_a_track_is_one_result(video_ft: Facetrail, actor: Actor) -> None:
    photo, _ = frame_at(WDA[0], 5.2)
    outcome = video_ft.search.search(actor, photo, purpose="demo", case_ref="collapse", top_k=20, min_band="none")
    tracks = Counter(h.video.track_id for h in outcome.results if h.video is not None)
    assert tracks and max(tracks.values()) == 1
    with video_ft.db.read() as session:
        kept = session.scalar(select(Track.templates).where(Track.id == outcome.results[0].video.track_id))
    assert kept is not None and kept >= 2  # several templates of that person, one result
    as_json = outcome.as_dict()["results"][0]["video"]
    assert as_json["key_frame"].endswith(f"/faces/{outcome.results[0].face_id}/frame")
    assert as_json["ranges"] and as_json["track_id"] == outcome.results[0].video.track_id


def test_a_frame_from_the_hamilton_clip_finds_the_track_at_that_time(video_ft: Facetrail, actor: Actor) -> None:
    photo, time = frame_at(HAMILTON, 5.5)
    outcome = video_ft.search.search(actor, photo, purpose="demo", case_ref="hamilton")
    hits = [h for h in outcome.results if h.video is not None and Path(h.video.name) == HAMILTON]
    assert hits, outcome.results
    assert any(start <= time <= end for start, end in hits[0].video.ranges), (time, hits[0].video.ranges)
    assert outcome.results[0] == hits[0]
    # The key frame of the result, with the face outlined, is reachable through the search that showed it.
    frame = video_ft.search.result_image(actor, outcome.search_id, hits[0].face_id)
    assert jpeg_size(frame) == (640, 360)


def test_ingesting_the_same_videos_again_adds_nothing(video_ft: Facetrail, actor: Actor) -> None:
    with video_ft.db.read() as session:
        before = (session.scalar(select(func.count()).select_from(Face)),
                  session.scalar(select(func.count()).select_from(Track)))
    report = video_ft.ingest.ingest(actor, 1, from_paths([WDA[0], HAMILTON], video_ft.input_limits))
    assert report.videos_skipped == 2 and report.videos_added == 0 and report.faces_added == 0
    assert report.outcome.value == "complete"
    with video_ft.db.read() as session:
        after = (session.scalar(select(func.count()).select_from(Face)),
                 session.scalar(select(func.count()).select_from(Track)))
    assert after == before
