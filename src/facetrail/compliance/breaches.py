"""The breach register (GDPR Art. 33/34): each breach with its 72-hour clock, its notification status to the
authority and to the people, and an append-only history of phased updates (Art. 33(4)).

Every change goes through `_apply`, which validates the fields, writes the history row and the audit entry.
The audit log gets the breach id, the names of the fields changed and the notification statuses, never the
free text (which may describe people).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, selectinload

from facetrail.accounts.roles import Action, Actor, require
from facetrail.audit.log import AuditLog
from facetrail.compliance.breach_scope import Affected, BreachScope, in_scope
from facetrail.errors import ConflictError, InvalidValueError, NotFoundError
from facetrail.store.db import Database
from facetrail.store.models import Breach, BreachUpdate, Source
from facetrail.timestamps import iso_z_or_none

NOTIFY_WITHIN = timedelta(hours=72)
TEXT_LIMIT = 10_000


class Notification(StrEnum):
    PENDING = "pending"
    NOTIFIED = "notified"
    NOT_REQUIRED = "not_required"  # Art. 33(1): unlikely to result in a risk; Art. 34(3) for the people


@dataclass(frozen=True)
class BreachClock:
    """Art. 33(1): notify the authority within 72 hours of becoming aware. `hours_left` < 0: overdue."""

    aware_at: datetime
    due_at: datetime
    hours_left: float
    state: str  # running, overdue, notified, notified late, not required

    def as_dict(self) -> dict[str, Any]:
        return {"aware_at": iso_z_or_none(self.aware_at), "due_at": iso_z_or_none(self.due_at),
                "hours_left": round(self.hours_left, 1), "state": self.state}




def parse_time(field: str, value: str | datetime | None) -> datetime | None:
    """An ISO 8601 time; one without a zone is taken as UTC."""
    if value is None or value == "":
        return None
    if isinstance(value, datetime):
        moment = value
    else:
        try:
            moment = datetime.fromisoformat(value.strip())
        except ValueError:
            raise InvalidValueError(field, f"{value!r} is not an ISO 8601 time (e.g. 2026-11-30T14:00Z)") from None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def clock_of(breach: Breach, now: datetime) -> BreachClock:
    due = breach.aware_at + NOTIFY_WITHIN
    if breach.authority_status == Notification.NOTIFIED and breach.authority_notified_at is not None:
        left = (due - breach.authority_notified_at).total_seconds() / 3600
        return BreachClock(breach.aware_at, due, left, "notified" if left >= 0 else "notified late")
    if breach.authority_status == Notification.NOT_REQUIRED:
        return BreachClock(breach.aware_at, due, (due - now).total_seconds() / 3600, "not required")
    left = (due - now).total_seconds() / 3600
    return BreachClock(breach.aware_at, due, left, "running" if left >= 0 else "overdue")


def _text(field: str, value: Any, limit: int = TEXT_LIMIT) -> str:
    text = value.strip() if isinstance(value, str) else ""
    if not text:
        raise InvalidValueError(field, "is required")
    if len(text) > limit:
        raise InvalidValueError(field, f"is longer than {limit} characters")
    return text


def _optional_text(field: str, value: Any) -> str | None:
    return None if value is None or (isinstance(value, str) and not value.strip()) else _text(field, value)


def _categories(field: str, value: Any) -> list[str]:
    if isinstance(value, str) or not isinstance(value, list | tuple):
        raise InvalidValueError(field, "must be a list of categories")
    items = [_text(field, v, 200) for v in value if not (isinstance(v, str) and not v.strip())]
    if not items:
        raise InvalidValueError(field, "at least one category is required")
    return list(dict.fromkeys(items))


def _count(field: str, value: Any) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise InvalidValueError(field, "must be a whole number, 0 or more")
    return value


def _status(field: str, value: Any) -> str:
    try:
        return Notification((value or "").strip().lower()).value
    except (ValueError, AttributeError):
        raise InvalidValueError(field, f"{value!r} is not one of: {', '.join(n.value for n in Notification)}") from None


FIELDS: dict[str, Callable[[str, Any], Any]] = {
    "title": lambda f, v: _text(f, v, 200), "nature": _text, "consequences": _text, "measures": _text,
    "data_categories": _categories, "subject_categories": _categories,
    "approx_subjects": _count, "approx_records": _count,
    "occurred_at": parse_time, "aware_at": parse_time,
    "authority_status": _status, "authority_notified_at": parse_time,
    "authority_reference": lambda f, v: None if v is None else _text(f, v, 200),
    "delay_reasons": _optional_text, "subjects_status": _status, "subjects_notified_at": parse_time,
    "notification_note": _optional_text,
}
REQUIRED = ("title", "nature", "data_categories", "subject_categories", "consequences", "measures", "aware_at")


def _json(value: Any) -> Any:
    return iso_z_or_none(value) if isinstance(value, datetime) else value


class BreachService:
    """`clock` gives the current time (injected by tests; the real one otherwise)."""

    def __init__(self, db: Database, audit: AuditLog, *, clock: Callable[[], datetime] | None = None) -> None:
        self.db = db
        self.audit = audit
        self.now = clock or (lambda: datetime.now(UTC))

    def add(self, actor: Actor, *, scope: BreachScope | None = None, **fields: Any) -> Breach:
        require(actor, Action.BREACH_WRITE)
        missing = [name for name in REQUIRED if fields.get(name) in (None, "", [])]
        if missing:
            raise InvalidValueError(missing[0], "is required")
        with self.db.write() as session, session.begin():
            breach = Breach(authority_status=Notification.PENDING.value, subjects_status=Notification.PENDING.value,
                            scope={}, recorded_by=actor.name, recorded_at=self.now())
            session.add(breach)
            self._apply(session, actor, breach, dict(fields), scope, note="recorded", action="breach.add")
        return self.get(actor, breach.id)

    def update(self, actor: Actor, breach_id: int, *, note: str, scope: BreachScope | None = None,
               close: bool = False, **fields: Any) -> Breach:
        """A phase of the record: the fields given change, the rest stay; the history keeps both."""
        require(actor, Action.BREACH_WRITE)
        note_text = _text("note", note, 5000)
        with self.db.write() as session, session.begin():
            breach = self._get(session, breach_id)
            if breach.closed_at is not None:
                raise ConflictError(f"breach {breach_id} is closed")
            if not fields and scope is None and not close:
                raise InvalidValueError("changes", "nothing to update: give at least one field")
            self._apply(session, actor, breach, dict(fields), scope, note=note_text, action="breach.update",
                        close=close)
        return self.get(actor, breach_id)

    def list(self, actor: Actor) -> list[Breach]:
        require(actor, Action.BREACH_READ)
        with self.db.read() as session:
            return list(session.scalars(select(Breach).options(selectinload(Breach.updates)).order_by(Breach.id)))

    def get(self, actor: Actor, breach_id: int) -> Breach:
        require(actor, Action.BREACH_READ)
        with self.db.read() as session:
            return self._get(session, breach_id)

    def clock(self, breach: Breach) -> BreachClock:
        return clock_of(breach, self.now())

    def affected(self, actor: Actor, breach_id: int) -> Affected:
        """The people in the breach's scope, as far as facetrail can tell (a read of personal data: audited)."""
        require(actor, Action.BREACH_WRITE)
        with self.db.write() as session, session.begin():
            breach = self._get(session, breach_id)
            if not breach.scope:
                raise ConflictError(f"breach {breach_id} has no scope yet: update it with the sources and/or time "
                                    "range it concerns")
            result = in_scope(session, BreachScope.from_json(breach.scope))
            self.audit.record(session, actor=actor.name, action="breach.affected", details={
                "breach_id": breach_id, "images": len(result.image_ids), "faces": len(result.face_ids),
                "requesters": len(result.requesters)})
        return result

    # -- internals ------------------------------------------------------------------------------
    def _get(self, session: Session, breach_id: int) -> Breach:
        if isinstance(breach_id, bool) or not isinstance(breach_id, int):
            raise InvalidValueError("breach", f"{breach_id!r} is not a breach id")
        breach = session.scalar(select(Breach).options(selectinload(Breach.updates)).where(Breach.id == breach_id))
        if breach is None:
            raise NotFoundError(f"no breach {breach_id} in the register")
        return breach

    def _apply(self, session: Session, actor: Actor, breach: Breach, fields: dict[str, Any],
               scope: BreachScope | None, *, note: str, action: str, close: bool = False) -> None:
        unknown = set(fields) - set(FIELDS)
        if unknown:
            raise InvalidValueError(sorted(unknown)[0], "is not a field of a breach")
        now = self.now()
        changes: dict[str, dict[str, Any]] = {}
        for name, raw in fields.items():
            value = FIELDS[name](name, raw)
            if value != getattr(breach, name, None):
                changes[name] = {"from": _json(getattr(breach, name, None)), "to": _json(value)}
                setattr(breach, name, value)
        if scope is not None:
            self._check_sources(session, scope)
            if scope.as_json() != breach.scope:
                changes["scope"] = {"from": breach.scope or None, "to": scope.as_json()}
                breach.scope = scope.as_json()
        self._check_notifications(breach, now)
        if close:
            breach.closed_at = now
            changes["closed_at"] = {"from": None, "to": iso_z_or_none(now)}
        if not changes:
            raise InvalidValueError("changes", "every value given is already recorded")
        session.flush()
        session.add(BreachUpdate(breach_id=breach.id, at=now, actor=actor.name, changes=changes, note=note))
        self.audit.record(session, actor=actor.name, action=action, details={
            "breach_id": breach.id, "fields": sorted(changes), "authority_status": breach.authority_status,
            "subjects_status": breach.subjects_status})

    def _check_notifications(self, breach: Breach, now: datetime) -> None:
        if breach.aware_at > now + timedelta(minutes=5):
            raise InvalidValueError("aware_at", "is in the future")
        if breach.occurred_at is not None and breach.occurred_at > breach.aware_at:
            raise InvalidValueError("occurred_at", "is after the time of awareness")
        for who, status_field, at_field in (("authority", "authority_status", "authority_notified_at"),
                                            ("subjects", "subjects_status", "subjects_notified_at")):
            status = getattr(breach, status_field)
            if status == Notification.NOTIFIED and getattr(breach, at_field) is None:
                setattr(breach, at_field, now)
            if status != Notification.NOTIFIED and getattr(breach, at_field) is not None:
                raise InvalidValueError(at_field, f"is set but the {who} status is {status}")
            if status == Notification.NOT_REQUIRED and not breach.notification_note:
                raise InvalidValueError("notification_note", f"not notifying the {who} needs the reason "
                                        "(Art. 33(1): unlikely to result in a risk; Art. 34(3) for the people)")
        notified = breach.authority_notified_at
        if notified is not None and notified > breach.aware_at + NOTIFY_WITHIN and not breach.delay_reasons:
            raise InvalidValueError("delay_reasons", "a notification after 72 hours must give the reasons for the "
                                    "delay (Art. 33(1))")

    @staticmethod
    def _check_sources(session: Session, scope: BreachScope) -> None:
        known = set(session.scalars(select(Source.id).where(Source.id.in_(scope.source_ids))))
        unknown = sorted(set(scope.source_ids) - known)
        if unknown:
            raise InvalidValueError("scope", f"source {unknown[0]} is not registered")
