"""Ingestion of a batch into one source: idempotent by content hash, resumable after any crash.

Analysed images are committed in small batches, each batch in one transaction (its image rows, face rows
and one index generation together), after every blob of the batch is written under a deterministic key and
every data key it names is durable. A batch closes after `COMMIT_IMAGES` images or `COMMIT_WINDOW_S` seconds,
whichever comes first, so the fixed cost of a commit (the keyring's and the store's fsyncs) is paid once per
batch rather than once per image. A crash therefore loses at most the batch being written and the images in
flight, never part of a batch, and a re-run skips what was committed and redoes the rest: the same end state
as an uninterrupted run. The index catches up from the store on its next open.

Faces of people on the suppression list (hard rule 6) are dropped in that same transaction, before
any of their bytes is written: no template, no crop, and their region blacked out in the stored image.

`interrupt()` (the server calls it when it is told to stop) ends a batch in progress after the image in
hand (the images analysed so far are committed): what is committed stays, the report says it was interrupted,
and a re-run does the rest.
"""

from __future__ import annotations

import hashlib
import queue
import threading
import time
from collections.abc import Callable, Generator, Iterable, Iterator, Sized
from concurrent.futures import ThreadPoolExecutor
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
from facetrail.errors import ConflictError, FacetrailError, ModelUnavailableError, ShuttingDownError
from facetrail.index.gallery import Gallery
from facetrail.ingest.analysis import Analyzer, ImageAnalysis, VideoProgress
from facetrail.ingest.photo import attempt
from facetrail.ingest.queue import JobQueue
from facetrail.ingest.report import IngestReport, ItemError, SkippedItem, cause_of
from facetrail.ingest.videos import VideoIngest
from facetrail.ingest.workers import WorkerPool, pool_shape
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

COMMIT_IMAGES = 32
"""Analysed images committed together, in one transaction, at most."""
COMMIT_WINDOW_S = 1.0
"""An analysed image waits at most about this long for the others of its commit (slow pipelines, slow files)."""
WALK_FAILED = "(the inputs)"
"""The name an error of the walk over the inputs itself is reported under (not one item's)."""
BLOB_WRITERS = 4
"""Threads writing the blobs of a commit: each write waits on its own fsync, so they overlap."""


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

    def ingest(self, actor: Actor, source_id: int, items: Iterable[InputItem], *, total: int | None = None,
               progress: Progress | None = None, workers: int | None = None,
               queue_url: str | None = None) -> IngestReport:
        """Ingest `items` into the source; per-item problems are reported, never raised (a vision model that cannot
        be loaded, ModelUnavailableError, is not one: every item would meet it, so it stops the ingestion). With
        `queue_url` (or the queue_url setting) the photos are analysed by `facetrail worker` processes through
        Redis (queue.py).

        `items` is walked as the ingestion goes, never held whole, so a folder of millions of files costs no
        memory per file. `total` (how many items there are, for progress) defaults to `len(items)` when it has
        one; when neither is known, progress reports a total of 0 (unknown)."""
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
        if total is None and isinstance(items, Sized):
            total = len(items)
        report = IngestReport(source_id=source.id)  # its `items` counts them as they are walked
        with self.db.write() as session, session.begin():
            self.audit.record(session, actor=actor.name, action="ingest.start",
                              details={"source_id": source.id, "items": total})
        done = 0

        def advance() -> None:
            nonlocal done
            done += 1
            if progress is not None:
                progress(done, max(total, done) if total is not None else 0)

        # A media item yields frames: a photo one, a video many (sampled and followed into tracks, videos.py).
        # Videos are analysed in this process, one at a time, each committed whole, after the photos: _pending
        # sets them aside as it walks the items.
        videos: list[InputItem] = []
        pending = self._pending(items, source.id, source.jurisdictions, report, advance, videos)
        analysing = (queue.analyse(pending) if queue
                     else self._analyse(pending, workers or self.settings.worker_count()))
        with closing(analysing) as analysed:
            self._store(source, analysed, report, advance)
        report.interrupted = report.interrupted or self._stopping.is_set()  # also when the queue stopped waiting
        if report.interrupted:
            report.items = max(report.items, total or 0)  # the batch's size, not how far it got
        else:
            self._ingest_videos(source, videos, report, advance)
        if progress is not None and not report.interrupted:
            progress(done, done)  # all done: also when files came or went between the count and the walk
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

    def _store(self, source: Source, analysed: Iterator[tuple[_Pending, ImageAnalysis | BaseException]],
               report: IngestReport, advance: Callable[[], None]) -> None:
        """Commit the analysed photos in batches (COMMIT_IMAGES, COMMIT_WINDOW_S) in the writer thread, saving the
        index every `index_save_every` images, while the analysis goes on here. Progress counts the images
        analysed; on interrupt, those are committed and the rest left."""
        since_save = 0
        committed = IngestReport(source_id=report.source_id)  # the writer thread's own figures, merged at the end

        def commit(batch: list[tuple[_Pending, ImageAnalysis]]) -> None:
            nonlocal since_save
            since_save += self._commit(source, batch, committed)
            if since_save >= self.settings.index_save_every:
                self.gallery.persist()
                since_save = 0

        writer = _CommitThread(commit)
        batch: list[tuple[_Pending, ImageAnalysis]] = []
        opened = 0.0
        try:
            for job, outcome in analysed:
                if isinstance(outcome, ModelUnavailableError):
                    raise outcome  # the installation's fault, not this image's: every other one would fail too
                if isinstance(outcome, BaseException):
                    report.errors.append(ItemError(job.item.name, cause_of(outcome)))
                else:
                    if not batch:
                        opened = time.monotonic()
                    batch.append((job, outcome))
                    if len(batch) >= COMMIT_IMAGES or time.monotonic() - opened >= COMMIT_WINDOW_S:
                        writer.submit(batch)
                        batch = []
                advance()
                if self._stopping.is_set():
                    report.interrupted = True
                    break  # closing the analysis stops the worker processes without waiting for them
            if batch:
                writer.submit(batch)
        except BaseException:
            writer.close(quiet=True)  # what was handed over is committed; the error in hand is the one raised
            raise
        writer.close()
        report.merge(committed)

    def _ingest_videos(self, source: Source, videos: list[InputItem], report: IngestReport,
                       advance: Callable[[], None]) -> None:
        known = self.videos.known(source.id)
        for item in videos:
            if self._stopping.is_set():
                report.interrupted = True
                return
            self.videos.ingest(source, item, report, known, self.video_progress)
            advance()

    def _pending(self, items: Iterable[InputItem], source_id: int, declared: list[str], report: IngestReport,
                 advance: Callable[[], None], videos: list[InputItem]) -> Iterator[_Pending]:
        """Read and hash each item as it is walked (counted in `report.items`); yield those not in the source
        yet and not refused by an enforcement order, account for the others. A video (by its name, or by its
        bytes when named otherwise) joins `videos`."""
        with self.db.read() as session:
            known = set(session.scalars(select(StoredImage.sha256).where(StoredImage.source_id == source_id)))
            bans = collection_bans(session)
        for item in _walked(items, report, self._stopping):
            if is_video_name(item.name) and not item.skipped:
                videos.append(item)
                continue
            if item.skipped:
                report.skipped.append(SkippedItem(item.name, item.skipped))
                advance()
                continue
            try:
                if item.error:
                    raise FacetrailError(item.error)
                data = item.read()
            except (OSError, FacetrailError) as exc:
                report.errors.append(ItemError(item.name, cause_of(exc)))
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
        """Analyse `workers` images at a time: in this process when that is one, else in a pool of vision
        processes with a bounded window: one process of `workers` threads for a backend that computes outside
        the GIL, else `workers` processes."""
        if workers <= 1:
            # In this process: no per-item time limit (nothing can stop native code from outside it).
            for job in pending:
                yield job, attempt(self.analyzer.analyze, job.data)
            return
        processes, threads = pool_shape(self.analyzer.config, workers)
        pool: WorkerPool[_Pending] = WorkerPool(processes, self.analyzer.config, self.settings.item_time_limit_s,
                                                lambda job: job.data, threads)
        yield from pool.analyse(pending)

    def _commit(self, source: Source, batch: list[tuple[_Pending, ImageAnalysis]], report: IngestReport) -> int:
        """Store analysed images in one transaction, under the source's legal terms as the batch began (its
        purposes screen the faces, its version is recorded with each image); returns how many were added (not
        those another writer had already, nor those whose every face was suppressed).

        The suppression list and the enforcement orders are consulted inside the transaction that commits the
        images, under the write lock, so an opt-out or an order recorded at any moment before that commit is
        honoured. The data keys are made durable first (in one keyring transaction per kind), then every blob
        of the batch is written, then the rows are committed: a crash before the commit leaves at most keys
        nothing names and blobs under deterministic keys, which a re-run overwrites."""
        model_id = self.analyzer.backend.model_id
        source_id = source.id
        vault = self.blobs.vault
        with self.db.write() as session, session.begin():
            added = self._admit(session, source, batch, report)
            if not added:
                return 0
            # One data key per face (its template and crop) and one for each image's bytes, so an erasure can
            # shred exactly one person's faces; the keys are durable before anything names them.
            face_keys = iter(vault.new_keys("face", sum(len(kept) for _, _, kept, _ in added)))
            image_keys = iter(vault.new_keys("image", len(added) if self.settings.store_images else 0))
            writes: list[Callable[[], str]] = []
            rows: list[tuple[StoredImage, _Pending, list[tuple[AnalyzedFace, DataKey, str]]]] = []
            for job, analysis, kept, dropped in added:
                prefix = f"{job.sha256}-{source_id}"
                image_key, image_data_key = None, None
                if self.settings.store_images:
                    image_data_key = next(image_keys)
                    image_key = f"images/{prefix}"
                    writes.append(partial(self._put_image, prefix, job, analysis, dropped, image_data_key))
                faces = []
                for i, face in enumerate(kept):
                    key = next(face_keys)
                    crop_key = f"crops/{prefix}-{i}.jpg"
                    writes.append(partial(self.blobs.put, crop_key, face.crop_jpeg, key))
                    faces.append((face, key, crop_key))
                rows.append((StoredImage(
                    source_id=source_id, sha256=job.sha256, original_name=job.item.name, size_bytes=len(job.data),
                    width=analysis.width, height=analysis.height, format=analysis.format,
                    face_count=len(kept), blob_key=image_key, key_id=image_data_key.id if image_data_key else None,
                    source_version=source.version,
                    origin_url=job.item.origin.url if job.item.origin else None,
                    fetched_at=job.item.origin.fetched_at if job.item.origin else None,
                ), job, faces))
            _write_all(writes)
            session.add_all(image for image, _, _ in rows)
            session.flush()
            face_rows: list[Face] = []
            for image, job, faces in rows:
                session.add_all(ImageJurisdiction(image_id=image.id, code=j.code, basis=j.basis.value)
                                for j in dict.fromkeys(job.jurisdictions))
                face_rows += [_face_row(image, i, face, model_id, crop_key,
                                        seal_template(vault, key, face.template), key.id)
                              for i, (face, key, crop_key) in enumerate(faces)]
            session.add_all(face_rows)
            session.flush()
            generation = bump_generation(session) if face_rows else None
        report.images_added += len(rows)
        report.faces_added += len(face_rows)
        report.images_without_faces += sum(1 for _, _, faces in rows if not faces)
        if generation is not None:
            self.gallery.add_committed(
                np.array([f.id for f in face_rows], dtype=np.int64),
                np.stack([face.template for _, _, faces in rows for face, _, _ in faces]),
                np.full(len(face_rows), source_id, dtype=np.int64),
                generation,
            )
        return len(rows)

    def _admit(self, session: Session, source: Source, batch: list[tuple[_Pending, ImageAnalysis]],
               report: IngestReport) -> list[tuple[_Pending, ImageAnalysis, list[AnalyzedFace], list[AnalyzedFace]]]:
        """In the committing transaction: the images of the batch to store, each with its faces to store and
        those of people on the suppression list; the others are accounted for in the report (already in the
        source, source retired, refused by an enforcement order, every face suppressed)."""
        source_id = source.id
        present = set(session.scalars(select(StoredImage.sha256).where(
            StoredImage.source_id == source_id, StoredImage.sha256.in_([job.sha256 for job, _ in batch]))))
        retired_at = session.scalar(select(Source.retired_at).where(Source.id == source_id))
        bans = collection_bans(session)
        candidates: list[tuple[_Pending, ImageAnalysis]] = []
        for job, analysis in batch:
            # An order recorded while this batch was being analysed refuses the image all the same.
            refused = first_refusal(bans, source_id, job.jurisdictions)
            if job.sha256 in present:
                report.images_skipped += 1
            elif retired_at is not None:
                report.errors.append(ItemError(job.item.name, f"refused: source {source_id} was retired"))
            elif refused is not None:
                report.refuse(job.item.name, *refused)
            else:
                candidates.append((job, analysis))
        stored = self._screen(session, source.purposes, [face for _, analysis in candidates for face in analysis.faces])
        added = []
        for job, analysis in candidates:
            kept = [face for face in analysis.faces if stored[id(face)]]
            dropped = [face for face in analysis.faces if not stored[id(face)]]
            report.faces_suppressed += len(dropped)
            if dropped and not kept:
                # Every face in it belongs to people who opted out: the image is not recorded at all. Its
                # pixels, name and hash would only document their presence, and an image with no searchable
                # face serves no purpose of the source. A re-run analyses it again and drops it again.
                report.images_suppressed += 1
                continue
            added.append((job, analysis, kept, dropped))
        return added

    def _screen(self, session: Session, purposes: list[str], faces: list[AnalyzedFace]) -> dict[int, bool]:
        """For each face (by id()), whether it is stored: False for a face of someone on the suppression list
        for one of these purposes."""
        suppressed = self.suppressions.screen([face.template for face in faces], purposes, session=session)
        return {id(face): not drop for face, drop in zip(faces, suppressed, strict=True)}

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


class _CommitThread:
    """The single writer, in a thread of its own: while it commits one batch (its blobs' and transactions'
    fsyncs are mostly waiting), the analysis goes on and the vision workers stay busy. One more batch may wait
    for it, so memory stays bounded. After a failed commit it commits nothing more; the error is raised by the
    next `submit` or by `close` (a re-run redoes every batch not committed)."""

    def __init__(self, commit: Callable[[list[tuple[_Pending, ImageAnalysis]]], None]) -> None:
        self._commit = commit
        self._batches: queue.Queue[list[tuple[_Pending, ImageAnalysis]] | None] = queue.Queue(maxsize=1)
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="ingest-writer", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while (batch := self._batches.get()) is not None:
            if self._error is None:
                try:
                    self._commit(batch)
                except BaseException as exc:  # handed to the thread that submits, which raises it
                    self._error = exc

    def submit(self, batch: list[tuple[_Pending, ImageAnalysis]]) -> None:
        self._raise_error()
        self._batches.put(batch)

    def close(self, *, quiet: bool = False) -> None:
        """Wait until every batch handed over is committed (or the writer failed); raise its error unless
        `quiet`."""
        self._batches.put(None)
        self._thread.join()
        if not quiet:
            self._raise_error()

    def _raise_error(self) -> None:
        if self._error is not None:
            raise self._error


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


def _write_all(writes: list[Callable[[], str]]) -> None:
    """Run the blob writes of a commit, a few at a time; the first error is raised once all have ended."""
    if len(writes) <= 1:
        for write in writes:
            write()
        return
    with ThreadPoolExecutor(min(BLOB_WRITERS, len(writes)), thread_name_prefix="blob-writer") as pool:
        for future in [pool.submit(write) for write in writes]:
            future.result()


def _data(job: _Pending) -> bytes:
    return job.data


def _same(data: bytes) -> bytes:
    return data


def _walked(items: Iterable[InputItem], report: IngestReport, stopping: threading.Event) -> Iterator[InputItem]:
    """The items, counted in `report.items` as they come, until the walk ends, fails (reported as one error: the
    batch is under way, what was walked goes on) or the service stops (the report says interrupted)."""
    walk = iter(items)
    while not stopping.is_set():
        try:
            item = next(walk)
        except StopIteration:
            return
        except Exception as exc:  # noqa: BLE001  # whatever the walk raised, the batch goes on with what it gave
            report.errors.append(ItemError(WALK_FAILED, "the inputs could not be listed further: "
                                           f"{type(exc).__name__}: {exc}"))
            return
        report.items += 1
        yield item
    report.interrupted = True
