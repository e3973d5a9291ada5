"""Authorisation failures into the audit log: every 403, and every 401 without letting anyone grow the log.

403 (an account asked for what its role or its key's purposes do not allow): one `auth.denied` entry each,
under the account's name, with its role, the method, the route, the client address and the refusal.

401 (no key, or a key that is not valid): `auth.failed` entries under the name `anonymous`, with the client
address, the method, the route, the reason (missing, malformed, unknown-key, wrong-secret, disabled,
expired), the key's public id when the key parsed (never its secret) and the account that id names, if any.
Anyone can cause a 401, so they count against the per-address rate limit before they get here
(ratelimit.PerAddressLimit), and identical ones (same address, method, route, reason and key id) within a
minute of the first are written once: the first at once with `count` 1; then, once its minute is over
(noticed at a later 401, or when the server stops), one more entry with the `count` of the repeats and
`repeat_of` the first entry's seq, if there were any repeats. Routes are logged as their templates
(/v1/requests/{request_id}), never with the values in the path.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from fastapi import Request

from facetrail.accounts.roles import Actor
from facetrail.accounts.service import KeyRefusedError
from facetrail.audit.log import AuditLog
from facetrail.errors import AuthenticationError, FacetrailError, PermissionDeniedError
from facetrail.store.db import Database

ANONYMOUS = "anonymous"
WINDOW_SECONDS = 60.0

_Identity = tuple[str, str, str, str, str]


@dataclass
class _Window:
    opened: float
    details: dict[str, Any]
    seq: int | None = None
    repeats: int = 0


class DenialLog:
    """Writes `auth.denied` and `auth.failed` entries; thread-safe (the handler calls it in a thread pool)."""

    def __init__(self, db: Database, audit: AuditLog, *, window: float = WINDOW_SECONDS,
                 clock: Callable[[], float] = time.monotonic, max_windows: int = 10_000) -> None:
        self.db = db
        self.audit = audit
        self.window = window
        self.clock = clock
        self.max_windows = max_windows
        self._windows: OrderedDict[_Identity, _Window] = OrderedDict()
        self._lock = threading.Lock()

    def record(self, request: Request, exc: FacetrailError) -> None:
        """Log the refusal that `exc` (an AuthenticationError or a PermissionDeniedError) caused."""
        route = getattr(request.scope.get("route"), "path", None) or "(no route)"
        address = request.client.host if request.client else "unknown"
        if isinstance(exc, AuthenticationError):
            refused = exc if isinstance(exc, KeyRefusedError) else None
            self.failed(address=address, method=request.method, route=route,
                        reason=refused.reason if refused else "invalid",
                        key_id=refused.key_id if refused else None, account=refused.account if refused else None)
        elif isinstance(exc, PermissionDeniedError):
            actor = getattr(request.state, "actor", None)
            self.denied(actor if isinstance(actor, Actor) else None, address=address, method=request.method,
                        route=route, message=str(exc))

    def denied(self, actor: Actor | None, *, address: str, method: str, route: str, message: str) -> None:
        name = actor.name if actor else ANONYMOUS
        details = {"account": name, "role": actor.role.value if actor else None, "method": method, "route": route,
                   "ip": address, "message": message}
        self._write([(name, "auth.denied", details)])

    def failed(self, *, address: str, method: str, route: str, reason: str, key_id: str | None = None,
               account: str | None = None) -> None:
        identity: _Identity = (address, method, route, reason, key_id or "")
        with self._lock:
            now = self.clock()
            due = self._close_windows(now)
            window = self._windows.get(identity)
            if window is not None:
                window.repeats += 1
                first = None
            else:
                details: dict[str, Any] = {"ip": address, "method": method, "route": route, "reason": reason}
                if key_id:
                    details["key_id"] = key_id
                if account:
                    details["account"] = account
                window = self._windows[identity] = _Window(now, details)
                while len(self._windows) > self.max_windows:
                    due.append(self._windows.popitem(last=False)[1])
                first = window
        entries = [(ANONYMOUS, "auth.failed", self._summary(w)) for w in due if w.repeats]
        if first is not None:
            entries.append((ANONYMOUS, "auth.failed", {**first.details, "count": 1}))
        seqs = self._write(entries)
        if first is not None and seqs:
            first.seq = seqs[-1]

    def flush(self, *, everything: bool = False) -> int:
        """Write the repeat counts of the minutes that are over (of every minute, when the server stops);
        the number of entries written."""
        with self._lock:
            due = self._close_windows(float("inf") if everything else self.clock())
        entries = [(ANONYMOUS, "auth.failed", self._summary(w)) for w in due if w.repeats]
        self._write(entries)
        return len(entries)

    def _close_windows(self, now: float) -> list[_Window]:
        """Take the windows whose minute is over out of the table (call with the lock held)."""
        due = []
        while self._windows:
            identity, window = next(iter(self._windows.items()))
            if now - window.opened < self.window:
                break  # opened in order: every later one is younger
            due.append(window)
            del self._windows[identity]
        return due

    def _summary(self, window: _Window) -> dict[str, Any]:
        return {**window.details, "count": window.repeats, "repeat_of": window.seq,
                "within_seconds": int(self.window)}

    def _write(self, entries: list[tuple[str, str, dict[str, Any]]]) -> list[int]:
        if not entries:
            return []
        with self.db.write() as session, session.begin():
            return [self.audit.record(session, actor=actor, action=action, details=details).seq
                    for actor, action, details in entries]
