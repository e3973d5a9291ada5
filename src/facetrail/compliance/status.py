"""Where an order stands: what it still reaches, its deadline, and the penalty accrued (a pure function of
the order, what the store holds now, and the time)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from enum import StrEnum
from typing import Any

from facetrail.compliance.jsonable import plain


class JobState(StrEnum):
    NOT_STARTED = "not_started"
    RUNNING = "running"
    WAITING = "waiting"  # what is left is held for open access requests (answer_access_first)
    COMPLETED = "completed"
    NOT_ORDERED = "not_ordered"  # the order orders no erasure


@dataclass(frozen=True)
class OrderStatus:
    order_id: int
    authority: str
    reference: str
    received_on: date
    jurisdictions: tuple[str, ...]
    source_ids: tuple[int, ...]
    cease: bool
    erase: bool
    answer_access_first: bool
    deadline: date
    daily_penalty: int
    currency: str
    recorded_at: datetime
    recorded_by: str
    job_state: JobState
    images_remaining: int  # stored images in scope now (an erasure order is carried out at 0)
    faces_remaining: int
    images_held: int  # of those, kept until the open access requests below close
    held_for_requests: tuple[str, ...]
    unverified_access_requests: tuple[str, ...]  # open, identity not verified: their faces are not known yet
    images_erased: int
    faces_erased: int
    items_refused: int  # ingestion items refused by the order since it was recorded
    complied: bool
    complied_at: datetime | None
    as_of: datetime
    days_left: int | None  # None once complied or late
    days_late: int
    penalty_accrued: int

    def as_dict(self) -> dict[str, Any]:
        return dict(plain(self))


def penalty_clock(deadline: date, daily_penalty: int, as_of: datetime,
                  complied_at: datetime | None) -> tuple[int | None, int, int]:
    """(days left, days late, penalty accrued). The deadline is the last day to comply (UTC); each day after
    it until the day of compliance counts whole, and the clock stops on that day."""
    end = complied_at.date() if complied_at is not None else as_of.date()
    days_late = max(0, (end - deadline).days)
    days_left = (deadline - as_of.date()).days if complied_at is None and days_late == 0 else None
    return days_left, days_late, days_late * daily_penalty
