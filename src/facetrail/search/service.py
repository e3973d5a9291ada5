"""Search the gallery with a photo. The photo lives only in memory; its SHA-256 is what is logged."""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from facetrail.accounts.roles import Action, Actor, require, require_purpose
from facetrail.audit.log import AuditLog
from facetrail.config import Settings
from facetrail.errors import (
    InvalidValueError,
    KeyUnavailableError,
    NoFaceError,
    NotFoundError,
    PermissionDeniedError,
)
from facetrail.index.gallery import Gallery
from facetrail.ingest.analysis import Analyzer
from facetrail.media.geometry import Box
from facetrail.media.image import decode_image
from facetrail.media.outline import outline_face
from facetrail.policy.sources import validate_purpose
from facetrail.search.reach import Reach, parse_min_band, reach
from facetrail.search.scoring import Scorer
from facetrail.sources.registry import SourceRegistry
from facetrail.store.blobs import BlobStore
from facetrail.store.db import Database
from facetrail.store.models import Face, SearchRecord, SearchResultRecord, Source, StoredImage, Track, Video
from facetrail.timestamps import iso_z
from facetrail.vision.calibration import Band, fpir_of
from facetrail.vision.pipeline import analyze_faces

MAX_TOP_K = 100
VIDEO_HEADROOM = 4  # index hits asked for per result wanted: the extra templates of a track collapse into one


MIN_FACE_PX = 50
MIN_SHARPNESS = 50.0
MAX_YAW = 0.6


@dataclass(frozen=True)
class QueryFace:
    index: int
    box: Box
    detector_score: float
    size_px: int
    sharpness: float
    yaw: float

    def warnings(self) -> list[str]:
        """Why matches for this face may be unreliable (poor query photos cause most false matches)."""
        found = []
        if self.size_px < MIN_FACE_PX:
            found.append(f"the face is small ({self.size_px} px; at least {MIN_FACE_PX} px is recommended)")
        if self.sharpness < MIN_SHARPNESS:
            found.append(f"the face is blurred (sharpness {self.sharpness:.0f}; below {MIN_SHARPNESS:.0f})")
        if abs(self.yaw) > MAX_YAW:
            found.append("the face is turned away from the camera")
        return found


@dataclass(frozen=True)
class VideoHit:
    """Where a result from a video comes from: the video, the track (one person in one shot) and the time
    ranges (seconds) the person is seen in, and the time of the key frame the matching face is in."""

    video_id: int
    name: str
    duration_s: float
    track_id: int
    ranges: list[list[float]]
    frame_time: float

    def as_dict(self) -> dict[str, Any]:
        return {"video_id": self.video_id, "name": self.name, "duration_s": round(self.duration_s, 3),
                "track_id": self.track_id, "ranges": self.ranges, "frame_time": self.frame_time}


@dataclass(frozen=True)
class SearchHit:
    rank: int
    face_id: int
    image_id: int
    source_id: int
    source_name: str
    original_name: str
    score: float
    band: Band | None
    distance: float
    box: Box
    ingested_at: datetime
    fmr: float | None = None  # the per-comparison false-match rate at this distance
    fpir: float | None = None  # the share of searches of this size in which a stranger comes this close
    video: VideoHit | None = None


@dataclass
class SearchOutcome:
    search_id: str
    purpose: str
    case_ref: str
    query_sha256: str
    query_faces: list[QueryFace]
    used_face: int | None
    reach: Reach
    calibrated: bool
    results: list[SearchHit] = field(default_factory=list)

    @property
    def min_band(self) -> Band | None:
        """The lowest band shown; None: automatic, from the number of faces searched (see `reach`)."""
        return self.reach.min_band

    @property
    def warnings(self) -> list[str]:
        return [] if self.used_face is None else self.query_faces[self.used_face].warnings()

    def as_dict(self) -> dict[str, Any]:
        return {
            "search_id": self.search_id, "purpose": self.purpose, "case_ref": self.case_ref,
            "query_sha256": self.query_sha256, "used_face": self.used_face, "min_band": self.reach.min_band_name,
            "calibrated": self.calibrated, "warnings": self.warnings, "reach": self.reach.as_dict(),
            "query_faces": [{"index": q.index, "box": q.box.as_dict(), "detector_score": round(q.detector_score, 3),
                             "size_px": q.size_px, "sharpness": q.sharpness, "yaw": q.yaw,
                             "warnings": q.warnings()} for q in self.query_faces],
            "results": [{"rank": h.rank, "face_id": h.face_id, "image_id": h.image_id, "source_id": h.source_id,
                         "source_name": h.source_name, "original_name": h.original_name, "score": h.score,
                         "band": h.band.value if h.band else None,
                         "distance": round(h.distance, 4), "fmr": h.fmr, "fpir": h.fpir,
                         "box": h.box.as_dict(),
                         "ingested_at": iso_z(h.ingested_at),
                         "crop": f"/v1/searches/{self.search_id}/faces/{h.face_id}/crop",
                         "video": None if h.video is None else {
                             **h.video.as_dict(),
                             "key_frame": f"/v1/searches/{self.search_id}/faces/{h.face_id}/frame"}}
                        for h in self.results],
        }


class SearchService:
    def __init__(self, settings: Settings, db: Database, blobs: BlobStore, gallery: Gallery, audit: AuditLog,
                 sources: SourceRegistry, analyzer: Analyzer, scorer: Scorer) -> None:
        self.settings = settings
        self.db = db
        self.blobs = blobs
        self.gallery = gallery
        self.audit = audit
        self.sources = sources
        self.analyzer = analyzer
        self.scorer = scorer

    def search(self, actor: Actor, photo: bytes, *, purpose: str, case_ref: str, face: int | None = None,
               top_k: int = 10, min_band: str | None = None) -> SearchOutcome:
        """Find the faces most like one face of `photo` among sources registered for `purpose`.
        Results below `min_band` are not returned; by default (the configured one, "auto") the threshold keeps
        strangers out of all but `target_fpir` of searches at the number of faces this search reaches."""
        require(actor, Action.SEARCH)
        band = parse_min_band(min_band or self.settings.min_band)
        purpose = validate_purpose(purpose)
        require_purpose(actor, purpose)  # a key scoped to some purposes searches for those only
        allowed = self.sources.ids_for_purpose(purpose)
        if not allowed:
            # An empty answer would read as "this person is not in the collection": say that nothing was searched.
            raise InvalidValueError("purpose", _no_source_for(actor, purpose, self.sources.registered_purposes()))
        case_ref = (case_ref or "").strip()
        if not case_ref or len(case_ref) > 200:
            raise InvalidValueError("case", "a case reference (1-200 characters) is required")
        if isinstance(top_k, bool) or not isinstance(top_k, int) or not 1 <= top_k <= MAX_TOP_K:
            raise InvalidValueError("top", f"must be a whole number from 1 to {MAX_TOP_K}")
        limits = reach(self.scorer.calibration, self.gallery.count(allowed), band, self.settings.target_fpir)
        query_sha = hashlib.sha256(photo).hexdigest()
        image = decode_image(photo, max_pixels=self.settings.max_image_pixels)
        analysed = analyze_faces(self.analyzer.backend, image.pixels, with_crops=False)
        del image  # the query photo is never kept: not on disk, not beyond this call
        query_faces = [QueryFace(i, a.detection.box, a.detection.score, a.quality.size_px, a.quality.sharpness,
                                 a.quality.yaw) for i, a in enumerate(analysed)]
        outcome = SearchOutcome(secrets.token_hex(16), purpose, case_ref, query_sha, query_faces, None, limits,
                                self.scorer.calibrated)
        if not analysed:
            self._record(actor, outcome)
            raise NoFaceError("no face found in the query photo")
        chosen = 0 if face is None else face
        if isinstance(chosen, bool) or not isinstance(chosen, int) or not 0 <= chosen < len(analysed):
            raise InvalidValueError("face", f"the photo holds {len(analysed)} face(s); choose 0-{len(analysed) - 1}")
        outcome.used_face = chosen
        # A video's track holds a few templates of one person: ask for more, then keep one result per track.
        wanted = min(top_k * VIDEO_HEADROOM, MAX_TOP_K * VIDEO_HEADROOM)
        hits = [h for h in self.gallery.search(analysed[chosen].template, wanted, allowed)
                if h.distance <= limits.max_distance]
        outcome.results = self._resolve(hits, allowed, limits.gallery_size)[:top_k]
        self._record(actor, outcome)
        return outcome

    def _resolve(self, hits: list[Any], allowed: set[int], gallery_size: int) -> list[SearchHit]:
        by_id = {h.face_id: h for h in hits}
        with self.db.read() as session:
            rows = session.execute(
                select(Face, StoredImage, Source)
                .join(StoredImage, Face.image_id == StoredImage.id)
                .join(Source, Face.source_id == Source.id)
                .where(Face.id.in_(list(by_id)))
            ).all()
            videos = _videos(session, {face.track_id for face, _image, _source in rows if face.track_id})
        found = {face.id: (face, image, source) for face, image, source in rows}
        results: list[SearchHit] = []
        tracks_shown: set[int] = set()
        for hit in hits:
            if hit.face_id not in found:
                continue  # erased since the index was read
            face, image, source = found[hit.face_id]
            fmr = None if self.scorer.calibration is None else self.scorer.calibration.fmr(hit.distance)
            if source.id not in allowed or face.restricted:
                continue  # defence in depth: the index already excludes both
            video = None
            if face.track_id is not None:
                if face.track_id in tracks_shown or face.track_id not in videos:
                    continue  # one result per track: its best template (hits come best first)
                tracks_shown.add(face.track_id)
                track, row = videos[face.track_id]
                video = VideoHit(row.id, row.original_name, row.duration_s, track.id, track.ranges,
                                 image.frame_time or 0.0)
            results.append(SearchHit(
                rank=len(results) + 1, face_id=face.id, image_id=image.id, source_id=source.id,
                source_name=source.name, original_name=image.original_name,
                score=self.scorer.score(hit.distance), band=self.scorer.band(hit.distance), distance=hit.distance,
                box=Box(face.box_left, face.box_top, face.box_right, face.box_bottom),
                ingested_at=image.ingested_at, video=video,
                fmr=fmr, fpir=None if fmr is None else fpir_of(fmr, gallery_size),
            ))
        return results

    def _record(self, actor: Actor, outcome: SearchOutcome) -> None:
        with self.db.write() as session, session.begin():
            session.add(SearchRecord(id=outcome.search_id, actor=actor.name, role=actor.role.value,
                                     purpose=outcome.purpose, case_ref=outcome.case_ref,
                                     query_sha256=outcome.query_sha256))
            session.flush()
            session.add_all([SearchResultRecord(search_id=outcome.search_id, rank=h.rank, face_id=h.face_id,
                                                score=h.score) for h in outcome.results])
            self.audit.record(session, actor=actor.name, action="search", details={
                "search_id": outcome.search_id, "purpose": outcome.purpose, "case": outcome.case_ref,
                "query_sha256": outcome.query_sha256, "query_faces": len(outcome.query_faces),
                "used_face": outcome.used_face, "min_band": outcome.reach.min_band_name,
                "gallery_size": outcome.reach.gallery_size, "max_distance": outcome.reach.as_dict()["max_distance"],
                "result_face_ids": [h.face_id for h in outcome.results],
            })

    def result_crop(self, actor: Actor, search_id: str, face_id: int) -> bytes:
        """The crop of a face that this search showed to this actor; nothing else is reachable here."""
        face = self.shown_face(actor, search_id, face_id)
        if face.crop_key is None:
            raise _gone()
        try:
            return self.blobs.get(face.crop_key)
        except (FileNotFoundError, KeyUnavailableError):
            raise _gone() from None  # erased between the lookup and the read

    def result_image(self, actor: Actor, search_id: str, face_id: int) -> bytes:
        """The stored image of a face that this search showed to this actor, as a JPEG with the face outlined.
        Audited (`search.image`): the whole image shows more than the crop."""
        face = self.shown_face(actor, search_id, face_id)
        with self.db.read() as session:
            image = session.get(StoredImage, face.image_id)
        if image is None or image.blob_key is None:
            raise NotFoundError("the image of this face is not kept (store_images is off) or has been erased")
        try:
            data = self.blobs.get(image.blob_key)
        except (FileNotFoundError, KeyUnavailableError):
            raise _gone() from None
        outlined = outline_face(data, Box(face.box_left, face.box_top, face.box_right, face.box_bottom),
                                max_pixels=self.settings.max_image_pixels)
        with self.db.write() as session, session.begin():
            self.audit.record(session, actor=actor.name, action="search.image",
                              details={"search_id": search_id, "face_id": face_id, "image_id": image.id})
        return outlined

    def shown_face(self, actor: Actor, search_id: str, face_id: int) -> Face:
        """The face, if this search (run by this actor) returned it and it is still held."""
        require(actor, Action.SEARCH)
        with self.db.read() as session:
            record = session.get(SearchRecord, search_id)
            if record is None:
                raise NotFoundError("no such search")
            if record.actor != actor.name and not actor.local:
                raise PermissionDeniedError("a search's results are visible only to the account that ran it")
            shown = session.scalar(select(SearchResultRecord).where(
                SearchResultRecord.search_id == search_id, SearchResultRecord.face_id == face_id))
            face = session.get(Face, face_id) if shown is not None else None
        if face is None:
            raise _gone()
        return face


def _videos(session: Session, track_ids: set[int]) -> dict[int, tuple[Track, Video]]:
    """Track id -> (track, its video)."""
    if not track_ids:
        return {}
    rows = session.execute(select(Track, Video).join(Video, Track.video_id == Video.id)
                           .where(Track.id.in_(sorted(track_ids)))).all()
    return {track.id: (track, video) for track, video in rows}


def _gone() -> NotFoundError:
    return NotFoundError("this search did not return that face, or it has been erased")


def _no_source_for(actor: Actor, purpose: str, registered: set[str]) -> str:
    """Why a search for `purpose` reaches nothing, naming the purposes this actor could search instead."""
    usable = registered if actor.local or actor.purposes is None else registered & actor.purposes
    choices = ", ".join(sorted(usable)) or "none (register a source for a purpose first)"
    return f"no source is registered for the purpose {purpose!r}; purposes with sources you may search: {choices}"
