"""The compliance objects as JSON values: timestamps ISO 8601 UTC with `Z`, dates ISO, tuples as lists."""

from __future__ import annotations

from dataclasses import asdict, is_dataclass
from datetime import date, datetime
from enum import Enum
from typing import Any

from facetrail.timestamps import iso_z_or_none


def plain(value: Any) -> Any:
    """`value` (a dataclass instance, or anything inside one) with only JSON types left."""
    if is_dataclass(value) and not isinstance(value, type):
        return {key: plain(item) for key, item in asdict(value).items()}
    if isinstance(value, datetime):
        return iso_z_or_none(value)
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, dict):
        return {key: plain(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [plain(item) for item in value]
    return value
