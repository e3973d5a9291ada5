"""Statistics of data-subject requests for the regulator, read from the rights tables: received, completed,
response times, refusals with their reasons, and what is overdue. Request ids only, no e-mail addresses."""

from __future__ import annotations

import statistics
from collections import Counter
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from facetrail.rights.deadlines import due_in_force
from facetrail.rights.workflow import CLOSED, RequestStatus
from facetrail.store.models import RightsRequest
from facetrail.timestamps import iso_z


def _due(request: RightsRequest) -> datetime:
    return due_in_force(request.received_at, request.due_at, request.extension_months)


def request_statistics(session: Session, now: datetime) -> dict[str, Any]:
    requests = list(session.scalars(select(RightsRequest).order_by(RightsRequest.received_at)))
    closed = [r for r in requests if r.status in CLOSED and r.closed_at is not None]
    days = [(r.closed_at - r.received_at).total_seconds() / 86400 for r in closed if r.closed_at]
    completed = [r for r in closed if r.status == RequestStatus.COMPLETED]
    refused = [r for r in closed if r.status == RequestStatus.REFUSED]
    open_requests = [r for r in requests if r.status not in CLOSED]
    return {
        "received": len(requests),
        "received_by_kind": dict(sorted(Counter(r.kind for r in requests).items())),
        "completed": len(completed),
        "refused": len(refused),
        "open": len(open_requests),
        "extended": sum(1 for r in requests if r.extension_months),
        "response_days": {"median": round(statistics.median(days), 2) if days else None,
                          "max": round(max(days), 2) if days else None, "closed_requests": len(days)},
        "answered_late": [r.id for r in closed if r.closed_at and r.closed_at > _due(r)],
        "refusals": [{"request_id": r.id, "kind": r.kind, "reason": r.refusal_justification or "",
                      "manifestly_unfounded_or_excessive": r.unfounded_justification is not None} for r in refused],
        "overdue": [{"request_id": r.id, "kind": r.kind, "due_at": iso_z(_due(r)),
                     "days_late": (now - _due(r)).days} for r in open_requests if _due(r) < now],
    }
