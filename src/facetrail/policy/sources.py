"""Validation of a source's registration: every field checked, every error naming its field."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TypeVar

import pycountry

from facetrail.errors import InvalidValueError
from facetrail.policy.legal import Art9Condition, LegalBasis

E = TypeVar("E", LegalBasis, Art9Condition)

PURPOSE = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,99}$")
MAX_RETENTION_DAYS = 36_500


@dataclass(frozen=True)
class SourceSpec:
    """A validated source registration, ready to be stored."""

    name: str
    controller: str
    purposes: tuple[str, ...]
    legal_basis: LegalBasis
    art9_condition: Art9Condition
    evidence_ref: str
    jurisdictions: tuple[str, ...]
    retention_days: int
    description: str = ""


def validate_source(*, name: str, controller: str, purposes: Iterable[str], legal_basis: str,
                    art9_condition: str, evidence_ref: str, jurisdictions: Iterable[str],
                    retention_days: int, description: str = "") -> SourceSpec:
    """Check a registration; raise InvalidValueError naming the first field that is wrong."""
    return SourceSpec(
        name=_text("name", name, 200),
        controller=_text("controller", controller, 200),
        purposes=validate_purposes(purposes),
        legal_basis=_choice("legal_basis", legal_basis, LegalBasis),
        art9_condition=_choice("art9_condition", art9_condition, Art9Condition),
        evidence_ref=_text("evidence_ref", evidence_ref, 500),
        jurisdictions=validate_jurisdictions(jurisdictions),
        retention_days=_retention(retention_days),
        description=(description or "").strip()[:5000],
    )


LEGAL_TERMS = ("purposes", "legal_basis", "art9_condition")
"""The fields whose change makes a new version of a source (what its data is held for, and on which basis)."""


@dataclass(frozen=True)
class SourceChange:
    """A validated edit of a source: each field None is left as it is. `reason` is required when a legal term
    (LEGAL_TERMS) changes, and is kept in the version it makes."""

    description: str | None = None
    evidence_ref: str | None = None
    retention_days: int | None = None
    controller_contact: str | None = None
    representative: str | None = None
    purposes: tuple[str, ...] | None = None
    legal_basis: LegalBasis | None = None
    art9_condition: Art9Condition | None = None
    reason: str | None = None


def validate_change(*, description: str | None = None, evidence_ref: str | None = None,
                    retention_days: int | None = None, controller_contact: str | None = None,
                    representative: str | None = None, purposes: Iterable[str] | None = None,
                    legal_basis: str | None = None, art9_condition: str | None = None,
                    reason: str | None = None) -> SourceChange:
    """Check the fields given for an edit; raise InvalidValueError naming the first that is wrong."""
    return SourceChange(
        description=None if description is None else (description or "").strip()[:5000],
        evidence_ref=None if evidence_ref is None else _text("evidence_ref", evidence_ref, 500),
        retention_days=None if retention_days is None else _retention(retention_days),
        controller_contact=(None if controller_contact is None
                            else validate_contact("controller_contact", controller_contact)),
        representative=None if representative is None else validate_contact("representative", representative),
        purposes=None if purposes is None else validate_purposes(purposes),
        legal_basis=None if legal_basis is None else _choice("legal_basis", legal_basis, LegalBasis),
        art9_condition=None if art9_condition is None else _choice("art9_condition", art9_condition, Art9Condition),
        reason=None if reason is None or not reason.strip() else _text("reason", reason, 1000),
    )


def validate_purpose(purpose: str) -> str:
    value = (purpose or "").strip().lower()
    if not PURPOSE.match(value):
        raise InvalidValueError(
            "purpose", f"{purpose!r} is not a purpose name (lowercase letters, digits, '_', '-', '.')"
        )
    return value


def validate_purposes(purposes: Iterable[str]) -> tuple[str, ...]:
    values = [validate_purpose(p) for p in purposes if p is not None and str(p).strip()]
    if not values:
        raise InvalidValueError("purposes", "at least one purpose is required")
    return tuple(dict.fromkeys(values))


def validate_jurisdictions(codes: Iterable[str]) -> tuple[str, ...]:
    values = []
    for code in codes:
        upper = (code or "").strip().upper()
        if len(upper) != 2 or pycountry.countries.get(alpha_2=upper) is None:
            raise InvalidValueError("jurisdictions", f"{code!r} is not an ISO 3166-1 alpha-2 country code")
        values.append(upper)
    if not values:
        raise InvalidValueError("jurisdictions", "at least one jurisdiction is required")
    return tuple(dict.fromkeys(values))


def _text(field: str, value: str, limit: int) -> str:
    text = (value or "").strip() if isinstance(value, str) else ""
    if not text:
        raise InvalidValueError(field, "is required")
    if len(text) > limit:
        raise InvalidValueError(field, f"is longer than {limit} characters")
    return text


def _choice(field: str, value: str, enum: type[E]) -> E:
    try:
        return enum((value or "").strip().lower())
    except ValueError:
        allowed = ", ".join(m.value for m in enum)
        raise InvalidValueError(field, f"{value!r} is not one of: {allowed}") from None


def _retention(days: int) -> int:
    if isinstance(days, bool) or not isinstance(days, int):
        raise InvalidValueError("retention_days", "must be a whole number of days")
    if not 1 <= days <= MAX_RETENTION_DAYS:
        raise InvalidValueError("retention_days", f"must be between 1 and {MAX_RETENTION_DAYS}")
    return days


def validate_contact(field: str, value: str) -> str:
    """A contact (an address, an e-mail, a phone number): optional ("" = none), at most 500 characters."""
    text = value.strip() if isinstance(value, str) else ""
    if len(text) > 500:
        raise InvalidValueError(field, "is longer than 500 characters")
    return text
