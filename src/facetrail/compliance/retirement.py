"""Retiring a source: it takes no new images from then on; its data is erased now, through the complete
erasure path, or kept until its retention period ends, when the retention run erases it (the operator
chooses). Running a retirement with --erase again after an interruption goes on where it stopped."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any

from sqlalchemy import func, select

from facetrail.accounts.roles import Action, Actor, require
from facetrail.compliance.batches import ErasureJobs, JobOutcome, Progress, erase_until_gone
from facetrail.compliance.jsonable import plain
from facetrail.errors import ConflictError, InvalidValueError, NotFoundError
from facetrail.store.models import Source, StoredImage


class Retirement(StrEnum):
    ERASE = "erase"
    KEEP_UNTIL_RETENTION = "keep-until-retention"


@dataclass(frozen=True)
class RetirementReport:
    source_id: int
    retired_at: datetime
    retirement: Retirement
    images_erased: int
    faces_erased: int
    erasure_ids: tuple[int, ...]
    images_kept: int
    kept_until: datetime | None  # when the retention run erases the last kept image

    def as_dict(self) -> dict[str, Any]:
        return dict(plain(self))


class RetirementService(ErasureJobs):
    def retire(self, actor: Actor, source_id: int, retirement: str, *,
               progress: Progress | None = None) -> RetirementReport:
        require(actor, Action.SOURCE_WRITE)
        try:
            mode = Retirement(retirement)
        except ValueError:
            allowed = ", ".join(m.value for m in Retirement)
            raise InvalidValueError("retirement", f"{retirement!r} is not one of: {allowed}") from None
        retired_at = self._record(actor, source_id, mode)
        outcome = JobOutcome()
        if mode == Retirement.ERASE:
            outcome = erase_until_gone(self.eraser, actor.name, lambda: self._images(source_id),
                                       cause=f"source-retire:{source_id}", batch=self.batch, progress=progress)
        kept, kept_until = self._kept(source_id)
        with self.db.write() as session, session.begin():
            self.audit.record(session, actor=actor.name, action="source.retired", details={
                "source_id": source_id, "retirement": mode.value, "images_erased": outcome.images_erased,
                "faces_erased": outcome.faces_erased, "erasure_ids": outcome.erasure_ids, "images_kept": kept,
                "kept_until": kept_until.isoformat() if kept_until else None})
        if outcome.erasure_ids:
            self._job_ended(f"source {source_id} retired")
        return RetirementReport(source_id, retired_at, mode, outcome.images_erased, outcome.faces_erased,
                                tuple(outcome.erasure_ids), kept, kept_until)

    def _record(self, actor: Actor, source_id: int, mode: Retirement) -> datetime:
        """Mark the source retired (once); from this commit on, ingestion into it is refused."""
        with self.db.write() as session, session.begin():
            source = session.get(Source, source_id) if isinstance(source_id, int) else None
            if source is None:
                raise NotFoundError(f"source {source_id} is not registered")
            if source.retired_at is not None:
                if source.retirement == mode.value:
                    return source.retired_at  # run again to finish an interrupted erasure
                if mode == Retirement.KEEP_UNTIL_RETENTION:
                    raise ConflictError(f"source {source_id} was retired with its data erased; it cannot be "
                                        "kept now")
            previous = source.retirement
            source.retired_at = source.retired_at or self.clock()
            source.retirement = mode.value
            self.audit.record(session, actor=actor.name, action="source.retire", details={
                "source_id": source_id, "retirement": mode.value, "previous": previous})
            return source.retired_at

    def _images(self, source_id: int) -> list[int]:
        with self.db.read() as session:
            return list(session.scalars(select(StoredImage.id).where(StoredImage.source_id == source_id)
                                        .order_by(StoredImage.id)))

    def _kept(self, source_id: int) -> tuple[int, datetime | None]:
        with self.db.read() as session:
            source = session.get(Source, source_id)
            count, newest = session.execute(select(func.count(), func.max(StoredImage.ingested_at))
                                            .where(StoredImage.source_id == source_id)).one()
        if not count or source is None or newest is None:
            return 0, None
        newest = newest if newest.tzinfo else newest.replace(tzinfo=UTC)  # max() of a SQLite column: naive
        return int(count), newest + timedelta(days=source.retention_days)
