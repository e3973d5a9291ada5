"""/v1/breaches: the breach register (the DPO records and updates, the auditor reads)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict, Field

from facetrail.accounts.roles import Action, Actor
from facetrail.api.deps import FacetrailDep
from facetrail.api.guard import GuardedRoute, allowed
from facetrail.compliance.breach_scope import BreachScope
from facetrail.compliance.breaches import parse_time
from facetrail.compliance.views import breach_view

router = APIRouter(prefix="/v1/breaches", tags=["breaches"], route_class=GuardedRoute)
BreachReader = Annotated[Actor, allowed(Action.BREACH_READ)]
BreachWriter = Annotated[Actor, allowed(Action.BREACH_WRITE)]
Long = Field(default=None, max_length=10_000)
Short = Field(default=None, max_length=200)


class ScopeIn(BaseModel):
    """Sources (none = every source), a range of ingestion times, and whether rights requests were exposed."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)
    source_ids: list[int] = Field(default_factory=list, max_length=10_000)
    since: str | None = Field(default=None, alias="from", max_length=40)
    until: str | None = Field(default=None, alias="to", max_length=40)
    requests: bool = False

    def parsed(self) -> BreachScope:
        return BreachScope.of(self.source_ids, parse_time("from", self.since), parse_time("to", self.until),
                              self.requests)


class BreachFields(BaseModel):
    model_config = ConfigDict(extra="forbid")
    title: str | None = Short
    nature: str | None = Long
    data_categories: list[str] | None = Field(default=None, max_length=100)
    subject_categories: list[str] | None = Field(default=None, max_length=100)
    approx_subjects: int | None = Field(default=None, ge=0)
    approx_records: int | None = Field(default=None, ge=0)
    consequences: str | None = Long
    measures: str | None = Long
    occurred_at: str | None = Field(default=None, max_length=40)
    aware_at: str | None = Field(default=None, max_length=40)
    scope: ScopeIn | None = None

    def fields(self) -> dict[str, Any]:
        return {k: v for k, v in self.model_dump(exclude={"scope"}).items() if v is not None}


class BreachChange(BreachFields):
    note: str = Field(max_length=5000)
    authority_status: str | None = Field(default=None, max_length=20)
    authority_notified_at: str | None = Field(default=None, max_length=40)
    authority_reference: str | None = Short
    delay_reasons: str | None = Long
    subjects_status: str | None = Field(default=None, max_length=20)
    subjects_notified_at: str | None = Field(default=None, max_length=40)
    notification_note: str | None = Long
    close: bool = False

    def fields(self) -> dict[str, Any]:
        return {k: v for k, v in self.model_dump(exclude={"scope", "note", "close"}).items() if v is not None}


@router.get("")
def list_breaches(ft: FacetrailDep, actor: BreachReader) -> list[dict[str, Any]]:
    now = ft.breaches.now()
    return [breach_view(b, now, with_history=False) for b in ft.breaches.list(actor)]


@router.post("", status_code=201)
def add_breach(body: BreachFields, ft: FacetrailDep, actor: BreachWriter) -> dict[str, Any]:
    """Record a breach; the 72-hour clock runs from `aware_at` (default: now)."""
    fields = body.fields()
    fields.setdefault("aware_at", ft.breaches.now())
    breach = ft.breaches.add(actor, scope=body.scope.parsed() if body.scope else None, **fields)
    return breach_view(breach, ft.breaches.now())


@router.get("/{breach_id}")
def show_breach(breach_id: int, ft: FacetrailDep, actor: BreachReader) -> dict[str, Any]:
    return breach_view(ft.breaches.get(actor, breach_id), ft.breaches.now())


@router.post("/{breach_id}/updates")
def update_breach(breach_id: int, body: BreachChange, ft: FacetrailDep, actor: BreachWriter) -> dict[str, Any]:
    """A phase of the record (Art. 33(4)): the fields given change; the history keeps every phase."""
    breach = ft.breaches.update(actor, breach_id, note=body.note, close=body.close,
                                scope=body.scope.parsed() if body.scope else None, **body.fields())
    return breach_view(breach, ft.breaches.now())


@router.get("/{breach_id}/affected")
def affected(breach_id: int, ft: FacetrailDep, actor: BreachWriter) -> dict[str, Any]:
    """The images, faces and requesters in the breach's scope (DPO only: it names requesters)."""
    return ft.breaches.affected(actor, breach_id).as_dict()
