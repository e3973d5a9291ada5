"""Storage limitation (hard rule 11): images kept past their source's retention period are erased, whole
and completely (rights/erasure.py), counted and audited. The dry run lists exactly what the run erases:
both select with the same rule at the same moment.

An image expires `retention_days` after it was ingested: it goes once ingested_at + retention_days < now.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from facetrail.accounts.roles import Action, Actor, require
from facetrail.compliance.batches import ErasureJobs, Progress, erase_in_batches
from facetrail.compliance.jsonable import plain
from facetrail.store.models import AuditEntry, Source, StoredImage

CAUSE = "retention"


@dataclass(frozen=True)
class ExpiredImage:
    image_id: int
    source_id: int
    source_name: str
    original_name: str
    ingested_at: datetime
    expired_at: datetime
    faces: int


@dataclass(frozen=True)
class RetentionReport:
    at: datetime
    dry_run: bool
    images: tuple[ExpiredImage, ...]  # what expired (and, unless a dry run, was erased)
    images_erased: int
    faces_erased: int
    erasure_ids: tuple[int, ...]
    stopped: bool  # interrupted between two batches (server shutdown); the next run goes on

    @property
    def faces(self) -> int:
        return sum(image.faces for image in self.images)

    def as_dict(self) -> dict[str, Any]:
        return {**plain(self), "faces": self.faces}


class RetentionService(ErasureJobs):
    def expired(self, at: datetime) -> list[ExpiredImage]:
        """Every stored image past its source's retention at `at`, oldest first."""
        found = []
        with self.db.read() as session:
            for source in session.scalars(select(Source).order_by(Source.id)):
                period = timedelta(days=source.retention_days)
                for image_id, name, ingested_at, faces in session.execute(
                        select(StoredImage.id, StoredImage.original_name, StoredImage.ingested_at,
                               StoredImage.face_count)
                        .where(StoredImage.source_id == source.id, StoredImage.ingested_at < at - period)):
                    found.append(ExpiredImage(image_id, source.id, source.name, name, ingested_at,
                                              ingested_at + period, faces))
        return sorted(found, key=lambda image: (image.expired_at, image.image_id))

    def run(self, actor: Actor, *, dry_run: bool = False, progress: Progress | None = None,
            should_stop: Callable[[], bool] | None = None, audit_if_nothing: bool = True) -> RetentionReport:
        """Erase (or, as a dry run, list) what is past retention now. The schedule passes
        `audit_if_nothing=False`: a round that found nothing to erase is not an action worth a log entry."""
        require(actor, Action.RETENTION)
        at = self.clock()
        expired = tuple(self.expired(at))
        if dry_run:
            report = RetentionReport(at, True, expired, 0, 0, (), False)
        else:
            job = erase_in_batches(self.eraser, actor.name, [image.image_id for image in expired], cause=CAUSE,
                                   batch=self.batch, progress=progress, should_stop=should_stop)
            report = RetentionReport(at, False, expired, job.images_erased, job.faces_erased,
                                     tuple(job.erasure_ids), job.stopped)
        if not expired and not audit_if_nothing:
            return report
        with self.db.write() as session, session.begin():
            self.audit.record(session, actor=actor.name, action="retention.dry_run" if dry_run else "retention.run",
                              details={"at": at.isoformat(), "image_ids": [i.image_id for i in expired],
                                       "faces": report.faces, "images_erased": report.images_erased,
                                       "faces_erased": report.faces_erased,
                                       "erasure_ids": list(report.erasure_ids), "stopped": report.stopped})
        if report.erasure_ids:
            self._job_ended("retention")
        return report

    def last_run(self) -> datetime | None:
        """When retention was last enforced (not a dry run), as the audit log recorded it."""
        with self.db.read() as session:
            entry = last_purge_entry(session)
        return datetime.fromisoformat(entry.at) if entry else None


def last_purge_entry(session: Session) -> AuditEntry | None:
    """The audit entry of the last retention run that was not a dry run (what the regulator export reports)."""
    return session.scalar(select(AuditEntry).where(AuditEntry.action == "retention.run")
                          .order_by(AuditEntry.seq.desc()).limit(1))
