"""The one timestamp format of every output (command line, API, audit log): ISO 8601 in UTC with `Z`,
`2026-11-30T23:15:24Z` (`precise`: with microseconds, `2026-11-30T23:15:24.123456Z`)."""

from __future__ import annotations

from datetime import UTC, datetime

from facetrail.errors import InvalidValueError


def iso_z(value: datetime, *, precise: bool = False) -> str:
    """`value` (aware; a naive one is taken as UTC, which is how the store keeps them) in UTC with `Z`."""
    aware = value if value.tzinfo is not None else value.replace(tzinfo=UTC)
    return aware.astimezone(UTC).isoformat(timespec="microseconds" if precise else "seconds").replace("+00:00", "Z")


def iso_z_or_none(value: datetime | None, *, precise: bool = False) -> str | None:
    return None if value is None else iso_z(value, precise=precise)


def now_iso(*, precise: bool = False) -> str:
    return iso_z(datetime.now(UTC), precise=precise)


def parse_time(text: str, field: str) -> datetime:
    """An ISO 8601 date or time given by a user (`2026-11-30`, `2026-11-30T12:00`, `...Z`, `...+01:00`),
    as an aware UTC datetime; no zone means UTC."""
    try:
        parsed = datetime.fromisoformat(text.strip())
    except ValueError:
        raise InvalidValueError(field, f"{text!r} is not an ISO 8601 date or time (e.g. 2026-11-30T12:00:00Z)"
                                ) from None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)
