"""Append-only, hash-chained audit log, and the Merkle tree over it.

Each entry's hash is SHA-256 over a canonical JSON encoding of (seq, at, actor, action, details,
prev_hash); prev_hash is the previous entry's hash (64 zeros for the first). Editing, deleting or
reordering any row breaks the chain. Deleting rows at the end is caught by the head anchor, a file
outside the database that records the newest committed (seq, hash).

Both live in the data directory, so whoever can write it can rewrite them. What binds the log is the Merkle
tree (RFC 9162) whose leaves are the entries' hashes, in seq order: its signed checkpoints are kept outside
(see checkpoints.py). The leaf data is the 32-byte entry hash rather than the canonical encoding again: the
entry hash already commits to every field (seq and prev_hash included), is what the chain stores and what an
auditor holding an entry recomputes, so an inclusion proof starts from an entry as it is listed.

The log holds ids, counts and hashes, never templates, pixels or file paths of people's photos.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import threading
from collections.abc import Collection, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from sqlalchemy import event, select
from sqlalchemy.orm import Session

from facetrail.audit.merkle import EMPTY_ROOT, TreeBuilder, leaf_hash
from facetrail.fsutil import atomic_write, private_opener
from facetrail.store.models import AuditEntry
from facetrail.timestamps import now_iso

GENESIS = "0" * 64


class EntryFields(Protocol):
    """An entry as read: the ORM object or a plain row of ENTRY_COLUMNS."""

    @property
    def seq(self) -> int: ...
    @property
    def at(self) -> str: ...
    @property
    def actor(self) -> str: ...
    @property
    def action(self) -> str: ...
    @property
    def details(self) -> str: ...
    @property
    def prev_hash(self) -> str: ...
    @property
    def hash(self) -> str: ...


ENTRY_COLUMNS = (AuditEntry.seq, AuditEntry.at, AuditEntry.actor, AuditEntry.action, AuditEntry.details,
                 AuditEntry.prev_hash, AuditEntry.hash)


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
    root: bytes = EMPTY_ROOT
    """The Merkle tree head over every entry (their recomputed hashes)."""
    roots: dict[int, bytes] = field(default_factory=dict)
    """The tree head at each size that was asked for (and that the log reaches)."""
    frontier: list[tuple[int, bytes]] = field(default_factory=list)
    """The tree's frontier at the end (to go on from, see TreeBuilder.resume), and the last entry's hash."""
    last_hash: str = GENESIS


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

    def verify(self, session: Session, *, roots_at: Collection[int] = (),
               after: tuple[TreeBuilder, str] | None = None) -> VerifyResult:
        """Walk the chain from the first entry; report the first entry that does not hold. In the same pass,
        build the Merkle tree (RFC 9162) over the entries' recomputed hashes, in `seq` order, and keep its
        root at each size in `roots_at` and at the end.

        `after` = (the tree over the first N entries, entry N's hash) walks on from entry N + 1 only: the
        entries before are taken as that tree holds them."""
        tree, expected_prev = after or (TreeBuilder(), GENESIS)
        start = expected_seq = tree.size + 1
        broken: tuple[int, str] | None = None
        head = self.read_head()
        head_hash: str | None = None
        roots: dict[int, bytes] = {tree.size: tree.root()} if tree.size in roots_at else {}
        # Plain rows, not ORM objects: a log of a million entries is read in seconds, in constant memory.
        rows = session.execute(select(*ENTRY_COLUMNS).where(AuditEntry.seq >= start).order_by(AuditEntry.seq)
                               .execution_options(yield_per=5000))
        for row in rows:
            digest = _recomputed(row)
            tree.append(leaf_hash(bytes.fromhex(digest) if digest else row.details.encode()))
            if tree.size in roots_at:
                roots[tree.size] = tree.root()
            if broken is None:
                broken = _link_problem(row, digest, expected_seq, expected_prev)
            if head is not None and row.seq == head[0]:
                head_hash = row.hash
            expected_prev, expected_seq = row.hash, row.seq + 1
        count, root = tree.size, tree.root()
        if broken is not None:
            return VerifyResult(False, count, broken[0], broken[1], root, roots)
        if head is not None and head[0] >= start:
            seq, digest = head
            if head_hash is None:
                return VerifyResult(False, count, seq, f"entries from {seq} on are missing (log truncated)",
                                    root, roots)
            if head_hash != digest:
                return VerifyResult(False, count, seq, "entry differs from the recorded head", root, roots)
        return VerifyResult(True, count, root=root, roots=roots, frontier=tree.frontier, last_hash=expected_prev)

    def leaf_hashes(self, session: Session) -> Iterator[bytes]:
        """The Merkle leaves as stored (each entry's hash), in order, streamed: for proofs, which a verifier
        checks against a signed root anyway."""
        for digest in session.scalars(select(AuditEntry.hash).order_by(AuditEntry.seq)
                                      .execution_options(yield_per=10_000)):
            yield leaf_hash(bytes.fromhex(digest))


def _recomputed(row: EntryFields) -> str:
    """The entry's hash from its content; empty when the content cannot be read (edited)."""
    try:
        return entry_hash(seq=row.seq, at=row.at, actor=row.actor, action=row.action, details=row.details,
                          prev_hash=row.prev_hash)
    except ValueError:
        return ""


def _link_problem(row: EntryFields, digest: str, expected_seq: int, expected_prev: str) -> tuple[int, str] | None:
    if row.seq != expected_seq:
        return expected_seq, f"entry {expected_seq} is missing"
    if row.prev_hash != expected_prev:
        return row.seq, "previous-hash link broken (deleted or reordered)"
    if digest != row.hash:
        return row.seq, "content does not match its hash (edited)"
    return None
