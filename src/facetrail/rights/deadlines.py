"""GDPR Art. 12(3) deadlines: one calendar month from receipt, extendable by at most two more months.

A calendar month ends on the same day of the following month; when that month is shorter, on its last
day (received 31 January -> due 28 February, or 29 in a leap year).
"""

from __future__ import annotations

import calendar
from datetime import datetime


def add_months(moment: datetime, months: int) -> datetime:
    """`moment` plus whole calendar months, clamped to the last day of a shorter month."""
    month_index = moment.month - 1 + months
    year, month = moment.year + month_index // 12, month_index % 12 + 1
    day = min(moment.day, calendar.monthrange(year, month)[1])
    return moment.replace(year=year, month=month, day=day)


def due_date(received_at: datetime) -> datetime:
    return add_months(received_at, 1)


def extended_due_date(received_at: datetime, extra_months: int) -> datetime:
    if not 1 <= extra_months <= 2:
        raise ValueError("an extension is one or two further months")
    return add_months(received_at, 1 + extra_months)


def due_in_force(received_at: datetime, due_at: datetime, extension_months: int) -> datetime:
    """The due date a request is held to: `due_at`, or the extended date once extended."""
    return extended_due_date(received_at, extension_months) if extension_months else due_at
