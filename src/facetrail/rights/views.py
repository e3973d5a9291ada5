"""How a request looks to the DPO (console, CLI, API): one dictionary, built in one place."""

from __future__ import annotations

from typing import Any

from facetrail.rights.service import RequestService
from facetrail.store.models import RightsRequest
from facetrail.timestamps import iso_z


def dpo_view(service: RequestService, request: RightsRequest, *, with_events: bool = False) -> dict[str, Any]:
    view: dict[str, Any] = {
        "id": request.id, "kind": request.kind, "status": request.status, "email": request.email,
        "received_at": iso_z(request.received_at), "due_at": iso_z(service.due(request)),
        "days_left": service.days_left(request), "overdue": service.days_left(request) < 0 and not request.closed_at,
        "email_verified": request.email_verified_at is not None,
        "selfie_checked": request.selfie_checked_at is not None, "manual_check": request.manual_check,
        "matched_faces": len(request.matched_face_ids or []), "details": request.details,
        "extension_months": request.extension_months, "extension_reasons": request.extension_reasons,
        "refusal_justification": request.refusal_justification, "answer": request.answer,
        "closed_at": iso_z(request.closed_at) if request.closed_at else None,
    }
    if with_events:
        view["events"] = [{"at": iso_z(e.at), "from": e.from_status, "to": e.to_status, "actor": e.actor,
                           "note": e.note} for e in request.events]
    return view
