"""Accounts and API keys. A key is `ft_<key id>_<secret>`; only SHA-256(secret) is stored."""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from datetime import UTC, datetime

from sqlalchemy import select

from facetrail.accounts.roles import Action, Actor, Role, require
from facetrail.audit.log import AuditLog
from facetrail.errors import AuthenticationError, InvalidValueError, NotFoundError
from facetrail.store.db import Database
from facetrail.store.models import Account

NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@-]{0,99}$")
KEY = re.compile(r"^ft_([a-f0-9]{16})_([A-Za-z0-9_-]{20,100})$")
# Compared against when no account matches, so a wrong key id costs the same time as a wrong secret.
_DUMMY_HASH = hashlib.sha256(b"facetrail-no-such-account").hexdigest()


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


class AccountService:
    def __init__(self, db: Database, audit: AuditLog) -> None:
        self.db = db
        self.audit = audit

    def create(self, actor: Actor, *, name: str, role: str) -> tuple[Account, str]:
        """Create an account and return it with its API key, which is never shown again."""
        require(actor, Action.ACCOUNT_ADMIN)
        if not NAME.match(name or ""):
            raise InvalidValueError("name", "use letters, digits, '_', '.', '@' or '-' (at most 100)")
        try:
            parsed_role = Role((role or "").strip().lower())
        except ValueError:
            raise InvalidValueError("role", f"{role!r} is not one of: {', '.join(r.value for r in Role)}") from None
        key_id, secret = secrets.token_hex(8), secrets.token_urlsafe(32)
        with self.db.write() as session, session.begin():
            if session.scalar(select(Account).where(Account.name == name)) is not None:
                raise InvalidValueError("name", f"an account named {name!r} exists already")
            account = Account(name=name, role=parsed_role.value, key_id=key_id, key_hash=_digest(secret))
            session.add(account)
            session.flush()
            self.audit.record(session, actor=actor.name, action="account.add",
                              details={"account_id": account.id, "name": name, "role": parsed_role.value})
        return account, f"ft_{key_id}_{secret}"

    def disable(self, actor: Actor, *, name: str) -> None:
        require(actor, Action.ACCOUNT_ADMIN)
        with self.db.write() as session, session.begin():
            account = session.scalar(select(Account).where(Account.name == name))
            if account is None:
                raise NotFoundError(f"no account named {name!r}")
            account.disabled_at = datetime.now(UTC)
            self.audit.record(session, actor=actor.name, action="account.disable",
                              details={"account_id": account.id, "name": name})

    def list(self, actor: Actor) -> list[Account]:
        require(actor, Action.ACCOUNT_ADMIN)
        with self.db.read() as session:
            return list(session.scalars(select(Account).order_by(Account.id)))

    def authenticate(self, key: str | None) -> Actor:
        """The actor an API key belongs to; AuthenticationError for anything else, in constant time."""
        match = KEY.match(key or "")
        key_id, secret = (match.group(1), match.group(2)) if match else ("", "")
        with self.db.read() as session:
            account = session.scalar(select(Account).where(Account.key_id == key_id)) if key_id else None
        expected = account.key_hash if account is not None else _DUMMY_HASH
        valid = hmac.compare_digest(expected, _digest(secret))
        if account is None or not valid or account.disabled_at is not None:
            raise AuthenticationError("invalid or missing API key")
        return Actor(name=account.name, role=Role(account.role))
