"""Append-only, hash-chained audit log.

Each entry's hash is SHA-256 over a canonical JSON encoding of (seq, at, actor, action, details,
prev_hash); prev_hash is the previous entry's hash (64 zeros for the first). Editing, deleting or
reordering any row breaks the chain. Deleting rows at the end is caught by the head anchor, a file
outside the database that records the newest committed (seq, hash).

The log holds ids, counts and hashes, never templates, pixels or file paths of people's photos.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import event, select
from sqlalchemy.orm import Session

from facetrail.fsutil import atomic_write, private_opener
from facetrail.store.models import AuditEntry
from facetrail.timestamps import now_iso

GENESIS = "0" * 64


def canonical(value: Any) -> str:
    """The one JSON encoding that hashes are computed over."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def entry_hash(*, seq: int, at: str, actor: str, action: str, details: str, prev_hash: str) -> str:
    payload = canonical({"seq": seq, "at": at, "actor": actor, "action": action,
                         "details": json.loads(details), "prev_hash": prev_hash})
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class VerifyResult:
    ok: bool
    entries: int
    first_broken_seq: int | None = None
    reason: str = ""


class AuditLog:
    """Appends entries inside the caller's transaction and verifies the whole chain."""

    def __init__(self, head_path: Path) -> None:
        self.head_path = head_path
        self._head_lock = threading.Lock()

    def record(self, session: Session, *, actor: str, action: str, details: dict[str, Any]) -> AuditEntry:
        """Append one entry in `session`'s (write) transaction; the head anchor follows the commit."""
        last = session.scalar(select(AuditEntry).order_by(AuditEntry.seq.desc()).limit(1))
        seq = 1 if last is None else last.seq + 1
        prev = GENESIS if last is None else last.hash
        at = now_iso(precise=True)
        text = canonical(details)
        entry = AuditEntry(seq=seq, at=at, actor=actor, action=action, details=text, prev_hash=prev,
                           hash=entry_hash(seq=seq, at=at, actor=actor, action=action, details=text,
                                           prev_hash=prev))
        session.add(entry)
        session.flush()
        event.listen(session, "after_commit", lambda _s: self._write_head(seq, entry.hash), once=True)
        return entry

    def _write_head(self, seq: int, digest: str) -> None:
        """Move the anchor forward, never back: commits of several threads and processes can finish in any
        order, so the read-compare-write is serialised (a thread lock, and a file lock across processes)."""
        with self._head_lock, open(self.head_path.with_name(self.head_path.name + ".lock"), "a+",
                                     opener=private_opener) as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            current = self.read_head()
            if current is None or current[0] < seq:
                atomic_write(self.head_path, f"{seq} {digest}\n".encode())

    def read_head(self) -> tuple[int, str] | None:
        try:
            seq_text, digest = self.head_path.read_text().split()
            return int(seq_text), digest
        except (OSError, ValueError):
            return None

    def verify(self, session: Session) -> VerifyResult:
        """Walk the chain from the first entry; report the first entry that does not hold."""
        expected_prev, expected_seq, count = GENESIS, 1, 0
        hashes: dict[int, str] = {}
        for row in session.scalars(select(AuditEntry).order_by(AuditEntry.seq)):
            count += 1
            if row.seq != expected_seq:
                return VerifyResult(False, count, expected_seq, f"entry {expected_seq} is missing")
            if row.prev_hash != expected_prev:
                return VerifyResult(False, count, row.seq, "previous-hash link broken (deleted or reordered)")
            try:
                digest = entry_hash(seq=row.seq, at=row.at, actor=row.actor, action=row.action,
                                    details=row.details, prev_hash=row.prev_hash)
            except ValueError:
                digest = ""
            if digest != row.hash:
                return VerifyResult(False, count, row.seq, "content does not match its hash (edited)")
            hashes[row.seq] = row.hash
            expected_prev, expected_seq = row.hash, row.seq + 1
        head = self.read_head()
        if head is not None:
            seq, digest = head
            if seq not in hashes:
                return VerifyResult(False, count, seq, f"entries from {seq} on are missing (log truncated)")
            if hashes[seq] != digest:
                return VerifyResult(False, count, seq, "entry differs from the recorded head")
        return VerifyResult(True, count)
