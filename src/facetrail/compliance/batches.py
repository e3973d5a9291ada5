"""The erasure job shared by orders, retention and source retirement: images erased whole, in batches,
each batch one complete erasure (rights/erasure.py), so a job killed at any point is resumed by running it
again: the erasure cut short is finished when the data directory is opened, and the job goes on with what
is still there."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from facetrail.audit.log import AuditLog
from facetrail.compliance.scope import chunks
from facetrail.crashpoints import crash_point
from facetrail.store.db import Database
from facetrail.store.models import utcnow

Progress = Callable[[int, int], None]
"""Called with (images done, images total) as a job advances."""
CRASH_POINT = "erasure_job_batch"


class ImageEraser(Protocol):
    def erase_images(self, actor_name: str, image_ids: Sequence[int], *, cause: str) -> dict[str, Any]: ...


class ErasureJobs:
    """What the services that run erasure jobs (orders, retention, retirement) share: the store, the eraser, the
    batch size, the clock, and `after_job`, called with a reason once a job has ended and been audited (the
    runtime signs an audit checkpoint there: one per job, not one per batch)."""

    def __init__(self, db: Database, eraser: ImageEraser, audit: AuditLog, *, batch: int,
                 clock: Callable[[], datetime] = utcnow, after_job: Callable[[str], object] | None = None) -> None:
        self.db = db
        self.eraser = eraser
        self.audit = audit
        self.batch = batch
        self.clock = clock
        self.after_job = after_job

    def _job_ended(self, reason: str) -> None:
        if self.after_job is not None:
            self.after_job(reason)


@dataclass
class JobOutcome:
    images_erased: int = 0
    faces_erased: int = 0
    erasure_ids: list[int] = field(default_factory=list)
    stopped: bool = False  # asked to stop between two batches (server shutdown)


def erase_in_batches(eraser: ImageEraser, actor_name: str, image_ids: Sequence[int], *, cause: str,
                     batch: int, progress: Progress | None = None,
                     should_stop: Callable[[], bool] | None = None) -> JobOutcome:
    outcome = JobOutcome()
    total = len(image_ids)
    done = 0
    if progress is not None:
        progress(0, total)
    for chunk in chunks(image_ids, batch):
        if should_stop is not None and should_stop():
            outcome.stopped = True
            break
        receipt = eraser.erase_images(actor_name, chunk, cause=cause)
        outcome.erasure_ids.append(int(receipt["erasure_id"]))
        outcome.images_erased += int(receipt["images_deleted"])
        outcome.faces_erased += int(receipt["faces_erased"])
        done += len(chunk)
        if progress is not None:
            progress(done, total)
        crash_point(CRASH_POINT)
    return outcome


def erase_until_gone(eraser: ImageEraser, actor_name: str, targets: Callable[[], Sequence[int]], *, cause: str,
                     batch: int, progress: Progress | None = None) -> JobOutcome:
    """Erase what `targets()` names until it names nothing: a second pass only for images that entered the
    scope while the first ran (an ingestion with no order to cease it); three at the most."""
    outcome = JobOutcome()
    for _ in range(3):
        images = targets()
        if not images:
            break
        step = erase_in_batches(eraser, actor_name, images, cause=cause, batch=batch, progress=progress)
        outcome.images_erased += step.images_erased
        outcome.faces_erased += step.faces_erased
        outcome.erasure_ids += step.erasure_ids
    return outcome
