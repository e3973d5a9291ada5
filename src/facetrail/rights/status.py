"""How a request looks to the person who made it (the portal's status page and its JSON): nothing about faces
until identity is verified and the answer given."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

from facetrail.rights.workflow import RequestStatus
from facetrail.store.models import RightsRequest
from facetrail.timestamps import iso_z


@dataclass(frozen=True)
class Refusal:
    justification: str | None
    complaint: str  # where and how to complain (Art. 77)


@dataclass(frozen=True)
class Extension:
    months: int
    reasons: str | None


@dataclass(frozen=True)
class RequesterView:
    id: str
    kind: str
    status: str
    received_at: str  # ISO 8601 UTC
    due_at: str  # ISO 8601 UTC, the extension included
    email_verified: bool
    live_check_done: bool
    documents: int  # how many the requester added for the DPO
    answer: dict[str, Any] | None  # the stored answer, once the request is completed
    refusal: Refusal | None
    extension: Extension | None

    def as_dict(self) -> dict[str, Any]:
        """The JSON the portal's script reads (PortalStatus)."""
        return asdict(self)


def requester_view(request: RightsRequest, due: datetime, complaint: str) -> RequesterView:
    return RequesterView(
        id=request.id, kind=request.kind, status=request.status, received_at=iso_z(request.received_at),
        due_at=iso_z(due), email_verified=request.email_verified_at is not None,
        live_check_done=request.selfie_checked_at is not None,
        documents=len((request.evidence or {}).get("documents", [])),
        answer=request.answer if request.status == RequestStatus.COMPLETED else None,
        refusal=(Refusal(request.refusal_justification, complaint) if request.status == RequestStatus.REFUSED
                 else None),
        extension=(Extension(request.extension_months, request.extension_reasons) if request.extension_months
                   else None),
    )
