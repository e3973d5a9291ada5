"""Rights over video tracks: a track is a group of faces (its kept templates), and every right acts on it whole.

A person matched on one template of a track is the person of the whole track: `whole_tracks` widens a set of
face ids to every face of their tracks, so access lists the whole track, and erasure, restriction and opt-out
take every template, crop and index entry of it (and black the person out of every key frame stored for it).
Once the faces are gone, `drop_empty` removes the tracks left without a face (their time ranges say when that
person was seen) and the videos left without a track (their name and hash would only document the person).
`appearances` is what an access package says about videos: the video, when the person is seen, the key frames.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from facetrail.store.models import Face, StoredImage, Track, Video

CHUNK = 500


def whole_tracks(session: Session, face_ids: Sequence[int]) -> list[int]:
    """`face_ids` and every other face of the tracks they belong to, distinct and sorted."""
    wanted = set(face_ids)
    tracks: set[int] = set()
    for chunk in _chunks(sorted(wanted)):
        tracks.update(t for t in session.scalars(select(Face.track_id).where(
            Face.id.in_(chunk), Face.track_id.is_not(None))) if t is not None)
    for chunk in _chunks(sorted(tracks)):
        wanted.update(session.scalars(select(Face.id).where(Face.track_id.in_(chunk))))
    return sorted(wanted)


def tracks_of(session: Session, face_ids: Sequence[int]) -> set[int]:
    found: set[int] = set()
    for chunk in _chunks(sorted(set(face_ids))):
        found.update(t for t in session.scalars(select(Face.track_id).where(
            Face.id.in_(chunk), Face.track_id.is_not(None))) if t is not None)
    return found


def drop_empty(session: Session, track_ids: Iterable[int]) -> None:
    """Delete the tracks (of these) left with no face, then their videos left with no track and no key frame."""
    ids = sorted(set(track_ids))
    if not ids:
        return
    videos: set[int] = set()
    for chunk in _chunks(ids):
        videos.update(session.scalars(select(Track.video_id).where(Track.id.in_(chunk))))
        has_face = select(Face.id).where(Face.track_id == Track.id).exists()
        session.execute(delete(Track).where(Track.id.in_(chunk), ~has_face))
    for chunk in _chunks(sorted(videos)):
        has_track = select(Track.id).where(Track.video_id == Video.id).exists()
        has_frame = select(StoredImage.id).where(StoredImage.video_id == Video.id).exists()
        session.execute(delete(Video).where(Video.id.in_(chunk), ~has_track, ~has_frame))


def appearances(session: Session, face_ids: Sequence[int]) -> list[dict[str, Any]]:
    """The videos these faces were seen in: per track, the video, when the person is seen and the key frames
    (file names as in the access package: images/<image id>.jpg, faces/<face id>.jpg)."""
    rows: list[Any] = []
    for chunk in _chunks(sorted(set(face_ids))):
        rows += session.execute(
            select(Face.id, Face.image_id, StoredImage.frame_time, Track, Video)
            .join(StoredImage, Face.image_id == StoredImage.id).join(Track, Face.track_id == Track.id)
            .join(Video, Track.video_id == Video.id).where(Face.id.in_(chunk))).all()
    found: dict[int, dict[str, Any]] = {}
    for face_id, image_id, frame_time, track, video in sorted(rows, key=lambda r: (r[3].id, r[2] or 0.0)):
        entry = found.setdefault(track.id, {
            "video": video.original_name, "video_id": video.id, "duration_s": round(video.duration_s, 3),
            "track_id": track.id, "seen": track.ranges, "ingested_at": video.ingested_at.isoformat(),
            "fetched_from": video.origin_url, "key_frames": []})
        entry["key_frames"].append({"time": frame_time, "image_file": f"images/{image_id}.jpg",
                                    "crop_file": f"faces/{face_id}.jpg", "face_id": face_id})
    return list(found.values())


def _chunks(ids: Sequence[int]) -> Iterable[list[int]]:
    for start in range(0, len(ids), CHUNK):
        yield list(ids[start:start + CHUNK])
