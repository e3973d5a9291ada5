"""Ingestion of one video: sampled frames analysed, faces followed into tracks, and the tracks committed.

A video is the many-frame case of the same model as a photo: its key frames (the frames its tracks' kept faces
are in) are stored images like a photo, encrypted the same way, with `video_id` and `frame_time`; their faces are
faces like a photo's, with `track_id`. The video file itself is not kept.

Each video is committed in one transaction (video row, tracks, key frames, faces, index generation), after its
blobs are written under deterministic keys: a killed ingestion loses at most the video in hand, and a re-run
skips every video committed (by the SHA-256 of its bytes) and redoes that one.

Opt-outs act on tracks: a track any face of which matches the suppression list is dropped whole (no template,
no crop, no time range), and its face is blacked out in every key frame stored for another person.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from sqlalchemy import select
from sqlalchemy.orm import Session

from facetrail.config import Settings
from facetrail.crashpoints import crash_point
from facetrail.errors import FacetrailError, ModelUnavailableError
from facetrail.index.gallery import Gallery
from facetrail.ingest.analysis import Analyzer, VideoAnalysis, VideoProgress
from facetrail.ingest.report import IngestReport, ItemError, VideoSummary, cause_of
from facetrail.ingest.tracking import Sighting, default_track_distance
from facetrail.ingest.tracking import Track as FaceTrack
from facetrail.media.redact import redact_image_bytes
from facetrail.media.video import VideoLimits
from facetrail.policy.cease import collection_bans, first_refusal
from facetrail.policy.jurisdiction import Basis, Jurisdiction
from facetrail.policy.suppression import SuppressionList
from facetrail.sources.inputs import InputItem
from facetrail.store.blobs import BlobStore
from facetrail.store.db import Database, bump_generation
from facetrail.store.models import Face, ImageJurisdiction, Source, StoredImage, Track, Video
from facetrail.store.templates import seal_template


def video_limits(settings: Settings) -> VideoLimits:
    return VideoLimits(sample_fps=settings.video_sample_fps, scene_cut=settings.video_scene_cut,
                       max_duration_s=settings.video_max_duration_s, max_frames=settings.video_max_frames,
                       max_pixels=settings.video_max_pixels)


@dataclass
class _Plan:
    """What of an analysed video is stored: the tracks kept, their kept sightings, and per key frame the faces
    to store and the boxes of dropped tracks to black out."""

    kept: list[tuple[FaceTrack, list[Sighting]]]
    dropped: list[FaceTrack]


class VideoIngest:
    def __init__(self, settings: Settings, db: Database, blobs: BlobStore, gallery: Gallery, analyzer: Analyzer,
                 suppressions: SuppressionList) -> None:
        self.settings = settings
        self.db = db
        self.blobs = blobs
        self.gallery = gallery
        self.analyzer = analyzer
        self.suppressions = suppressions

    def known(self, source_id: int) -> set[str]:
        with self.db.read() as session:
            return set(session.scalars(select(Video.sha256).where(Video.source_id == source_id)))

    def ingest(self, source: Source, item: InputItem, report: IngestReport, known: set[str],
               progress: Callable[[VideoProgress], None] | None) -> None:
        """Analyse and commit one video; every problem is an ItemError in the report (the batch goes on)."""
        try:
            if item.error:
                raise FacetrailError(item.error)
            data = item.read()
        except (OSError, FacetrailError) as exc:
            report.errors.append(ItemError(item.name, str(exc) or type(exc).__name__))
            return
        digest = hashlib.sha256(data).hexdigest()
        if digest in known:
            report.videos_skipped += 1
            return
        known.add(digest)
        jurisdictions = tuple(Jurisdiction(code, Basis.SOURCE_DECLARED) for code in source.jurisdictions)
        with self.db.read() as session:
            refused = first_refusal(collection_bans(session), source.id, jurisdictions)
        if refused is not None:
            report.refuse(item.name, *refused)
            return
        try:
            analysis = self.analyzer.analyze_video(data, video_limits(self.settings), name=item.name,
                                                   track_distance=self.settings.video_track_distance
                                                   or default_track_distance(self.analyzer.backend.calibration()),
                                                   progress=progress)
        except ModelUnavailableError:
            raise  # the installation's fault, not this video's: every other one would fail the same way
        except Exception as exc:  # one bad video must never stop the batch
            report.errors.append(ItemError(item.name, cause_of(exc)))
            return
        self._commit(source, item, digest, len(data), jurisdictions, analysis, report)

    def _plan(self, session: Session, purposes: list[str], analysis: VideoAnalysis) -> _Plan:
        keep = self.settings.video_templates_per_track
        kept: list[tuple[FaceTrack, list[Sighting]]] = []
        dropped: list[FaceTrack] = []
        for track in analysis.tracks:
            matches = self.suppressions.screen([s.face.template for s in track.sightings], purposes,
                                               session=session)
            if any(matches):
                dropped.append(track)
            else:
                kept.append((track, track.kept(keep)))
        return _Plan(kept, dropped)

    def _commit(self, source: Source, item: InputItem, digest: str, size: int,
                jurisdictions: tuple[Jurisdiction, ...], analysis: VideoAnalysis, report: IngestReport) -> None:
        model_id = self.analyzer.backend.model_id
        source_id = source.id
        summary = VideoSummary(item.name, round(analysis.info.duration_s, 3), analysis.frames_decoded,
                               analysis.frames_analysed, analysis.faces_detected, 0, 0, 0)
        with self.db.write() as session, session.begin():
            if session.scalar(select(Video.id).where(Video.source_id == source_id, Video.sha256 == digest)):
                report.videos_skipped += 1
                return
            if session.scalar(select(Source.retired_at).where(Source.id == source_id)) is not None:
                report.errors.append(ItemError(item.name, f"refused: source {source_id} was retired"))
                return
            refused = first_refusal(collection_bans(session), source_id, jurisdictions)
            if refused is not None:
                report.refuse(item.name, *refused)
                return
            plan = self._plan(session, source.purposes, analysis)
            summary.tracks_suppressed = len(plan.dropped)
            report.faces_suppressed += sum(len(t.sightings) for t in plan.dropped)
            if plan.dropped and not plan.kept:
                report.videos_suppressed += 1  # only people who opted out: nothing of it is recorded
                report.videos.append(summary)
                return
            video = Video(source_id=source_id, sha256=digest, original_name=item.name, size_bytes=size,
                          container=analysis.info.container[:60], codec=analysis.info.codec[:40],
                          width=analysis.info.width, height=analysis.info.height,
                          duration_s=analysis.info.duration_s, fps=analysis.info.fps,
                          frames_decoded=analysis.frames_decoded, frames_analysed=analysis.frames_analysed,
                          faces_detected=analysis.faces_detected, source_version=source.version,
                          origin_url=item.origin.url if item.origin else None,
                          fetched_at=item.origin.fetched_at if item.origin else None)
            session.add(video)
            session.flush()
            faces, vectors = self._store(session, video, source, item, digest, jurisdictions, analysis, plan, model_id)
            generation = bump_generation(session) if faces else None
            crash_point("video_stored")  # blobs written, nothing committed: a re-run does it all again
        crash_point("video_committed")
        summary.tracks = len(plan.kept)
        summary.templates_kept = len(faces)
        report.videos_added += 1
        report.faces_added += len(faces)
        report.videos.append(summary)
        if faces and generation is not None:
            self.gallery.add_committed(np.array([f.id for f in faces], dtype=np.int64), np.stack(vectors),
                                       np.full(len(faces), source_id, dtype=np.int64), generation)

    def _store(self, session: Session, video: Video, source: Source, item: InputItem, digest: str,
               jurisdictions: tuple[Jurisdiction, ...], analysis: VideoAnalysis, plan: _Plan,
               model_id: str) -> tuple[list[Face], list[np.ndarray]]:
        """Track rows, key frames and their faces (every face of a kept track in a key frame is stored, so that
        erasing anyone seen in a stored frame can black them out of it)."""
        rows: dict[int, Track] = {}
        for ordinal, (track, _kept) in enumerate(plan.kept):
            rows[id(track)] = Track(video_id=video.id, source_id=source.id, ordinal=ordinal, shot=track.shot,
                                    ranges=[list(r) for r in track.ranges(analysis.step, analysis.info.duration_s)],
                                    sightings=len(track.sightings), templates=0)
        session.add_all(rows.values())
        session.flush()
        key_frames = sorted({s.frame for _track, kept in plan.kept for s in kept})
        in_frame: dict[int, list[tuple[FaceTrack, Sighting]]] = {f: [] for f in key_frames}
        for track, _kept in plan.kept:
            for sighting in track.sightings:
                if sighting.frame in in_frame:
                    in_frame[sighting.frame].append((track, sighting))
        hidden = {f: [s.face.detection.box for t in plan.dropped for s in t.sightings if s.frame == f]
                  for f in key_frames}
        best = {id(track): track.best for track, _kept in plan.kept}
        vault = self.blobs.vault
        faces: list[Face] = []
        vectors: list[np.ndarray] = []
        for position in key_frames:
            frame = analysis.frames[position]
            prefix = f"{digest}-{source.id}-{frame.number}"
            here = in_frame[position]
            keys = vault.new_keys("face", len(here))
            image_key, image_data_key = None, None
            if self.settings.store_images:
                image_data_key = vault.new_key("image")
                data = frame.jpeg
                if hidden[position]:
                    data = redact_image_bytes(data, hidden[position], source_format="JPEG",
                                              max_pixels=self.settings.max_image_pixels, fill=True)
                image_key = self.blobs.put(f"images/{prefix}", data, image_data_key)
            image = StoredImage(
                source_id=source.id, sha256=hashlib.sha256(f"{digest}:{frame.number}".encode()).hexdigest(),
                original_name=f"{item.name} @ {frame.time:.2f} s", size_bytes=len(frame.jpeg), width=frame.width,
                height=frame.height, format="JPEG", face_count=len(here), blob_key=image_key,
                key_id=image_data_key.id if image_data_key else None, source_version=source.version,
                origin_url=video.origin_url, fetched_at=video.fetched_at, video_id=video.id, frame_time=frame.time)
            session.add(image)
            session.flush()
            session.add_all(ImageJurisdiction(image_id=image.id, code=j.code, basis=j.basis.value)
                            for j in dict.fromkeys(jurisdictions))
            for ordinal, (track, sighting) in enumerate(here):
                face = sighting.face
                det = face.detection
                crop_key = self.blobs.put(f"crops/{prefix}-{ordinal}.jpg", face.crop_jpeg, keys[ordinal])
                row = Face(
                    image_id=image.id, source_id=source.id, ordinal=ordinal, box_left=det.box.left,
                    box_top=det.box.top, box_right=det.box.right, box_bottom=det.box.bottom,
                    landmarks=[[round(p.x, 1), round(p.y, 1)] for p in det.landmarks], detector=det.detector,
                    detector_score=round(det.score, 4), size_px=face.quality.size_px,
                    sharpness=face.quality.sharpness, yaw=face.quality.yaw, model_id=model_id,
                    template=seal_template(vault, keys[ordinal], face.template), crop_key=crop_key,
                    key_id=keys[ordinal].id, track_id=rows[id(track)].id)
                session.add(row)
                session.flush()
                faces.append(row)
                vectors.append(face.template)
                rows[id(track)].templates += 1
                if sighting is best[id(track)]:
                    rows[id(track)].best_face_id = row.id
        return faces, vectors
