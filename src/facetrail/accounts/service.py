"""Accounts and API keys. A key is `ft_<key id>_<secret>`; only SHA-256(secret) is stored.

A key may be scoped to some purposes (it then searches for those only) and expires after a number of
days (the `key_ttl_days` setting unless given per key; 0 = never). Expiry is told to the caller only
once the secret has been verified, so a guessed key learns nothing from it.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta

from sqlalchemy import select

from facetrail.accounts.roles import Action, Actor, Role, account_action, require, require_any
from facetrail.audit.log import AuditLog
from facetrail.crypto.keyring import Keyring
from facetrail.errors import AuthenticationError, InvalidValueError, NotFoundError
from facetrail.policy.sources import validate_purposes
from facetrail.store.db import Database
from facetrail.store.models import Account
from facetrail.timestamps import iso_z

NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@-]{0,99}$")
KEY = re.compile(r"^ft_([a-f0-9]{16})_([A-Za-z0-9_-]{20,100})$")
# Compared against when no account matches, so a wrong key id costs the same time as a wrong secret.
_DUMMY_HASH = hashlib.sha256(b"facetrail-no-such-account").hexdigest()
DEFAULT_KEY_TTL_DAYS = 90
MAX_KEY_TTL_DAYS = 36_500


class KeyRefusedError(AuthenticationError):
    """An API key was refused. `reason` (missing, malformed, unknown-key, wrong-secret, disabled, expired),
    `key_id` (the key's public id when it parsed, never its secret) and `account` (when the id names one)
    are for the audit log; the caller sees only the message, the same for every reason but `expired`."""

    def __init__(self, message: str, *, reason: str, key_id: str | None = None, account: str | None = None) -> None:
        super().__init__(message)
        self.reason = reason
        self.key_id = key_id
        self.account = account


INVALID_KEY = "invalid or missing API key"


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


class AccountService:
    def __init__(self, db: Database, audit: AuditLog, *, key_ttl_days: int = DEFAULT_KEY_TTL_DAYS,
                 ledger: Keyring | None = None) -> None:
        self.db = db
        self.audit = audit
        self.key_ttl_days = key_ttl_days
        # Where a disabled key is recorded to outlive the restore of an older backup (crypto/keyring.py).
        self.ledger = ledger

    def create(self, actor: Actor, *, name: str, role: str, purposes: Iterable[str] | None = None,
               expires_days: int | None = None) -> tuple[Account, str]:
        """Create an account and return it with its API key, which is never shown again.

        `purposes`: the only purposes the key may search for (None = any); `expires_days`: the key's life
        in days (None = this service's `key_ttl_days`, 0 = never expires). Operators create operator and
        investigator accounts; DPO and auditor accounts only a DPO (or the local command line) creates."""
        require_any(actor, Action.ACCOUNT_ADMIN, Action.OVERSIGHT_ACCOUNTS)
        if not NAME.match(name or ""):
            raise InvalidValueError("name", "use letters, digits, '_', '.', '@' or '-' (at most 100)")
        try:
            parsed_role = Role((role or "").strip().lower())
        except ValueError:
            raise InvalidValueError("role", f"{role!r} is not one of: {', '.join(r.value for r in Role)}") from None
        require(actor, account_action(parsed_role))
        if isinstance(purposes, str):
            purposes = [purposes]
        scope = None if purposes is None else sorted(validate_purposes(purposes))
        days = self.key_ttl_days if expires_days is None else expires_days
        if isinstance(days, bool) or not isinstance(days, int) or not 0 <= days <= MAX_KEY_TTL_DAYS:
            raise InvalidValueError("expires_days", f"a whole number of days from 0 (never) to {MAX_KEY_TTL_DAYS}")
        expires_at = datetime.now(UTC) + timedelta(days=days) if days else None
        key_id, secret = secrets.token_hex(8), secrets.token_urlsafe(32)
        with self.db.write() as session, session.begin():
            if session.scalar(select(Account).where(Account.name == name)) is not None:
                raise InvalidValueError("name", f"an account named {name!r} exists already")
            account = Account(name=name, role=parsed_role.value, key_id=key_id, key_hash=_digest(secret),
                              purposes=scope, expires_at=expires_at)
            session.add(account)
            session.flush()
            self.audit.record(session, actor=actor.name, action="account.add",
                              details={"account_id": account.id, "name": name, "role": parsed_role.value,
                                       "purposes": scope,
                                       "expires_at": iso_z(expires_at) if expires_at else None})
        return account, f"ft_{key_id}_{secret}"

    def disable(self, actor: Actor, *, name: str) -> None:
        require_any(actor, Action.ACCOUNT_ADMIN, Action.OVERSIGHT_ACCOUNTS)
        with self.db.write() as session, session.begin():
            account = session.scalar(select(Account).where(Account.name == name))
            if account is None:
                raise NotFoundError(f"no account named {name!r}")
            require(actor, account_action(Role(account.role)))
            account.disabled_at = datetime.now(UTC)
            self.audit.record(session, actor=actor.name, action="account.disable",
                              details={"account_id": account.id, "name": name})
            if self.ledger is not None:
                self.ledger.record({"uid": secrets.token_hex(16), "kind": "account.disabled",
                                    "key_id": account.key_id})

    def list(self, actor: Actor) -> list[Account]:
        require_any(actor, Action.ACCOUNT_ADMIN, Action.OVERSIGHT_ACCOUNTS)
        with self.db.read() as session:
            return list(session.scalars(select(Account).order_by(Account.id)))

    def authenticate(self, key: str | None, *, now: datetime | None = None) -> Actor:
        """The actor an API key belongs to; KeyRefusedError for anything else, in constant time."""
        match = KEY.match(key or "")
        key_id, secret = (match.group(1), match.group(2)) if match else ("", "")
        with self.db.read() as session:
            account = session.scalar(select(Account).where(Account.key_id == key_id)) if key_id else None
        expected = account.key_hash if account is not None else _DUMMY_HASH
        valid = hmac.compare_digest(expected, _digest(secret))
        if account is None or not valid or account.disabled_at is not None:
            reason = ("missing" if not key else "malformed" if not match else "unknown-key" if account is None
                      else "wrong-secret" if not valid else "disabled")
            raise KeyRefusedError(INVALID_KEY, reason=reason, key_id=key_id or None,
                                  account=account.name if account is not None else None)
        # Only now, with the secret verified, may the caller learn that the key expired.
        if account.expires_at is not None and account.expires_at <= (now or datetime.now(UTC)):
            raise KeyRefusedError(f"this API key expired on {account.expires_at:%Y-%m-%d %H:%M} UTC; "
                                  "ask an operator for a new one", reason="expired", key_id=key_id,
                                  account=account.name)
        scope = frozenset(account.purposes) if account.purposes is not None else None
        return Actor(name=account.name, role=Role(account.role), purposes=scope)
