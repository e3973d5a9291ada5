"""The closed vocabularies of the GDPR that a source must be registered with (hard rule 1)."""

from __future__ import annotations

from enum import StrEnum


class LegalBasis(StrEnum):
    """GDPR Art. 6(1) lawful bases."""

    CONSENT = "consent"  # (a)
    CONTRACT = "contract"  # (b)
    LEGAL_OBLIGATION = "legal_obligation"  # (c)
    VITAL_INTERESTS = "vital_interests"  # (d)
    PUBLIC_TASK = "public_task"  # (e)
    LEGITIMATE_INTERESTS = "legitimate_interests"  # (f)


class Art9Condition(StrEnum):
    """GDPR Art. 9(2) conditions for processing special-category (biometric) data, points a-j."""

    A = "a"  # explicit consent
    B = "b"  # employment and social security law
    C = "c"  # vital interests, subject incapable of consent
    D = "d"  # not-for-profit body, members
    E = "e"  # made manifestly public by the data subject
    F = "f"  # legal claims or courts
    G = "g"  # substantial public interest, by law
    H = "h"  # preventive or occupational medicine
    I = "i"  # noqa: E741  # the letter is the article's own name for the condition
    J = "j"  # archiving, research, statistics


ART9_DESCRIPTIONS: dict[Art9Condition, str] = {
    Art9Condition.A: "explicit consent of the data subject",
    Art9Condition.B: "obligations in employment, social security and social protection law",
    Art9Condition.C: "vital interests where the data subject cannot give consent",
    Art9Condition.D: "legitimate activities of a not-for-profit body, for its members",
    Art9Condition.E: "data manifestly made public by the data subject",
    Art9Condition.F: "establishment, exercise or defence of legal claims; courts",
    Art9Condition.G: "substantial public interest on the basis of Union or Member State law",
    Art9Condition.H: "preventive or occupational medicine, health or social care",
    Art9Condition.I: "public interest in the area of public health",
    Art9Condition.J: "archiving in the public interest, scientific or historical research, statistics",
}
