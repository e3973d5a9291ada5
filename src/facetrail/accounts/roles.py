"""Roles and the one table of who may do what. Services check it; edges only translate errors."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from facetrail.errors import PermissionDeniedError


class Role(StrEnum):
    OPERATOR = "operator"
    INVESTIGATOR = "investigator"
    DPO = "dpo"
    AUDITOR = "auditor"


class Action(StrEnum):
    SOURCE_WRITE = "source.write"
    SOURCE_READ = "source.read"
    INGEST = "ingest"
    SEARCH = "search"
    AUDIT_READ = "audit.read"
    ACCOUNT_ADMIN = "account.admin"
    OVERSIGHT_ACCOUNTS = "account.oversight"
    INDEX_ADMIN = "index.admin"
    PEOPLE_READ = "people.read"
    PEOPLE_WRITE = "people.write"
    REQUESTS = "requests"
    BACKUP = "backup"
    KEYS = "keys"
    ORDERS_WRITE = "orders.write"
    ORDERS_READ = "orders.read"
    RETENTION = "retention"
    COMPLIANCE_READ = "compliance.read"
    BREACH_WRITE = "breach.write"
    BREACH_READ = "breach.read"
    EXPORT_REGULATOR = "export.regulator"


PERMISSIONS: dict[Action, frozenset[Role]] = {
    Action.SOURCE_WRITE: frozenset({Role.OPERATOR}),
    Action.SOURCE_READ: frozenset({Role.OPERATOR, Role.DPO, Role.AUDITOR, Role.INVESTIGATOR}),
    Action.INGEST: frozenset({Role.OPERATOR}),
    Action.SEARCH: frozenset({Role.INVESTIGATOR}),
    Action.AUDIT_READ: frozenset({Role.AUDITOR, Role.DPO}),
    # Operators manage the accounts that run the collection; the accounts that oversee them (DPO, auditor)
    # are made by a DPO or the local command line, so that those audited do not choose their auditors.
    Action.ACCOUNT_ADMIN: frozenset({Role.OPERATOR}),
    Action.OVERSIGHT_ACCOUNTS: frozenset({Role.DPO}),
    Action.INDEX_ADMIN: frozenset({Role.OPERATOR}),
    # Clustering groups the collection into identities: an operator's tool for curating it, not a
    # way around purpose-bound search, so investigators do not get it.
    Action.PEOPLE_READ: frozenset({Role.OPERATOR}),
    Action.PEOPLE_WRITE: frozenset({Role.OPERATOR}),
    Action.REQUESTS: frozenset({Role.DPO}),
    # Backups and restores are the command line's, on the machine holding the data (no API route).
    Action.BACKUP: frozenset({Role.OPERATOR}),
    Action.KEYS: frozenset({Role.OPERATOR}),
    # Enforcement orders are the DPO's to record and carry out; an auditor (the regulator) reads them.
    Action.ORDERS_WRITE: frozenset({Role.DPO}),
    Action.ORDERS_READ: frozenset({Role.DPO, Role.AUDITOR}),
    Action.RETENTION: frozenset({Role.OPERATOR, Role.DPO}),
    # The record of processing, the DPIA and the regulator export are the DPO's documents, which an
    # auditor (or the regulator's account) reads; only the DPO records and updates breaches.
    Action.COMPLIANCE_READ: frozenset({Role.DPO, Role.AUDITOR}),
    Action.BREACH_WRITE: frozenset({Role.DPO}),
    Action.BREACH_READ: frozenset({Role.DPO, Role.AUDITOR}),
    Action.EXPORT_REGULATOR: frozenset({Role.DPO, Role.AUDITOR}),
}


def actions_of(role: Role) -> list[Action]:
    """What an account of this role may do, as the table above says."""
    return [action for action, roles in PERMISSIONS.items() if role in roles]


@dataclass(frozen=True)
class Actor:
    """Who is acting. `local` marks the command line on the machine that holds the data directory:
    whoever runs it can read that directory anyway, so it may do every staff action, and every
    one of them is written to the audit log under its name (local:<os user>).

    `purposes` narrows what the actor's API key may search for: None = every purpose its role allows."""

    name: str
    role: Role
    local: bool = False
    purposes: frozenset[str] | None = None


OVERSIGHT_ROLES = frozenset({Role.DPO, Role.AUDITOR})


def account_action(role: Role) -> Action:
    """The action that creating or disabling an account of `role` needs."""
    return Action.OVERSIGHT_ACCOUNTS if role in OVERSIGHT_ROLES else Action.ACCOUNT_ADMIN


def require(actor: Actor, action: Action) -> None:
    require_any(actor, action)


def require_any(actor: Actor, *actions: Action) -> None:
    """Refuse unless the actor's role may do at least one of `actions`."""
    if actor.local or any(actor.role in PERMISSIONS[action] for action in actions):
        return
    allowed = ", ".join(sorted({role.value for action in actions for role in PERMISSIONS[action]}))
    names = " or ".join(action.value for action in actions)
    raise PermissionDeniedError(f"{names} requires the role {allowed}; {actor.name} is {actor.role.value}")


def require_purpose(actor: Actor, purpose: str) -> None:
    """Refuse a search for a purpose outside the actor's key scope (`purpose` already validated)."""
    if actor.local or actor.purposes is None or purpose in actor.purposes:
        return
    allowed = ", ".join(sorted(actor.purposes)) or "none"
    raise PermissionDeniedError(f"the key of {actor.name} may search only for the purposes {allowed}, "
                                f"not {purpose!r}")
