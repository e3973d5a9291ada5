"""Source registration is validated field by field; each error names its field."""

from __future__ import annotations

from typing import Any

import pytest

from facetrail.errors import InvalidValueError
from facetrail.policy.legal import Art9Condition, LegalBasis
from facetrail.policy.sources import validate_source

GOOD: dict[str, Any] = {"name": "Club photos 2026", "controller": "Sports Club", "purposes": ["find-my-photos"],
                            "legal_basis": "consent", "art9_condition": "a", "evidence_ref": "forms/2026",
                            "jurisdictions": ["fr", "DE"], "retention_days": 365, "description": "event photos"}


def test_valid_registration_is_normalised() -> None:
    spec = validate_source(**GOOD)
    assert spec.legal_basis is LegalBasis.CONSENT and spec.art9_condition is Art9Condition.A
    assert spec.jurisdictions == ("FR", "DE")
    assert spec.purposes == ("find-my-photos",)


@pytest.mark.parametrize("field,value", [
    ("name", ""),
    ("controller", "   "),
    ("purposes", []),
    ("purposes", ["Has Spaces"]),
    ("legal_basis", "because"),
    ("art9_condition", ""),
    ("art9_condition", "k"),
    ("evidence_ref", ""),
    ("jurisdictions", []),
    ("jurisdictions", ["XX"]),
    ("jurisdictions", ["FRA"]),
    ("retention_days", 0),
    ("retention_days", "30"),
    ("retention_days", True),
])
def test_invalid_values_name_their_field(field: str, value: object) -> None:
    with pytest.raises(InvalidValueError) as err:
        validate_source(**{**GOOD, field: value})
    expected = "purpose" if field == "purposes" and value else field
    assert err.value.field in (field, expected)
    assert err.value.field in str(err.value)
