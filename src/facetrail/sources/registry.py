"""Registering and reading sources (hard rule 1: nothing enters except through a registered source)."""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import select

from facetrail.accounts.roles import Action, Actor, require
from facetrail.audit.log import AuditLog
from facetrail.errors import InvalidValueError, NotFoundError
from facetrail.policy.sources import validate_purpose, validate_source
from facetrail.store.db import Database
from facetrail.store.models import Source


class SourceRegistry:
    def __init__(self, db: Database, audit: AuditLog) -> None:
        self.db = db
        self.audit = audit

    def add(self, actor: Actor, *, name: str, controller: str, purposes: Iterable[str], legal_basis: str,
            art9_condition: str, evidence_ref: str, jurisdictions: Iterable[str], retention_days: int,
            description: str = "") -> Source:
        require(actor, Action.SOURCE_WRITE)
        spec = validate_source(name=name, controller=controller, purposes=purposes, legal_basis=legal_basis,
                               art9_condition=art9_condition, evidence_ref=evidence_ref,
                               jurisdictions=jurisdictions, retention_days=retention_days,
                               description=description)
        with self.db.write() as session, session.begin():
            if session.scalar(select(Source.id).where(Source.name == spec.name)) is not None:
                raise InvalidValueError("name", f"a source named {spec.name!r} exists already")
            source = Source(
                name=spec.name, controller=spec.controller, purposes=list(spec.purposes),
                legal_basis=spec.legal_basis.value, art9_condition=spec.art9_condition.value,
                evidence_ref=spec.evidence_ref, jurisdictions=list(spec.jurisdictions),
                retention_days=spec.retention_days, description=spec.description, created_by=actor.name,
            )
            session.add(source)
            session.flush()
            self.audit.record(session, actor=actor.name, action="source.add", details={
                "source_id": source.id, "name": source.name, "controller": source.controller,
                "purposes": source.purposes, "legal_basis": source.legal_basis,
                "art9_condition": source.art9_condition, "jurisdictions": source.jurisdictions,
                "retention_days": source.retention_days,
            })
        return source

    def get(self, actor: Actor, source_id: int) -> Source:
        require(actor, Action.SOURCE_READ)
        return self.require_source(source_id)

    def require_source(self, source_id: int) -> Source:
        """The source with this id, or a NotFoundError that says how to register one."""
        if isinstance(source_id, bool) or not isinstance(source_id, int):
            raise InvalidValueError("source", f"{source_id!r} is not a source id")
        with self.db.read() as session:
            source = session.get(Source, source_id)
        if source is None:
            raise NotFoundError(
                f"source {source_id} is not registered; images enter only through a registered source "
                "with its legal basis (facetrail source add)"
            )
        return source

    def list(self, actor: Actor) -> list[Source]:
        require(actor, Action.SOURCE_READ)
        with self.db.read() as session:
            return list(session.scalars(select(Source).order_by(Source.id)))

    def ids_for_purpose(self, purpose: str) -> set[int]:
        """Ids of the sources whose registered purposes include `purpose` (hard rule 2)."""
        wanted = validate_purpose(purpose)
        with self.db.read() as session:
            rows = session.execute(select(Source.id, Source.purposes)).all()
        return {source_id for source_id, purposes in rows if wanted in purposes}
