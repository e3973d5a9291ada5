"""/v1/requests: the DPO's view and actions on data-subject requests."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query
from pydantic import BaseModel, ConfigDict, Field

from facetrail.accounts.roles import Action, Actor
from facetrail.api.deps import FacetrailDep
from facetrail.api.guard import GuardedRoute, allowed
from facetrail.rights.views import dpo_view, evidence_view

router = APIRouter(prefix="/v1/requests", tags=["requests"], route_class=GuardedRoute)
DpoActor = Annotated[Actor, allowed(Action.REQUESTS)]


class Justification(BaseModel):
    model_config = ConfigDict(extra="forbid")
    justification: str = Field(max_length=5000)
    unfounded: bool = False


class Extension(BaseModel):
    model_config = ConfigDict(extra="forbid")
    months: int
    reasons: str = Field(max_length=5000)


class Decision(BaseModel):
    model_config = ConfigDict(extra="forbid")
    uphold: bool
    reason: str = Field(max_length=5000)


class Reason(BaseModel):
    model_config = ConfigDict(extra="forbid")
    reason: str = Field(min_length=1, max_length=5000)


class Note(BaseModel):
    model_config = ConfigDict(extra="forbid")
    note: str = Field(default="", max_length=5000)


@router.get("")
def list_requests(ft: FacetrailDep, actor: DpoActor,
                  include_closed: Annotated[bool, Query()] = False) -> list[dict[str, Any]]:
    """Open requests, overdue first, then those due soonest."""
    return [dpo_view(ft.requests, r) for r in ft.requests.queue(actor, open_only=not include_closed)]


@router.get("/{request_id}")
def show_request(request_id: str, ft: FacetrailDep, actor: DpoActor) -> dict[str, Any]:
    return dpo_view(ft.requests, ft.requests.get(actor, request_id), with_events=True)


@router.get("/{request_id}/evidence")
def evidence(request_id: str, ft: FacetrailDep, actor: DpoActor) -> dict[str, Any]:
    """What the DPO judges identity on: e-mail verification, live-check attempts, the capture's key frames,
    the matched faces with their scores and bands, and any document (images as base64). Audited."""
    return evidence_view(ft.requests, ft.requests.evidence_of(actor, request_id))


@router.post("/{request_id}/manual-check")
def require_manual_check(request_id: str, ft: FacetrailDep, actor: DpoActor) -> dict[str, Any]:
    ft.requests.require_manual_check(actor, request_id)
    return show_request(request_id, ft, actor)


@router.post("/{request_id}/approve")
def approve(request_id: str, body: Reason, ft: FacetrailDep, actor: DpoActor) -> dict[str, Any]:
    """The DPO judged the evidence and approves the requester's identity, with the reason recorded."""
    ft.requests.approve(actor, request_id, body.reason)
    return show_request(request_id, ft, actor)


@router.post("/{request_id}/reject")
def reject(request_id: str, body: Justification, ft: FacetrailDep, actor: DpoActor) -> dict[str, Any]:
    ft.requests.reject(actor, request_id, body.justification)
    return show_request(request_id, ft, actor)


@router.post("/{request_id}/extend")
def extend(request_id: str, body: Extension, ft: FacetrailDep, actor: DpoActor) -> dict[str, Any]:
    ft.requests.extend(actor, request_id, months=body.months, reasons=body.reasons)
    return show_request(request_id, ft, actor)


@router.post("/{request_id}/refuse")
def refuse(request_id: str, body: Justification, ft: FacetrailDep, actor: DpoActor) -> dict[str, Any]:
    ft.requests.refuse(actor, request_id, body.justification, unfounded=body.unfounded)
    return show_request(request_id, ft, actor)


@router.post("/{request_id}/objection")
def decide_objection(request_id: str, body: Decision, ft: FacetrailDep, actor: DpoActor) -> dict[str, Any]:
    ft.requests.decide_objection(actor, request_id, uphold=body.uphold, reason=body.reason)
    return show_request(request_id, ft, actor)


@router.post("/{request_id}/fulfil")
def fulfil(request_id: str, body: Note, ft: FacetrailDep, actor: DpoActor) -> dict[str, Any]:
    ft.requests.fulfil(actor, request_id, body.note)
    return show_request(request_id, ft, actor)
