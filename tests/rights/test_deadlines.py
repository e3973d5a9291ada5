"""GDPR Art. 12(3) deadlines follow the calendar-month rule; the workflow table forbids odd transitions."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from facetrail.rights.deadlines import due_date, extended_due_date
from facetrail.rights.workflow import TRANSITIONS, RequestStatus, allowed


@pytest.mark.parametrize("received,due", [
    ((2026, 1, 31), (2026, 2, 28)),
    ((2028, 1, 31), (2028, 2, 29)),
    ((2026, 3, 31), (2026, 4, 30)),
    ((2026, 12, 15), (2027, 1, 15)),
    ((2026, 2, 28), (2026, 3, 28)),
])
def test_one_calendar_month(received: tuple[int, int, int], due: tuple[int, int, int]) -> None:
    assert due_date(datetime(*received, 10, 30, tzinfo=UTC)) == datetime(*due, 10, 30, tzinfo=UTC)


def test_extensions_are_one_or_two_more_months() -> None:
    received = datetime(2026, 1, 31, tzinfo=UTC)
    assert extended_due_date(received, 2) == datetime(2026, 4, 30, tzinfo=UTC)
    with pytest.raises(ValueError):
        extended_due_date(received, 3)


def test_closed_requests_never_move_again() -> None:
    for closed in (RequestStatus.COMPLETED, RequestStatus.REFUSED):
        assert TRANSITIONS[closed] == frozenset()
    assert not allowed(RequestStatus.RECEIVED, RequestStatus.COMPLETED)  # never answered unverified
    assert not allowed(RequestStatus.IDENTITY_PENDING, RequestStatus.IN_PROGRESS)
    assert allowed(RequestStatus.VERIFIED, RequestStatus.EXTENDED)
