"""The tracker on real faces: one person followed across frames, two people kept apart, shots cut tracks."""

from __future__ import annotations

from pathlib import Path

import pytest

from facetrail.ingest.analysis import Analyzer
from facetrail.ingest.tracking import Tracker
from facetrail.media.image import decode_image
from facetrail.vision.backend import VisionConfig
from facetrail.vision.pipeline import AnalyzedFace, analyze_faces
from tests.video.clips import WDA, frame_at


@pytest.fixture(scope="module")
def faces() -> dict[tuple[Path, float], AnalyzedFace]:
    """The one face of each of two WDA clips at 0.5 s steps."""
    backend = Analyzer(VisionConfig(detector_fallback=False)).backend
    found = {}
    for clip in (WDA[0], WDA[1]):
        for step in range(4):
            pixels = decode_image(frame_at(clip, step / 2)[0], max_pixels=10**8).pixels
            [face] = analyze_faces(backend, pixels)
            found[(clip, step / 2)] = face
    return found


def test_one_person_is_one_track_and_two_people_are_two(faces: dict[tuple[Path, float], AnalyzedFace]) -> None:
    tracker = Tracker(max_distance=0.5)
    for step in range(4):
        t = step / 2
        tracker.add(step, t, [faces[(WDA[0], t)], faces[(WDA[1], t)]])
    tracks = tracker.tracks()
    assert len(tracks) == 2
    for track in tracks:
        assert len(track.sightings) == 4 and len({id(s.face) for s in track.sightings}) == 4
        assert track.ranges(0.5, 8.0) == [(0.0, 1.75)]
    assert [len(t.sightings) for t in tracker.tracks()] == [4, 4]


def test_a_cut_starts_new_tracks_and_a_gap_ends_one(faces: dict[tuple[Path, float], AnalyzedFace]) -> None:
    tracker = Tracker(max_distance=0.5, max_gap_s=0.6)
    tracker.add(0, 0.0, [faces[(WDA[0], 0.0)]])
    tracker.add(1, 0.5, [faces[(WDA[0], 0.5)]])
    tracker.cut()
    tracker.add(2, 1.0, [faces[(WDA[0], 1.0)]])
    tracks = tracker.tracks()
    assert [len(t.sightings) for t in tracks] == [2, 1] and [t.shot for t in tracks] == [0, 1]
    # Within one shot, a person lost for longer than the gap and found again is merged back into one track.
    tracker = Tracker(max_distance=0.5, max_gap_s=0.6)
    tracker.add(0, 0.0, [faces[(WDA[1], 0.0)]])
    tracker.add(1, 1.5, [faces[(WDA[1], 1.5)]])
    [track] = tracker.tracks()
    assert track.ranges(0.5, 8.0) == [(0.0, 0.25), (1.25, 1.75)]
    # Asking again (progress does, while a video is analysed) merges again from the tracker's own tracks.
    assert [len(t.sightings) for t in tracker.tracks()] == [2]


def test_the_kept_sightings_start_with_the_best(faces: dict[tuple[Path, float], AnalyzedFace]) -> None:
    tracker = Tracker(max_distance=0.5)
    for step in range(4):
        tracker.add(step, step / 2, [faces[(WDA[0], step / 2)]])
    [track] = tracker.tracks()
    kept = track.kept(3)
    assert kept[0] is track.best and 1 <= len(kept) <= 3 and len({id(s) for s in kept}) == len(kept)
    assert track.kept(1) == [track.best]
