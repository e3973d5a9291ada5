"""/v1/audit: read and verify the audit log, its signed checkpoints and Merkle proofs (auditor, dpo)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from facetrail.api.deps import ActorDep, FacetrailDep
from facetrail.api.schemas import (
    AuditEntryPublic,
    AuditVerifyPublic,
    CheckpointPublic,
    ConsistencyProofPublic,
    InclusionProofPublic,
)

router = APIRouter(prefix="/v1/audit", tags=["audit"])


@router.get("", response_model=list[AuditEntryPublic])
def list_entries(ft: FacetrailDep, actor: ActorDep, after: Annotated[int, Query(ge=0)] = 0,
                 limit: Annotated[int, Query(ge=1, le=1000)] = 100) -> list[AuditEntryPublic]:
    return [AuditEntryPublic.model_validate(e) for e in ft.read_audit(actor, after=after, limit=limit)]


@router.get("/verify", response_model=AuditVerifyPublic)
def verify(ft: FacetrailDep, actor: ActorDep) -> AuditVerifyPublic:
    result = ft.verify_audit(actor)
    return AuditVerifyPublic(ok=result.ok, entries=result.entries, first_broken_seq=result.first_broken_seq,
                             reason=result.reason)


@router.get("/checkpoint", response_model=CheckpointPublic)
def checkpoint(ft: FacetrailDep, actor: ActorDep) -> CheckpointPublic:
    """The newest signed checkpoint (404 before the first, or without a signing key)."""
    return CheckpointPublic.model_validate(ft.latest_audit_checkpoint(actor).as_dict())


@router.get("/proof/inclusion", response_model=InclusionProofPublic)
def inclusion(ft: FacetrailDep, actor: ActorDep, seq: Annotated[int, Query(ge=1)],
              size: Annotated[int | None, Query(ge=1, description="default: the newest checkpoint's")] = None,
              ) -> InclusionProofPublic:
    return InclusionProofPublic.model_validate(ft.prove_audit_entry(actor, seq, size=size).as_dict())


@router.get("/proof/consistency", response_model=ConsistencyProofPublic)
def consistency(ft: FacetrailDep, actor: ActorDep, first: Annotated[int, Query(ge=0)],
                second: Annotated[int, Query(ge=0)]) -> ConsistencyProofPublic:
    return ConsistencyProofPublic.model_validate(ft.prove_audit_consistency(actor, first, second).as_dict())
