"""Ingestion of a batch into one source: idempotent by content hash, resumable after any crash.

Each image is committed in its own transaction (image row, face rows and the index generation
together), after its blobs are written under deterministic keys. A crash therefore loses at most
the images in flight, and a re-run skips what was committed and redoes the rest: the same end
state as an uninterrupted run. The index catches up from the store on its next open.

Faces of people on the suppression list (hard rule 6) are dropped in that same transaction, before
any of their bytes is written: no template, no crop, and their region blacked out in the stored image.

`interrupt()` (the server calls it when it is told to stop) ends a batch in progress after the image in
hand: what is committed stays, the report says it was interrupted, and a re-run does the rest.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Callable, Generator, Iterable, Iterator
from contextlib import closing
from dataclasses import dataclass
from functools import partial

import numpy as np
from sqlalchemy import select
from sqlalchemy.orm import Session

from facetrail.accounts.roles import Action, Actor, require
from facetrail.audit.log import AuditLog
from facetrail.config import Settings
from facetrail.crypto.vault import DataKey
from facetrail.errors import ConflictError, FacetrailError, ShuttingDownError
from facetrail.index.gallery import Gallery
from facetrail.ingest.analysis import Analyzer, ImageAnalysis, VideoProgress
from facetrail.ingest.queue import JobQueue
from facetrail.ingest.report import IngestReport, ItemError, SkippedItem
from facetrail.ingest.videos import VideoIngest
from facetrail.ingest.workers import WorkerPool
from facetrail.media.redact import redact_image_bytes
from facetrail.media.video import looks_like_video
from facetrail.policy.cease import collection_bans, first_refusal
from facetrail.policy.jurisdiction import Jurisdiction, JurisdictionResolver
from facetrail.policy.suppression import SuppressionList
from facetrail.sources.inputs import InputItem, is_video_name
from facetrail.sources.registry import SourceRegistry
from facetrail.store.blobs import BlobStore
from facetrail.store.db import Database, bump_generation
from facetrail.store.models import EnforcementOrder, Face, ImageJurisdiction, Source, StoredImage
from facetrail.store.templates import seal_template
from facetrail.vision.pipeline import AnalyzedFace

Progress = Callable[[int, int], None]
"""Called with (items done, items total) as a batch advances."""


@dataclass
class _Pending:
    item: InputItem
    data: bytes
    sha256: str
    jurisdictions: tuple[Jurisdiction, ...]


class IngestService:
    def __init__(self, settings: Settings, db: Database, blobs: BlobStore, gallery: Gallery, audit: AuditLog,
                 sources: SourceRegistry, analyzer: Analyzer, *, suppressions: SuppressionList,
                 jurisdictions: JurisdictionResolver) -> None:
        self.settings = settings
        self.suppressions = suppressions
        self.jurisdictions = jurisdictions
        self.db = db
        self.blobs = blobs
        self.gallery = gallery
        self.audit = audit
        self.sources = sources
        self.analyzer = analyzer
        self._stopping = threading.Event()
        self.videos = VideoIngest(settings, db, blobs, gallery, analyzer, suppressions)
        # Called as each video is decoded and analysed (frames done / total, faces, tracks); the CLI shows it.
        self.video_progress: Callable[[VideoProgress], None] | None = None

    def interrupt(self) -> None:
        """Stop every batch in progress after its current image, and any later one at once (shutdown)."""
        self._stopping.set()

    def ingest(self, actor: Actor, source_id: int, items: Iterable[InputItem], *,
               progress: Progress | None = None, workers: int | None = None,
               queue_url: str | None = None) -> IngestReport:
        """Ingest `items` into the source; per-item problems are reported, never raised. With `queue_url` (or the
        queue_url setting) the photos are analysed by `facetrail worker` processes through Redis (queue.py)."""
        require(actor, Action.INGEST)
        if self._stopping.is_set():
            raise ShuttingDownError("the service is shutting down: no new ingestion starts")
        source = self.sources.require_source(source_id)
        if source.retired_at is not None:
            raise ConflictError(f"source {source.id} was retired on {source.retired_at.date().isoformat()}; "
                                "it takes no new images")
        url = queue_url or self.settings.queue_url
        # Unreachable: an error before any work.
        queue = JobQueue(url, self.analyzer.config, _data, stopping=self._stopping.is_set) if url else None
        batch = list(items)
        report = IngestReport(source_id=source.id, items=len(batch))
        with self.db.write() as session, session.begin():
            self.audit.record(session, actor=actor.name, action="ingest.start",
                              details={"source_id": source.id, "items": len(batch)})
        done = 0

        def advance() -> None:
            nonlocal done
            done += 1
            if progress is not None:
                progress(done, len(batch))

        # A media item yields frames: a photo one, a video many (sampled and followed into tracks, videos.py).
        # Videos are analysed in this process, one at a time, each committed whole, after the photos.
        videos = [item for item in batch if is_video_name(item.name) and not item.skipped]
        photos = [item for item in batch if not (is_video_name(item.name) and not item.skipped)]
        pending = self._pending(photos, source.id, source.jurisdictions, report, advance, videos)
        since_save = 0
        analysing = (queue.analyse(pending) if queue
                     else self._analyse(pending, workers or self.settings.worker_count()))
        with closing(analysing) as analysed:
            for job, outcome in analysed:
                if isinstance(outcome, BaseException):
                    report.errors.append(ItemError(job.item.name, _cause(outcome)))
                else:
                    since_save += self._commit(source, job, outcome, report)
                    if since_save >= self.settings.index_save_every:
                        self.gallery.persist()
                        since_save = 0
                advance()
                if self._stopping.is_set():
                    report.interrupted = True
                    break  # closing the analysis stops the worker processes without waiting for them
        report.interrupted = report.interrupted or self._stopping.is_set()  # also when the queue stopped waiting
        if not report.interrupted:
            self._ingest_videos(source, videos, report, advance)
        self.gallery.persist()
        with self.db.write() as session, session.begin():
            self.audit.record(session, actor=actor.name, action="ingest.finish", details=report.counts())
            for order_id, count in sorted(report.refused_by_order.items()):
                order = session.get(EnforcementOrder, order_id)
                if order is not None:
                    order.items_refused += count
                self.audit.record(session, actor=actor.name, action="order.refused",
                                  details={"order_id": order_id, "source_id": source.id, "items": count})
        return report

    def _ingest_videos(self, source: Source, videos: list[InputItem], report: IngestReport,
                       advance: Callable[[], None]) -> None:
        known = self.videos.known(source.id)
        for item in videos:
            if self._stopping.is_set():
                report.interrupted = True
                return
            self.videos.ingest(source, item, report, known, self.video_progress)
            advance()

    def _pending(self, batch: list[InputItem], source_id: int, declared: list[str], report: IngestReport,
                 advance: Callable[[], None], videos: list[InputItem]) -> Iterator[_Pending]:
        """Read and hash each item; yield those not in the source yet and not refused by an enforcement
        order, account for the others. An item whose bytes are a video's (named otherwise) joins `videos`."""
        with self.db.read() as session:
            known = set(session.scalars(select(StoredImage.sha256).where(StoredImage.source_id == source_id)))
            bans = collection_bans(session)
        for item in batch:
            if self._stopping.is_set():
                report.interrupted = True
                return
            if item.skipped:
                report.skipped.append(SkippedItem(item.name, item.skipped))
                advance()
                continue
            try:
                if item.error:
                    raise FacetrailError(item.error)
                data = item.read()
            except (OSError, FacetrailError) as exc:
                report.errors.append(ItemError(item.name, _cause(exc)))
                advance()
                continue
            if not data:
                report.errors.append(ItemError(item.name, "empty file (0 bytes)"))
                advance()
                continue
            if looks_like_video(data):
                videos.append(InputItem(item.name, partial(_same, data), origin=item.origin))
                continue
            digest = hashlib.sha256(data).hexdigest()
            if digest in known:
                report.images_skipped += 1
                advance()
                continue
            known.add(digest)
            jurisdictions = self.jurisdictions.of_image(declared, data)
            refused = first_refusal(bans, source_id, jurisdictions)
            if refused is not None:
                report.refuse(item.name, *refused)
                advance()
                continue
            yield _Pending(item, data, digest, jurisdictions)

    def _analyse(self, pending: Iterator[_Pending],
                 workers: int) -> Generator[tuple[_Pending, ImageAnalysis | BaseException], None, None]:
        """Analyse in this process, or in a pool of `workers` processes with a bounded window."""
        if workers <= 1:
            # In this process: no per-item time limit (nothing can stop native code from outside it).
            for job in pending:
                yield job, _attempt(partial(self.analyzer.analyze, job.data))
            return
        pool: WorkerPool[_Pending] = WorkerPool(workers, self.analyzer.config, self.settings.item_time_limit_s,
                                                lambda job: job.data)
        yield from pool.analyse(pending)

    def _commit(self, source: Source, job: _Pending, analysis: ImageAnalysis, report: IngestReport) -> int:
        """Store one analysed image under the source's legal terms as the batch began (its purposes screen the
        faces, its version is recorded with the image); returns 1 if it was added, 0 if not (another writer had
        it already, or every face in it was suppressed).

        The suppression list is consulted inside the transaction that commits the image, under the write
        lock, so an opt-out recorded at any moment before that commit is honoured; the blobs are written
        after that decision and before the commit (a crash leaves at most blobs under deterministic keys,
        which a re-run overwrites)."""
        model_id = self.analyzer.backend.model_id
        source_id, purposes = source.id, source.purposes
        with self.db.write() as session, session.begin():
            exists = session.scalar(select(StoredImage.id).where(
                StoredImage.source_id == source_id, StoredImage.sha256 == job.sha256))
            if exists is not None:
                report.images_skipped += 1
                return 0
            retired_at = session.scalar(select(Source.retired_at).where(Source.id == source_id))
            if retired_at is not None:
                report.errors.append(ItemError(job.item.name, f"refused: source {source_id} was retired"))
                return 0
            # An order recorded while this batch was being analysed refuses the image all the same.
            refused = first_refusal(collection_bans(session), source_id, job.jurisdictions)
            if refused is not None:
                report.refuse(job.item.name, *refused)
                return 0
            kept, dropped = self._screen(session, purposes, analysis.faces)
            report.faces_suppressed += len(dropped)
            if dropped and not kept:
                # Every face in it belongs to people who opted out: the image is not recorded at all. Its
                # pixels, name and hash would only document their presence, and an image with no searchable
                # face serves no purpose of the source. A re-run analyses it again and drops it again.
                report.images_suppressed += 1
                return 0
            prefix = f"{job.sha256}-{source_id}"
            # One data key per face (its template and crop) and one for the image's bytes, so an erasure can
            # shred exactly one person's faces; the keys are durable before anything names them.
            vault = self.blobs.vault
            keys = vault.new_keys("face", len(kept))
            image_key, image_data_key = None, None
            if self.settings.store_images:
                image_data_key = vault.new_key("image")
                image_key = self._put_image(prefix, job, analysis, dropped, image_data_key)
            crop_keys = [self.blobs.put(f"crops/{prefix}-{i}.jpg", face.crop_jpeg, keys[i])
                         for i, face in enumerate(kept)]
            image = StoredImage(
                source_id=source_id, sha256=job.sha256, original_name=job.item.name, size_bytes=len(job.data),
                width=analysis.width, height=analysis.height, format=analysis.format,
                face_count=len(kept), blob_key=image_key, key_id=image_data_key.id if image_data_key else None,
                source_version=source.version,
                origin_url=job.item.origin.url if job.item.origin else None,
                fetched_at=job.item.origin.fetched_at if job.item.origin else None,
            )
            session.add(image)
            session.flush()
            session.add_all(ImageJurisdiction(image_id=image.id, code=j.code, basis=j.basis.value)
                            for j in dict.fromkeys(job.jurisdictions))
            faces = [_face_row(image, i, face, model_id, crop_keys[i], seal_template(vault, keys[i], face.template),
                               keys[i].id) for i, face in enumerate(kept)]
            session.add_all(faces)
            session.flush()
            generation = bump_generation(session) if faces else None
        report.images_added += 1
        report.faces_added += len(faces)
        if not faces:
            report.images_without_faces += 1
        elif generation is not None:
            self.gallery.add_committed(
                np.array([f.id for f in faces], dtype=np.int64),
                np.stack([face.template for face in kept]),
                np.full(len(faces), source_id, dtype=np.int64),
                generation,
            )
        return 1

    def _screen(self, session: Session, purposes: list[str],
                faces: list[AnalyzedFace]) -> tuple[list[AnalyzedFace], list[AnalyzedFace]]:
        """(faces to store, faces of people on the suppression list for one of these purposes)."""
        suppressed = self.suppressions.screen([face.template for face in faces], purposes, session=session)
        kept = [face for face, drop in zip(faces, suppressed, strict=True) if not drop]
        dropped = [face for face, drop in zip(faces, suppressed, strict=True) if drop]
        return kept, dropped

    def _put_image(self, prefix: str, job: _Pending, analysis: ImageAnalysis, dropped: list[AnalyzedFace],
                   data_key: DataKey) -> str:
        """Store the image's bytes: as received, or with the suppressed faces blacked out and re-encoded
        (which also drops metadata such as an EXIF thumbnail, where their face would still show)."""
        data = job.data
        if dropped:
            data = redact_image_bytes(job.data, [face.detection.box for face in dropped],
                                      source_format=analysis.format, max_pixels=self.settings.max_image_pixels,
                                      fill=True)
        return self.blobs.put(f"images/{prefix}", data, data_key)


def _face_row(image: StoredImage, ordinal: int, face: AnalyzedFace, model_id: str, crop_key: str,
              template: bytes, key_id: str) -> Face:
    det = face.detection
    return Face(
        image_id=image.id, source_id=image.source_id, ordinal=ordinal,
        box_left=det.box.left, box_top=det.box.top, box_right=det.box.right, box_bottom=det.box.bottom,
        landmarks=[[round(p.x, 1), round(p.y, 1)] for p in det.landmarks], detector=det.detector,
        detector_score=round(det.score, 4), size_px=face.quality.size_px, sharpness=face.quality.sharpness,
        yaw=face.quality.yaw, model_id=model_id, template=template, crop_key=crop_key, key_id=key_id,
    )


def _data(job: _Pending) -> bytes:
    return job.data


def _same(data: bytes) -> bytes:
    return data


def _attempt(call: Callable[[], ImageAnalysis]) -> ImageAnalysis | BaseException:
    try:
        return call()
    except Exception as exc:  # one bad image must never stop the batch
        return exc


def _cause(exc: BaseException) -> str:
    if isinstance(exc, FacetrailError | OSError):
        return str(exc) or type(exc).__name__
    return f"analysis failed ({type(exc).__name__}: {exc})"
