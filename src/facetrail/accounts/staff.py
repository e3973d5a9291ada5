"""Staff sign-in for the web console: passwords (argon2id), lock-out, and server-side sessions that expire.

API keys stay for programs; a person signs in with the account's name and a password set on the command line
(`facetrail user password NAME`). A password is stored only as its argon2id hash. After MAX_FAILURES wrong
passwords in a row the account is locked for LOCK_MINUTES (a right password during the lock is refused too).
A session is a random token in an HttpOnly cookie, stored only as its SHA-256; it ends after IDLE_MINUTES
without a request, after MAX_HOURS in any case, at sign-out, when the password changes, and when the account is
disabled or expires (the expiry its API key has). Every sign-in, failure, lock-out, sign-out and password change
is audited.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from facetrail.accounts.roles import Action, Actor, Role, account_action, require, require_any
from facetrail.audit.log import AuditLog
from facetrail.errors import AuthenticationError, InvalidValueError, NotFoundError
from facetrail.store.db import Database
from facetrail.store.models import Account, StaffPassword, StaffSession
from facetrail.timestamps import iso_z

MIN_PASSWORD = 12
MAX_PASSWORD = 1024
MAX_FAILURES = 5
LOCK_MINUTES = 15
IDLE_MINUTES = 30
MAX_HOURS = 12
REFUSED = "wrong account name or password"
_HASHER = PasswordHasher()
# Verified against when the account has no password, so that an unknown name costs as long as a wrong password.
# A fixed hash of a random secret that was thrown away, with the hasher's parameters (a test checks that they stay
# the same, so the verification costs what a real one does): hashing one at import took 0.1-0.3 s of every
# command's start, `facetrail serve` included. Nothing verifies as it: an account without a password is refused
# whatever `valid` says.
_DUMMY = "$argon2id$v=19$m=65536,t=3,p=4$CvkapySRUO2YAvqdbiFXxQ$6iDzCXXW3K3E2EAz/uk2XdbqwxZm4043Of5VL2eWPNc"


class SignInRefusedError(AuthenticationError):
    """A sign-in was refused; `locked_until` is set when the account is locked."""

    def __init__(self, message: str, locked_until: datetime | None = None) -> None:
        super().__init__(message)
        self.locked_until = locked_until


@dataclass(frozen=True)
class SignedIn:
    token: str
    actor: Actor
    expires_at: datetime


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _actor(account: Account) -> Actor:
    scope = frozenset(account.purposes) if account.purposes is not None else None
    return Actor(name=account.name, role=Role(account.role), purposes=scope)


def _active(account: Account, now: datetime) -> bool:
    """Not disabled, and not past the account's expiry (the one its API key has)."""
    return account.disabled_at is None and (account.expires_at is None or account.expires_at > now)


class StaffSignIn:
    def __init__(self, db: Database, audit: AuditLog, *, clock: Callable[[], datetime] = lambda: datetime.now(UTC),
                 idle: timedelta = timedelta(minutes=IDLE_MINUTES),
                 longest: timedelta = timedelta(hours=MAX_HOURS)) -> None:
        self.db = db
        self.audit = audit
        self.clock = clock
        self.idle = idle
        self.longest = longest

    def set_password(self, actor: Actor, name: str, password: str) -> None:
        """Set (or replace) an account's console password; the account's open sessions end."""
        require_any(actor, Action.ACCOUNT_ADMIN, Action.OVERSIGHT_ACCOUNTS)
        if not MIN_PASSWORD <= len(password) <= MAX_PASSWORD:
            raise InvalidValueError("password", f"use {MIN_PASSWORD} to {MAX_PASSWORD} characters")
        if password.strip() != password or len(set(password)) < 4:
            raise InvalidValueError("password", "no spaces at either end, and at least 4 different characters")
        hashed = _HASHER.hash(password)
        with self.db.write() as session, session.begin():
            account = session.scalar(select(Account).where(Account.name == name))
            if account is None:
                raise NotFoundError(f"no account named {name!r}")
            require(actor, account_action(Role(account.role)))
            row = session.get(StaffPassword, account.id)
            if row is None:
                session.add(StaffPassword(account_id=account.id, password_hash=hashed, set_at=self.clock(),
                                          failures=0))
            else:
                row.password_hash, row.set_at, row.failures, row.locked_until = hashed, self.clock(), 0, None
            ended = list(session.scalars(select(StaffSession).where(StaffSession.account_id == account.id)))
            for open_session in ended:
                session.delete(open_session)
            self.audit.record(session, actor=actor.name, action="account.password",
                              details={"account_id": account.id, "name": name, "sessions_ended": len(ended)})

    def sign_in(self, name: str, password: str, *, ip: str) -> SignedIn:
        """A new session for the account, or SignInRefusedError (the same words for every wrong guess).
        A refusal is raised once its audit entry and the failure count are written."""
        now = self.clock()
        with self.db.write() as session, session.begin():
            account = session.scalar(select(Account).where(Account.name == name)) if name else None
            row = session.get(StaffPassword, account.id) if account is not None else None
            valid = self._matches(row.password_hash if row else _DUMMY, password)
            refusal = self._refusal(session, account, row, valid, now, {"name": name[:100], "ip": ip})
            if refusal is None and account is not None and row is not None:
                row.failures, row.locked_until = 0, None
                if _HASHER.check_needs_rehash(row.password_hash):
                    row.password_hash = _HASHER.hash(password)
                session.execute(delete(StaffSession).where(StaffSession.expires_at <= now))  # those never ended
                token = secrets.token_urlsafe(32)
                expires = now + self.idle
                session.add(StaffSession(token_hash=_digest(token), account_id=account.id, created_at=now,
                                         last_seen_at=now, expires_at=expires))
                self.audit.record(session, actor=account.name, action="console.signin",
                                  details={"account_id": account.id, "role": account.role, "ip": ip})
                return SignedIn(token, _actor(account), expires)
        raise refusal or SignInRefusedError(REFUSED)

    def _refusal(self, session: Session, account: Account | None, row: StaffPassword | None, valid: bool,
                 now: datetime, base: dict[str, Any]) -> SignInRefusedError | None:
        """Why this sign-in is refused (audited, and counted towards the lock-out), or None."""
        def failed(reason: str, **more: Any) -> None:
            self.audit.record(session, actor="anonymous", action="console.signin_failed",
                              details={**base, "reason": reason, **more})

        if account is None or row is None or not _active(account, now):
            failed("unknown-account" if account is None else "no-password" if row is None
                   else "disabled" if account.disabled_at is not None else "expired")
            return SignInRefusedError(REFUSED)
        if row.locked_until is not None and row.locked_until > now:
            failed("locked", locked_until=iso_z(row.locked_until))
            return SignInRefusedError(self._locked_words(row.locked_until), row.locked_until)
        if valid:
            return None
        row.failures += 1
        failed("wrong-password", failures=row.failures)
        if row.failures < MAX_FAILURES:
            return SignInRefusedError(REFUSED)
        row.locked_until = now + timedelta(minutes=LOCK_MINUTES)
        row.failures = 0
        self.audit.record(session, actor="anonymous", action="console.locked",
                          details={**base, "account_id": account.id, "locked_until": iso_z(row.locked_until)})
        return SignInRefusedError(self._locked_words(row.locked_until), row.locked_until)

    @staticmethod
    def _matches(hashed: str, password: str) -> bool:
        try:
            return bool(_HASHER.verify(hashed, password[:MAX_PASSWORD]))
        except (VerificationError, InvalidHashError):
            return False

    @staticmethod
    def _locked_words(until: datetime) -> str:
        return (f"too many wrong passwords: this account is locked until {until:%H:%M} UTC; "
                "ask an operator if you need it sooner")

    def actor_of(self, token: str) -> Actor | None:
        """The actor of a live session (its idle clock restarts), or None: unknown, expired or account disabled."""
        if not token:
            return None
        now = self.clock()
        with self.db.write() as session, session.begin():
            row = session.get(StaffSession, _digest(token))
            if row is None:
                return None
            account = session.get(Account, row.account_id)
            if row.expires_at <= now or account is None or not _active(account, now):
                session.delete(row)
                return None
            row.last_seen_at = now
            row.expires_at = min(now + self.idle, row.created_at + self.longest)
            return _actor(account)

    def sign_out(self, token: str) -> None:
        with self.db.write() as session, session.begin():
            row = session.get(StaffSession, _digest(token)) if token else None
            if row is None:
                return
            account = session.get(Account, row.account_id)
            session.delete(row)
            self.audit.record(session, actor=account.name if account else "anonymous", action="console.signout",
                              details={"account_id": row.account_id})
