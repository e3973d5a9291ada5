"""Registering, editing and reading sources (hard rule 1: nothing enters except through a registered source).

An edit of the description, evidence, retention or contacts changes the source in place; a change of its legal
terms (purposes, legal basis, Art. 9 condition) makes a new version, with its reason, and the earlier versions
stay. Both are audited with every value before and after.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from enum import Enum
from typing import Any

from sqlalchemy import select

from facetrail.accounts.roles import Action, Actor, require
from facetrail.audit.log import AuditLog
from facetrail.errors import ConflictError, InvalidValueError, NotFoundError
from facetrail.policy.sources import (
    LEGAL_TERMS,
    SourceChange,
    validate_change,
    validate_contact,
    validate_purpose,
    validate_source,
)
from facetrail.sources.urls import validate_url
from facetrail.store.db import Database
from facetrail.store.models import Source, SourceUrl, SourceVersion

REGISTERED = "registered"
"""The reason recorded with a source's first version."""


@dataclass(frozen=True)
class UrlDeclaration:
    """What a declaration of URLs did: how many were new to the source, how many it had declared already."""

    source_id: int
    added: int
    already: int


class SourceRegistry:
    def __init__(self, db: Database, audit: AuditLog) -> None:
        self.db = db
        self.audit = audit

    def add(self, actor: Actor, *, name: str, controller: str, purposes: Iterable[str], legal_basis: str,
            art9_condition: str, evidence_ref: str, jurisdictions: Iterable[str], retention_days: int,
            description: str = "", controller_contact: str = "", representative: str = "") -> Source:
        require(actor, Action.SOURCE_WRITE)
        spec = validate_source(name=name, controller=controller, purposes=purposes, legal_basis=legal_basis,
                               art9_condition=art9_condition, evidence_ref=evidence_ref,
                               jurisdictions=jurisdictions, retention_days=retention_days,
                               description=description)
        contact = validate_contact("controller_contact", controller_contact)
        representative = validate_contact("representative", representative)
        with self.db.write() as session, session.begin():
            if session.scalar(select(Source.id).where(Source.name == spec.name)) is not None:
                raise InvalidValueError("name", f"a source named {spec.name!r} exists already")
            source = Source(
                name=spec.name, controller=spec.controller, purposes=list(spec.purposes),
                legal_basis=spec.legal_basis.value, art9_condition=spec.art9_condition.value,
                evidence_ref=spec.evidence_ref, jurisdictions=list(spec.jurisdictions),
                retention_days=spec.retention_days, description=spec.description, created_by=actor.name,
                version=1, controller_contact=contact, representative=representative,
            )
            session.add(source)
            session.flush()
            session.add(SourceVersion(source_id=source.id, version=1, purposes=source.purposes,
                                      legal_basis=source.legal_basis, art9_condition=source.art9_condition,
                                      reason=REGISTERED, created_at=source.created_at, created_by=actor.name))
            self.audit.record(session, actor=actor.name, action="source.add", details={
                "source_id": source.id, "name": source.name, "controller": source.controller,
                "purposes": source.purposes, "legal_basis": source.legal_basis,
                "art9_condition": source.art9_condition, "jurisdictions": source.jurisdictions,
                "retention_days": source.retention_days,
            })
        return source

    def update(self, actor: Actor, source_id: int, **fields: Any) -> Source:
        """Edit a source. `fields`: description, evidence_ref, retention_days, controller_contact, representative
        (changed in place), purposes, legal_basis, art9_condition (a new version; `reason` is then required).
        A field left out, or given its current value, is not changed; a call that changes nothing is no edit."""
        require(actor, Action.SOURCE_WRITE)
        change = validate_change(**fields)
        if all(value is None for name, value in asdict(change).items() if name != "reason"):
            raise InvalidValueError("source", "nothing to change: give at least one field")
        self.require_source(source_id)
        with self.db.write() as session, session.begin():
            source = session.get(Source, source_id)
            assert source is not None  # sources are never deleted
            changes = _differences(source, change)
            if not changes:
                return source
            legal = [name for name in LEGAL_TERMS if name in changes]
            if legal and not change.reason:
                raise InvalidValueError("reason", f"a change of {', '.join(legal)} makes a new version of the "
                                        "source and needs a reason (kept in its history)")
            for name, (_before, after) in changes.items():
                setattr(source, name, after)
            details: dict[str, Any] = {"source_id": source.id, "changes": {
                name: {"from": before, "to": after} for name, (before, after) in changes.items()}}
            if legal:
                source.version += 1
                session.add(SourceVersion(source_id=source.id, version=source.version, purposes=source.purposes,
                                          legal_basis=source.legal_basis, art9_condition=source.art9_condition,
                                          reason=change.reason, created_by=actor.name))
                details |= {"version": source.version, "reason": change.reason}
            self.audit.record(session, actor=actor.name, action="source.update", details=details)
        return source

    def versions(self, actor: Actor, source_id: int) -> list[SourceVersion]:
        """The source's versions, oldest first: the legal terms it was held under, since when, by whom, why."""
        require(actor, Action.SOURCE_READ)
        self.require_source(source_id)
        with self.db.read() as session:
            return list(session.scalars(select(SourceVersion).where(SourceVersion.source_id == source_id)
                                        .order_by(SourceVersion.version)))

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

    def declare_urls(self, actor: Actor, source_id: int, urls: Iterable[str]) -> UrlDeclaration:
        """Declare locations the source's controller is entitled to (http(s) URLs, e.g. from
        sources.urls.read_url_list): the only ones its URL ingestion fetches. Audited with their count and hash."""
        require(actor, Action.SOURCE_WRITE)
        wanted = list(dict.fromkeys(validate_url(url) for url in urls))
        if not wanted:
            raise InvalidValueError("urls", "no URL given")
        source = self.require_source(source_id)
        if source.retired_at is not None:
            raise ConflictError(f"source {source.id} is retired; it takes no new URLs")
        with self.db.write() as session, session.begin():
            known = set(session.scalars(select(SourceUrl.url).where(SourceUrl.source_id == source.id)))
            new = [url for url in wanted if url not in known]
            session.add_all(SourceUrl(source_id=source.id, url=url, declared_by=actor.name) for url in new)
            self.audit.record(session, actor=actor.name, action="source.urls", details={
                "source_id": source.id, "added": len(new), "already": len(wanted) - len(new),
                "sha256": hashlib.sha256("\n".join(new).encode()).hexdigest(),
            })
        return UrlDeclaration(source.id, len(new), len(wanted) - len(new))

    def urls(self, actor: Actor, source_id: int) -> tuple[SourceUrl, ...]:
        """The URLs declared for the source, in the order they were declared."""
        require(actor, Action.SOURCE_READ)
        self.require_source(source_id)
        with self.db.read() as session:
            return tuple(session.scalars(select(SourceUrl).where(SourceUrl.source_id == source_id)
                                         .order_by(SourceUrl.id)))

    def ids_for_purpose(self, purpose: str) -> set[int]:
        """Ids of the sources whose registered purposes include `purpose` (hard rule 2)."""
        wanted = validate_purpose(purpose)
        with self.db.read() as session:
            rows = session.execute(select(Source.id, Source.purposes)).all()
        return {source_id for source_id, purposes in rows if wanted in purposes}

    def registered_purposes(self) -> set[str]:
        """Every purpose some source is registered for."""
        with self.db.read() as session:
            return {p for purposes in session.scalars(select(Source.purposes)) for p in purposes}


def _differences(source: Source, change: SourceChange) -> dict[str, tuple[Any, Any]]:
    """{field: (current value, new value)} for each field the change gives a different value."""
    found = {}
    for name, value in asdict(change).items():
        if name == "reason" or value is None:
            continue
        new = value.value if isinstance(value, Enum) else list(value) if isinstance(value, tuple) else value
        if getattr(source, name) != new:
            found[name] = (getattr(source, name), new)
    return found
