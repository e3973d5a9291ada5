"""The request life cycle as one explicit transition table (every status change goes through it)."""

from __future__ import annotations

from enum import StrEnum


class RequestKind(StrEnum):
    CONFIRM = "confirm"  # Art. 15(1): is any of my data processed?
    ACCESS = "access"  # Art. 15: a copy and everything about the processing
    ERASURE = "erasure"  # Art. 17
    OBJECTION = "objection"  # Art. 21
    RESTRICTION = "restriction"  # Art. 18
    RECTIFICATION = "rectification"  # Art. 16
    PORTABILITY = "portability"  # Art. 20
    OPT_OUT = "opt-out"  # stop future collection (suppression list, hard rule 6)


class RequestStatus(StrEnum):
    RECEIVED = "received"
    IDENTITY_PENDING = "identity_pending"
    VERIFIED = "verified"
    IN_PROGRESS = "in_progress"
    EXTENDED = "extended"
    COMPLETED = "completed"
    REFUSED = "refused"


S = RequestStatus
TRANSITIONS: dict[RequestStatus, frozenset[RequestStatus]] = {
    S.RECEIVED: frozenset({S.IDENTITY_PENDING, S.REFUSED}),
    S.IDENTITY_PENDING: frozenset({S.VERIFIED, S.REFUSED}),
    S.VERIFIED: frozenset({S.IN_PROGRESS, S.EXTENDED, S.COMPLETED, S.REFUSED}),
    S.IN_PROGRESS: frozenset({S.EXTENDED, S.COMPLETED, S.REFUSED}),
    S.EXTENDED: frozenset({S.IN_PROGRESS, S.COMPLETED, S.REFUSED}),
    S.COMPLETED: frozenset(),
    S.REFUSED: frozenset(),
}
CLOSED = frozenset({S.COMPLETED, S.REFUSED})


def allowed(current: RequestStatus, target: RequestStatus) -> bool:
    return target in TRANSITIONS[current]
