"""/v1/audit: read and verify the audit log (auditor, dpo)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from facetrail.accounts.roles import Action, Actor
from facetrail.api.deps import FacetrailDep
from facetrail.api.guard import GuardedRoute, allowed
from facetrail.api.schemas import AuditEntryPublic, AuditVerifyPublic

router = APIRouter(prefix="/v1/audit", tags=["audit"], route_class=GuardedRoute)
AuditReader = Annotated[Actor, allowed(Action.AUDIT_READ)]


@router.get("", response_model=list[AuditEntryPublic])
def list_entries(ft: FacetrailDep, actor: AuditReader, after: Annotated[int, Query(ge=0)] = 0,
                 limit: Annotated[int, Query(ge=1, le=1000)] = 100) -> list[AuditEntryPublic]:
    return [AuditEntryPublic.model_validate(e) for e in ft.read_audit(actor, after=after, limit=limit)]


@router.get("/verify", response_model=AuditVerifyPublic)
def verify(ft: FacetrailDep, actor: AuditReader) -> AuditVerifyPublic:
    result = ft.verify_audit(actor)
    return AuditVerifyPublic(ok=result.ok, entries=result.entries, first_broken_seq=result.first_broken_seq,
                             reason=result.reason)
