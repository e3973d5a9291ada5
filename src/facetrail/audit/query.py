"""Which audit entries to read: filters by actor, action, purpose, case and time, shared by every edge."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import JSON, ColumnElement, type_coerce

from facetrail.errors import InvalidValueError
from facetrail.store.models import AuditEntry


@dataclass(frozen=True)
class AuditQuery:
    """Every field is optional; those given must all hold. `since` is inclusive, `until` exclusive.
    `purpose` and `case` match the entries that record them (searches: `details.purpose`, `details.case`)."""

    actor: str | None = None
    action: str | None = None
    purpose: str | None = None
    case: str | None = None
    since: datetime | None = None
    until: datetime | None = None

    def conditions(self) -> list[ColumnElement[bool]]:
        if self.since is not None and self.until is not None and self.since >= self.until:
            raise InvalidValueError("until", "the end of the time range must come after its start")
        found: list[ColumnElement[bool]] = []
        if self.actor is not None:
            found.append(AuditEntry.actor == self.actor)
        if self.action is not None:
            found.append(AuditEntry.action == self.action)
        for key, value in (("purpose", self.purpose), ("case", self.case)):
            if value is not None:
                found.append(_detail(key) == value)
        # `at` is ISO 8601 in UTC with microseconds; its first 26 characters order as the times they name,
        # whichever zone suffix follows (`Z`, or `+00:00` in entries written by earlier versions).
        if self.since is not None:
            found.append(AuditEntry.at >= _prefix(self.since))
        if self.until is not None:
            found.append(AuditEntry.at < _prefix(self.until))
        return found


def _detail(key: str) -> ColumnElement[Any]:
    return type_coerce(AuditEntry.details, JSON)[key].as_string()


def _prefix(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")
