"""Signed checkpoints of the audit log, and what they prove.

A checkpoint is the Merkle tree head (RFC 9162) over the first N entries, signed under a key kept outside the
data directory. Whoever keeps a copy of it (the DPO, an auditor, the regulator) can later check that today's log
extends it: that its first N entries still hash to that root. An insider with the whole data directory cannot
edit, remove, reorder or truncate any of those entries, recompute every hash and still meet the signed root.

Copies are also kept in `<data>/audit-checkpoints/` for the record, and the server refuses to sign a log that
no longer extends the newest of them; but those copies are the insider's to delete: only copies kept elsewhere
bind.
"""

from __future__ import annotations

import itertools
import json
import logging
import os
import shlex
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import select

from facetrail.audit import merkle
from facetrail.audit.log import GENESIS, AuditLog, VerifyResult, entry_hash
from facetrail.audit.note import (
    Checkpoint,
    CheckpointSigner,
    Verifier,
    open_checkpoint,
    parse_checkpoints,
    sign_checkpoint,
)
from facetrail.audit.signing import verifier_of
from facetrail.errors import AuditChainError, FacetrailError, InvalidValueError, KeyUnavailableError, NotFoundError
from facetrail.fsutil import atomic_write, fsync_dir
from facetrail.store.db import Database
from facetrail.store.models import AuditEntry

log = logging.getLogger(__name__)
NO_KEY = ("no audit signing key is configured (FACETRAIL_AUDIT_SIGNING_KEY_FILE, FACETRAIL_AUDIT_SIGNING_KEY, "
          "or a KMS hook that signs): no checkpoint can be made, and the log binds no one but its chain")


@dataclass(frozen=True)
class CheckpointCheck:
    """One kept checkpoint against today's log."""

    checkpoint: Checkpoint
    ok: bool
    reason: str
    consistency: list[bytes]
    """PROOF(checkpoint size, today's tree), verified, when the log extends the checkpoint."""


@dataclass(frozen=True)
class AgainstResult:
    chain: VerifyResult
    checks: list[CheckpointCheck]

    @property
    def ok(self) -> bool:
        return self.chain.ok and all(c.ok for c in self.checks)


@dataclass(frozen=True)
class InclusionProof:
    seq: int
    size: int
    entry: dict[str, Any]
    path: list[bytes]
    root: bytes
    checkpoint: str | None
    """The signed checkpoint of that size, when one is kept here."""

    def as_dict(self) -> dict[str, Any]:
        return {"seq": self.seq, "tree_size": self.size, "leaf_index": self.seq - 1, "entry": self.entry,
                "audit_path": [p.hex() for p in self.path], "root": self.root.hex(),
                "checkpoint": self.checkpoint}


@dataclass(frozen=True)
class ConsistencyProof:
    first: int
    second: int
    first_root: bytes
    second_root: bytes
    proof: list[bytes]

    def as_dict(self) -> dict[str, Any]:
        return {"first": self.first, "second": self.second, "first_root": self.first_root.hex(),
                "second_root": self.second_root.hex(), "proof": [p.hex() for p in self.proof]}


def verify_checkpoint(text: str, verifier: Verifier, origin: str = "checkpoint") -> list[Checkpoint]:
    """The checkpoints in `text` (one, or several appended), each with its signature by `verifier` checked;
    raises InvalidValueError naming `origin` otherwise."""
    return [open_checkpoint(body, sigs, verifier, origin) for body, sigs in parse_checkpoints(text, origin)]


def entry_fields(row: AuditEntry) -> dict[str, Any]:
    return {"seq": row.seq, "at": row.at, "actor": row.actor, "action": row.action, "details": row.details,
            "prev_hash": row.prev_hash, "hash": row.hash}


def check_inclusion(proof: dict[str, Any], checkpoint: Checkpoint) -> str | None:
    """Check an inclusion proof (as `InclusionProof.as_dict` writes it) against a verified checkpoint, from the
    entry's own fields: None when it holds, else why not."""
    try:
        entry = proof["entry"]
        seq, size = int(proof["seq"]), int(proof["tree_size"])
        digest = entry_hash(seq=int(entry["seq"]), at=entry["at"], actor=entry["actor"], action=entry["action"],
                            details=entry["details"], prev_hash=entry["prev_hash"])
        path = [bytes.fromhex(p) for p in proof["audit_path"]]
    except (KeyError, TypeError, ValueError) as exc:
        return f"not an inclusion proof: {exc}"
    if int(entry["seq"]) != seq:
        return f"the proof is for entry {seq} but holds entry {entry['seq']}"
    if size != checkpoint.size:
        return f"the proof is for a tree of {size} entries, the checkpoint covers {checkpoint.size}"
    if not merkle.verify_inclusion(merkle.leaf_hash(bytes.fromhex(digest)), seq - 1, size, path, checkpoint.root):
        return f"entry {seq} as given is not in the checkpoint's tree (the entry or its proof was altered)"
    return None


class CheckpointService:
    """Makes, keeps and checks the log's checkpoints."""

    def __init__(self, db: Database, audit: AuditLog, directory: Path,
                 load_signer: Callable[[], CheckpointSigner | None], *, archives: Path) -> None:
        self.db = db
        self.audit = audit
        self.directory = directory
        self.archives = archives
        """Where a restore keeps the entries newer than its backup (`restore-<time>.jsonl`)."""
        self._load_signer = load_signer
        self._signer: CheckpointSigner | None = None

    def signer(self) -> CheckpointSigner | None:
        if self._signer is None:
            self._signer = self._load_signer()
        return self._signer

    def verifier(self) -> Verifier | None:
        signer = self.signer()
        return None if signer is None else verifier_of(signer)

    def emit(self, actor_name: str, *, reason: str, unless_unchanged: bool = False,
             whole_log: bool = True) -> Checkpoint | None:
        """Sign the tree head over every entry, keep a copy here and audit it. Refused when the chain is broken
        or the log no longer extends the newest checkpoint kept here. With `unless_unchanged`, nothing is signed
        (None) when the only entry since that checkpoint is its own record.

        `whole_log=False` (after an erasure or an order, where time counts) hashes only the entries since the
        newest checkpoint kept here, going on from its saved frontier (checked against its signed root): an
        edit to entries that checkpoint covers is then left to `verify --against`, which recomputes all."""
        signer = self.signer()
        if signer is None:
            raise KeyUnavailableError(NO_KEY)
        previous = self._latest(verifier_of(signer))
        after = None if whole_log or previous is None else self._frontier(previous)
        # A read snapshot, so that writers are not held up while a large log is hashed: the checkpoint covers
        # the entries of that snapshot, a prefix of the log by the time it is signed.
        with self.db.read() as session:
            result = self.audit.verify(session, roots_at={previous.size} if previous else (), after=after)
        if not result.ok:
            raise AuditChainError(f"the audit log is broken at entry {result.first_broken_seq} "
                                  f"({result.reason}): no checkpoint is signed over it")
        if previous is not None and result.roots.get(previous.size) != previous.root:
            raise AuditChainError(f"the log no longer extends the checkpoint of {previous.size} entries made "
                                  f"{previous.time}: no checkpoint is signed over it")
        if unless_unchanged and previous is not None and result.entries <= previous.size + 1:
            return None
        now = datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
        checkpoint = sign_checkpoint(signer, size=result.entries, root=result.root, time=now)
        with self.db.write() as session, session.begin():
            self.directory.mkdir(mode=0o700, exist_ok=True)
            atomic_write(self.directory / f"{checkpoint.size:012d}.checkpoint", checkpoint.text.encode())
            frontier = self.directory / f"{checkpoint.size:012d}.frontier"
            atomic_write(frontier, json.dumps({
                "size": checkpoint.size, "last_hash": result.last_hash,
                "frontier": [[width, digest.hex()] for width, digest in result.frontier]}).encode())
            self.audit.record(session, actor=actor_name, action="audit.checkpoint", details={
                "size": checkpoint.size, "root": checkpoint.root.hex(), "reason": reason,
                "key": f"{signer.name}+{verifier_of(signer).key_id.hex()}"})
        for older in self.directory.glob("*.frontier"):  # only the newest is ever gone on from
            if older != frontier:
                older.unlink(missing_ok=True)
        return checkpoint

    def _frontier(self, checkpoint: Checkpoint) -> tuple[merkle.TreeBuilder, str] | None:
        """The saved frontier of a kept checkpoint, if it still gives that checkpoint's signed root."""
        try:
            saved = json.loads((self.directory / f"{checkpoint.size:012d}.frontier").read_text())
            tree = merkle.TreeBuilder.resume([(int(w), bytes.fromhex(h)) for w, h in saved["frontier"]])
            last_hash = str(saved["last_hash"])
        except (OSError, ValueError, KeyError, TypeError):
            return None
        if tree.size != checkpoint.size or tree.root() != checkpoint.root:
            log.warning("the saved frontier of checkpoint %d does not give its root; the whole log is hashed",
                        checkpoint.size)
            return None
        return tree, last_hash

    def maybe_emit(self, actor_name: str, *, reason: str, push_command: str | None = None,
                   scheduled: bool = False) -> Checkpoint | None:
        """`emit` for the server's own occasions (schedule, after an erasure or an order): never raises, since
        the work it follows is done; says in the log why no checkpoint was made."""
        try:
            if self.signer() is None:
                log.warning("audit checkpoint (%s) skipped: %s", reason, NO_KEY)
                return None
            checkpoint = self.emit(actor_name, reason=reason, unless_unchanged=scheduled, whole_log=scheduled)
            if checkpoint is not None and push_command:
                push(checkpoint, push_command)
            return checkpoint
        except Exception:
            log.exception("audit checkpoint (%s) failed", reason)
            return None

    def chain_only_warning(self) -> str:
        """What a verification of the chain alone (without --against) does not prove, said plainly."""
        try:
            signer = self.signer()
        except FacetrailError as exc:
            return f"the audit signing key cannot be loaded ({exc}): no checkpoint can be made"
        if signer is None:
            return NO_KEY
        return ("the chain alone does not bind whoever can write the data directory: verify --against a "
                "checkpoint kept outside it")

    def latest_checkpoint(self) -> str | None:
        """The newest checkpoint kept in the data directory, as signed text (not verified here)."""
        files = self._files()
        return files[-1].read_text() if files else None

    def _files(self) -> list[Path]:
        return sorted(self.directory.glob("*.checkpoint")) if self.directory.is_dir() else []

    def _latest(self, verifier: Verifier) -> Checkpoint | None:
        """The newest checkpoint kept here that `verifier` signed (one altered in place does not count)."""
        for path in reversed(self._files()):
            try:
                return verify_checkpoint(path.read_text(), verifier, str(path))[-1]
            except (InvalidValueError, OSError):
                log.warning("kept audit checkpoint %s does not verify with the current key; skipped", path.name)
        return None

    def latest_verified(self) -> Checkpoint:
        verifier = self.verifier()
        if verifier is None:
            raise NotFoundError(f"no checkpoint: {NO_KEY}")
        checkpoint = self._latest(verifier)
        if checkpoint is None:
            raise NotFoundError("no audit checkpoint has been made yet (facetrail audit checkpoint)")
        return checkpoint

    def verify_against(self, text: str, verifier: Verifier, origin: str) -> AgainstResult:
        """Check each checkpoint in `text` (signature first), then that today's log extends it."""
        checkpoints = verify_checkpoint(text, verifier, origin)
        with self.db.read() as session:
            chain = self.audit.verify(session, roots_at={c.size for c in checkpoints})
        checks = []
        for checkpoint in checkpoints:
            root = chain.roots.get(checkpoint.size)
            if root is None:
                checks.append(CheckpointCheck(checkpoint, False, f"the log has {chain.entries} entries, fewer than "
                                              f"the {checkpoint.size} the checkpoint covers (truncated, or an "
                                              "older copy)", []))
            elif root != checkpoint.root:
                checks.append(CheckpointCheck(checkpoint, False, f"the first {checkpoint.size} entries do not hash "
                                              "to the checkpoint's root: an entry it covers was edited, removed, "
                                              "reordered or replaced", []))
            else:
                checks.append(self._consistent(checkpoint, chain))
                continue
            if chain.ok:
                checks[-1] = self._in_archive(checkpoint) or checks[-1]
        return AgainstResult(chain, checks)

    def _in_archive(self, checkpoint: Checkpoint) -> CheckpointCheck | None:
        """A restore rewound the log to a backup and kept the newer entries in an archive: the checkpoint holds
        when the live entries before the archive, then the archive's, have its root."""
        for path in sorted(self.archives.glob("restore-*.jsonl")) if self.archives.is_dir() else []:
            try:
                entries = [json.loads(line) for line in path.read_text().splitlines() if line]
                root = self._archived_root(entries, checkpoint.size)
            except (OSError, ValueError, KeyError, TypeError):
                continue
            if root == checkpoint.root:
                return CheckpointCheck(checkpoint, True, f"a restore rewound the live log to {entries[0]['seq'] - 1} "
                                       f"entries; the ones after it that the checkpoint covers are in {path.name}, "
                                       "and they match it", [])
        return None

    def _archived_root(self, entries: list[dict[str, Any]], size: int) -> bytes | None:
        tree, prev = merkle.TreeBuilder(), GENESIS
        start = int(entries[0]["seq"]) - 1 if entries else 0
        with self.db.read() as session:
            for digest in session.scalars(select(AuditEntry.hash).where(AuditEntry.seq <= start)
                                          .order_by(AuditEntry.seq).execution_options(yield_per=10_000)):
                tree.append(merkle.leaf_hash(bytes.fromhex(digest)))
                prev = digest
        if tree.size != start:
            return None
        for entry in entries:
            if tree.size == size:
                break
            digest = entry_hash(seq=int(entry["seq"]), at=entry["at"], actor=entry["actor"], action=entry["action"],
                                details=entry["details"], prev_hash=entry["prev_hash"])
            if digest != entry["hash"] or entry["prev_hash"] != prev or int(entry["seq"]) != tree.size + 1:
                return None
            tree.append(merkle.leaf_hash(bytes.fromhex(digest)))
            prev = digest
        return tree.root() if tree.size == size else None

    def _consistent(self, checkpoint: Checkpoint, chain: VerifyResult) -> CheckpointCheck:
        with self.db.read() as session:
            proof = merkle.consistency_proof(self.audit.leaf_hashes(session), checkpoint.size, chain.entries)
        if not merkle.verify_consistency(checkpoint.size, chain.entries, checkpoint.root, chain.root, proof):
            return CheckpointCheck(checkpoint, False, "the stored entry hashes differ from their content", proof)
        return CheckpointCheck(checkpoint, True, f"the log extends it ({checkpoint.size} -> {chain.entries} "
                               "entries)", proof)

    def inclusion(self, seq: int, size: int | None = None) -> InclusionProof:
        """PATH for entry `seq` in the tree of `size` entries (default: the newest checkpoint kept here when it
        covers the entry, else the whole log, with no checkpoint to lead to yet)."""
        verifier = self.verifier()
        newest = self._latest(verifier) if verifier else None
        with self.db.read() as session:
            total = session.scalar(select(AuditEntry.seq).order_by(AuditEntry.seq.desc()).limit(1)) or 0
            if not 1 <= seq <= total:
                raise InvalidValueError("seq", f"the log has {total} entries; there is no entry {seq}")
            if size is None:
                size = newest.size if newest and newest.size >= seq else total
            if not 1 <= size <= total:
                raise InvalidValueError("size", f"the log has {total} entries; a tree of {size} is not in it")
            if not 1 <= seq <= size:
                raise InvalidValueError("seq", f"entry {seq} is not in the tree of {size} entries")
            row = session.get(AuditEntry, seq)
            if row is None:
                raise NotFoundError(f"audit entry {seq} does not exist")
            path = merkle.inclusion_proof(self.audit.leaf_hashes(session), seq - 1, size)
            root = merkle.root_from_inclusion(merkle.leaf_hash(bytes.fromhex(row.hash)), seq - 1, size, path)
            assert root is not None  # the path was just built for this index and size
            entry = entry_fields(row)
        checkpoint = self._kept(size, verifier) if verifier else None
        return InclusionProof(seq, size, entry, path, root, checkpoint.text if checkpoint else None)

    def consistency(self, first: int, second: int) -> ConsistencyProof:
        with self.db.read() as session:
            total = session.scalar(select(AuditEntry.seq).order_by(AuditEntry.seq.desc()).limit(1)) or 0
            if not 0 <= first <= second <= total:
                raise InvalidValueError("second", f"need 0 <= first <= second <= {total} (the log's entries)")
            proof = merkle.consistency_proof(self.audit.leaf_hashes(session), first, second)
            first_root = merkle.tree_root(_take(self.audit.leaf_hashes(session), first))
            second_root = merkle.tree_root(_take(self.audit.leaf_hashes(session), second))
        return ConsistencyProof(first, second, first_root, second_root, proof)

    def _kept(self, size: int, verifier: Verifier) -> Checkpoint | None:
        """The checkpoint of `size` entries kept here, if `verifier` signed it."""
        path = self.directory / f"{size:012d}.checkpoint"
        try:
            return verify_checkpoint(path.read_text(), verifier, str(path))[-1]
        except (InvalidValueError, OSError):
            return None


def _take(leaves: Iterator[bytes], n: int) -> Iterator[bytes]:
    return itertools.islice(leaves, n)


def set_aside(directory: Path, after_size: int, into: Path) -> list[str]:
    """Move the kept checkpoints that cover more than `after_size` entries into `into` (a restore rewinds the
    log to a backup of `after_size` entries: they no longer hold for the live log, and the server must not
    refuse to sign it for their sake). Returns their file names."""
    moved = []
    for path in sorted(directory.glob("[0-9]*.*")) if directory.is_dir() else []:
        if path.stem.isdigit() and int(path.stem) > after_size:
            into.mkdir(parents=True, exist_ok=True, mode=0o700)
            os.replace(path, into / path.name)
            moved.append(path.name)
    if moved:
        fsync_dir(into)
        fsync_dir(directory)
    return moved


def push(checkpoint: Checkpoint, command: str) -> None:
    """Pipe the checkpoint to an operator's command (e.g. `logger -t facetrail`, or ssh to another host)."""
    try:
        done = subprocess.run(shlex.split(command), input=checkpoint.text.encode(), capture_output=True,
                              timeout=60, check=False)
    except (OSError, ValueError, subprocess.TimeoutExpired) as exc:
        raise InvalidValueError("push_command", f"{command!r} could not run: {exc}") from None
    if done.returncode != 0:
        raise InvalidValueError("push_command", f"{command!r} exited {done.returncode}: "
                                f"{done.stderr.decode(errors='replace').strip()[:300]}")


def append(checkpoint: Checkpoint, path: Path) -> None:
    """Append the checkpoint to a file (a blank line between checkpoints)."""
    with open(path, "a", encoding="utf-8") as out:
        out.write(checkpoint.text + "\n")


def against_report(result: AgainstResult) -> dict[str, Any]:
    return {"ok": result.ok, "entries": result.chain.entries, "root": result.chain.root.hex(),
            "chain": {"ok": result.chain.ok, "first_broken_seq": result.chain.first_broken_seq,
                      "reason": result.chain.reason},
            "checkpoints": [{"size": c.checkpoint.size, "root": c.checkpoint.root.hex(), "time": c.checkpoint.time,
                             "ok": c.ok, "reason": c.reason, "consistency": [p.hex() for p in c.consistency]}
                            for c in result.checks]}

