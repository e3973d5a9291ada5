"""Validation of an enforcement order as recorded: every field checked, every error naming its field."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date

import pycountry

from facetrail.errors import InvalidValueError
from facetrail.policy.sources import validate_jurisdictions

MAX_PENALTY = 10**12


@dataclass(frozen=True)
class OrderSpec:
    authority: str
    reference: str
    received_on: date
    jurisdictions: tuple[str, ...]
    source_ids: tuple[int, ...]
    cease: bool
    erase: bool
    deadline: date
    daily_penalty: int
    currency: str
    answer_access_first: bool


def validate_order(*, authority: str, reference: str, received_on: date | str, jurisdictions: Iterable[str],
                   source_ids: Iterable[int], cease: bool, erase: bool, deadline: date | str, daily_penalty: int,
                   currency: str = "EUR", answer_access_first: bool = False) -> OrderSpec:
    """Check an order; raise InvalidValueError naming the first field that is wrong."""
    codes = [c for c in jurisdictions if c is not None and str(c).strip()]
    sources = _source_ids(source_ids)
    if not codes and not sources:
        raise InvalidValueError("scope", "an order covers at least one jurisdiction or one source")
    if not (cease or erase):
        raise InvalidValueError("measures", "an order orders at least one measure: cease collection, erase")
    received = _date("received_on", received_on)
    due = _date("deadline", deadline)
    if due < received:
        raise InvalidValueError("deadline", f"{due.isoformat()} is before the order was received "
                                            f"({received.isoformat()})")
    return OrderSpec(
        authority=_text("authority", authority), reference=_text("reference", reference), received_on=received,
        jurisdictions=validate_jurisdictions(codes) if codes else (), source_ids=sources, cease=bool(cease),
        erase=bool(erase), deadline=due, daily_penalty=_penalty(daily_penalty), currency=_currency(currency),
        answer_access_first=bool(answer_access_first),
    )


def _text(field: str, value: str) -> str:
    text = value.strip() if isinstance(value, str) else ""
    if not text:
        raise InvalidValueError(field, "is required")
    if len(text) > 200:
        raise InvalidValueError(field, "is longer than 200 characters")
    return text


def _date(field: str, value: date | str) -> date:
    if isinstance(value, date):
        return value
    try:
        return date.fromisoformat(str(value).strip())
    except ValueError:
        raise InvalidValueError(field, f"{value!r} is not a date (YYYY-MM-DD)") from None


def _source_ids(values: Iterable[int]) -> tuple[int, ...]:
    ids = list(values)
    if any(isinstance(i, bool) or not isinstance(i, int) or i < 1 for i in ids):
        raise InvalidValueError("source_ids", "source ids are whole numbers from 1")
    return tuple(sorted(set(ids)))


def _penalty(value: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_PENALTY:
        raise InvalidValueError("daily_penalty", f"a whole amount per day, 0 to {MAX_PENALTY}")
    return value


def _currency(value: str) -> str:
    code = (value or "").strip().upper()
    if len(code) != 3 or pycountry.currencies.get(alpha_3=code) is None:
        raise InvalidValueError("currency", f"{value!r} is not an ISO 4217 currency code")
    return code
