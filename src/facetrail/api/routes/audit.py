"""/v1/audit: read and verify the audit log, its signed checkpoints and Merkle proofs (auditor, dpo)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from facetrail.accounts.roles import Action, Actor
from facetrail.api.deps import FacetrailDep
from facetrail.api.guard import GuardedRoute, allowed
from facetrail.api.schemas import (
    AuditEntryPublic,
    AuditVerifyPublic,
    CheckpointPublic,
    ConsistencyProofPublic,
    InclusionProofPublic,
)
from facetrail.audit.query import AuditQuery
from facetrail.timestamps import parse_time

router = APIRouter(prefix="/v1/audit", tags=["audit"], route_class=GuardedRoute)
AuditReader = Annotated[Actor, allowed(Action.AUDIT_READ)]


@router.get("", response_model=list[AuditEntryPublic])
def list_entries(
    ft: FacetrailDep, actor: AuditReader, after: Annotated[int, Query(ge=0)] = 0,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    by: Annotated[str | None, Query(alias="actor", description="only this actor")] = None,
    action: Annotated[str | None, Query(description="only this action (e.g. search)")] = None,
    purpose: Annotated[str | None, Query(description="only entries for this purpose")] = None,
    case: Annotated[str | None, Query(description="only entries for this case reference")] = None,
    since: Annotated[str | None, Query(description="from this time on (ISO 8601; UTC if no zone)")] = None,
    until: Annotated[str | None, Query(description="before this time (ISO 8601; UTC if no zone)")] = None,
) -> list[AuditEntryPublic]:
    query = AuditQuery(actor=by, action=action, purpose=purpose, case=case,
                       since=None if since is None else parse_time(since, "since"),
                       until=None if until is None else parse_time(until, "until"))
    return [AuditEntryPublic.model_validate(e) for e in ft.read_audit(actor, query, after=after, limit=limit)]


@router.get("/verify", response_model=AuditVerifyPublic)
def verify(ft: FacetrailDep, actor: AuditReader) -> AuditVerifyPublic:
    result = ft.verify_audit(actor)
    return AuditVerifyPublic(ok=result.ok, entries=result.entries, first_broken_seq=result.first_broken_seq,
                             reason=result.reason)


@router.get("/checkpoint", response_model=CheckpointPublic)
def checkpoint(ft: FacetrailDep, actor: AuditReader) -> CheckpointPublic:
    """The newest signed checkpoint (404 before the first, or without a signing key)."""
    return CheckpointPublic.model_validate(ft.latest_audit_checkpoint(actor).as_dict())


@router.get("/proof/inclusion", response_model=InclusionProofPublic)
def inclusion(ft: FacetrailDep, actor: AuditReader, seq: Annotated[int, Query(ge=1)],
              size: Annotated[int | None, Query(ge=1, description="default: the newest checkpoint's")] = None,
              ) -> InclusionProofPublic:
    return InclusionProofPublic.model_validate(ft.prove_audit_entry(actor, seq, size=size).as_dict())


@router.get("/proof/consistency", response_model=ConsistencyProofPublic)
def consistency(ft: FacetrailDep, actor: AuditReader, first: Annotated[int, Query(ge=0)],
                second: Annotated[int, Query(ge=0)]) -> ConsistencyProofPublic:
    return ConsistencyProofPublic.model_validate(ft.prove_audit_consistency(actor, first, second).as_dict())
