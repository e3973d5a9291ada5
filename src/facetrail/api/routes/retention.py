"""/v1/retention/run and /v1/sources/{id}/retire: storage limitation (hard rule 11)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Body

from facetrail.accounts.roles import Action, Actor
from facetrail.api.compliance_schemas import (
    RetentionReportPublic,
    RetentionRun,
    RetirementReportPublic,
    SourceRetire,
)
from facetrail.api.deps import FacetrailDep
from facetrail.api.guard import GuardedRoute, allowed

router = APIRouter(tags=["retention"], route_class=GuardedRoute)
Retainer = Annotated[Actor, allowed(Action.RETENTION)]
SourceWriter = Annotated[Actor, allowed(Action.SOURCE_WRITE)]


@router.post("/v1/retention/run", response_model=RetentionReportPublic)
def run_retention(ft: FacetrailDep, actor: Retainer,
                  body: Annotated[RetentionRun | None, Body()] = None) -> RetentionReportPublic:
    """Erase every image kept past its source's retention (or, as a dry run, list them)."""
    report = ft.retention.run(actor, dry_run=body.dry_run if body else False)
    return RetentionReportPublic.model_validate(report.as_dict())


@router.post("/v1/sources/{source_id}/retire", response_model=RetirementReportPublic)
def retire_source(source_id: int, body: SourceRetire, ft: FacetrailDep,
                  actor: SourceWriter) -> RetirementReportPublic:
    """The source takes no new images; its data is erased now or kept until its retention ends."""
    return RetirementReportPublic.model_validate(ft.retirement.retire(actor, source_id, body.retirement).as_dict())
