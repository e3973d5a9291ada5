"""Offline verification of a regulator export, by the authority, without the data directory.

It checks every file against the manifest, re-computes the audit chain from the exported entries (the same
hash as audit/log.py), checks the head recorded at export time, and, given an earlier export, that this
log extends it: the earlier log is a prefix of this one, entry for entry. A chain rewritten from the start
(manifest and hashes recomputed) is caught by the last check against an export the authority kept, and by
the signed checkpoint: the Merkle root of the exported entries at the checkpoint's size must be the signed
root, and given the log's public key (which the controller handed over beforehand, not the export's copy)
the signature must verify. Without the key, the root is still compared and the signature is reported as
not checked.
"""

from __future__ import annotations

import hashlib
import io
import json
import zipfile
from dataclasses import dataclass, field
from typing import Any

from facetrail.audit.log import GENESIS, entry_hash
from facetrail.audit.merkle import leaf_hash, tree_root
from facetrail.audit.note import Verifier, open_checkpoint, parse_checkpoints
from facetrail.compliance.export import AUDIT_LOG, EXPORT, FORMAT, MANIFEST
from facetrail.errors import InvalidValueError


@dataclass(frozen=True)
class ExportCheck:
    ok: bool
    entries: int
    generated_at: str | None
    last_entry: dict[str, Any] | None
    problems: list[str] = field(default_factory=list)
    extends: bool | None = None
    checkpoint: dict[str, Any] | None = None  # size, root_matches, signature ("verified" / "not checked")

    def as_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "entries": self.entries, "generated_at": self.generated_at,
                "last_entry": self.last_entry, "extends_previous": self.extends, "checkpoint": self.checkpoint,
                "problems": self.problems}


@dataclass
class _Export:
    files: dict[str, bytes]
    document: dict[str, Any]
    entries: list[dict[str, Any]]


def _open(data: bytes, label: str) -> _Export:
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            files = {name: archive.read(name) for name in archive.namelist()}
    except zipfile.BadZipFile:
        raise InvalidValueError(label, "is not a zip archive") from None
    for name in (MANIFEST, EXPORT, AUDIT_LOG):
        if name not in files:
            raise InvalidValueError(label, f"holds no {name}: not a facetrail regulator export")
    try:
        document = json.loads(files[EXPORT])
        entries = [json.loads(line) for line in files[AUDIT_LOG].decode().splitlines() if line.strip()]
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidValueError(label, f"unreadable JSON: {exc}") from None
    if not isinstance(document, dict) or document.get("format") != FORMAT:
        raise InvalidValueError(label, f"{EXPORT} is not a {FORMAT}")
    return _Export(files, document, entries)


def _manifest_problems(export: _Export) -> list[str]:
    try:
        listed: dict[str, str] = json.loads(export.files[MANIFEST])["files"]
    except (ValueError, KeyError, TypeError):
        return [f"{MANIFEST} is unreadable"]
    problems = [f"{name} is not in the manifest" for name in export.files if name != MANIFEST and name not in listed]
    for name, digest in listed.items():
        if name not in export.files:
            problems.append(f"{name} is listed in the manifest but missing")
        elif hashlib.sha256(export.files[name]).hexdigest() != digest:
            problems.append(f"{name} does not match its SHA-256 in the manifest (altered)")
    return problems


def chain_problems(entries: list[dict[str, Any]]) -> list[str]:
    """The first entry of the exported log whose link or content does not hold, if any."""
    expected_prev, expected_seq = GENESIS, 1
    for entry in entries:
        try:
            seq, prev, digest = int(entry["seq"]), str(entry["prev_hash"]), str(entry["hash"])
            recomputed = entry_hash(seq=seq, at=entry["at"], actor=entry["actor"], action=entry["action"],
                                    details=entry["details"], prev_hash=prev)
        except (KeyError, TypeError, ValueError):
            return [f"audit entry {expected_seq} is malformed"]
        if seq != expected_seq:
            return [f"audit entry {expected_seq} is missing"]
        if prev != expected_prev:
            return [f"audit entry {seq}: previous-hash link broken (deleted or reordered)"]
        if recomputed != digest:
            return [f"audit entry {seq}: content does not match its hash (edited)"]
        expected_prev, expected_seq = digest, seq + 1
    return []


def _head_problems(export: _Export) -> list[str]:
    audit = export.document.get("audit") or {}
    problems = []
    verification = audit.get("verification") or {}
    if not verification.get("ok"):
        problems.append(f"the audit log did not verify when it was exported: {verification.get('reason', '?')} "
                        f"(entry {verification.get('first_broken_seq')})")
    by_seq = {e.get("seq"): e.get("hash") for e in export.entries}
    for name in ("head", "last_entry"):
        mark = audit.get(name)
        if mark and by_seq.get(mark.get("seq")) != mark.get("hash"):
            problems.append(f"the audit {name.replace('_', ' ')} recorded at export ({mark.get('seq')}) is not in "
                            "the exported log")
    if audit.get("entries") != len(export.entries):
        problems.append(f"{audit.get('entries')} audit entries announced, {len(export.entries)} exported")
    return problems


def _checkpoint_check(export: _Export, verifier: Verifier | None) -> tuple[dict[str, Any] | None, list[str]]:
    """The signed checkpoint the export carries against its entries: (what was checked, problems)."""
    recorded = (export.document.get("audit") or {}).get("checkpoint")
    if not recorded:
        return None, ["the export carries no signed checkpoint"] if verifier is not None else []
    try:
        size, root = int(recorded["size"]), bytes.fromhex(str(recorded["root"]))
        note = str(recorded["checkpoint"])
    except (KeyError, TypeError, ValueError):
        return None, ["the export's checkpoint is malformed"]
    problems: list[str] = []
    if size > len(export.entries):
        problems.append(f"the checkpoint covers {size} audit entries, the export holds {len(export.entries)}")
        matches = False
    else:
        leaves = (leaf_hash(bytes.fromhex(str(e.get("hash")))) for e in export.entries[:size])
        matches = tree_root(leaves) == root
        if not matches:
            problems.append(f"the Merkle root of the first {size} exported audit entries is not the checkpoint's "
                            "(the log was rewritten after it was signed)")
    signature = "not checked (no public key given)"
    if verifier is not None:
        try:
            notes = parse_checkpoints(note, "checkpoint")
            signed = open_checkpoint(*notes[0], verifier, "checkpoint")
        except InvalidValueError as exc:
            problems.append(f"the checkpoint's signature does not verify: {exc}")
            signature = "failed"
        else:
            signature = "verified"
            if (signed.size, signed.root) != (size, root):
                problems.append("the checkpoint's fields differ from its signed text")
    return {"size": size, "root_matches": matches, "signature": signature}, problems


def verify_export(data: bytes, *, previous: bytes | None = None, verifier: Verifier | None = None) -> ExportCheck:
    """Check an export offline; `verifier` (the log's public key) also checks the checkpoint's signature."""
    export = _open(data, "export")
    problems = _manifest_problems(export) + chain_problems(export.entries) + _head_problems(export)
    checkpoint, checkpoint_problems = _checkpoint_check(export, verifier)
    problems += checkpoint_problems
    extends = None
    if previous is not None:
        earlier = _open(previous, "previous export")
        extends = len(earlier.entries) <= len(export.entries) and all(
            old == new for old, new in zip(earlier.entries, export.entries, strict=False))
        if not extends:
            problems.append("this export's audit log does not extend the previous export's (an entry it held was "
                            "changed or removed)")
    last = export.entries[-1] if export.entries else None
    return ExportCheck(ok=not problems, entries=len(export.entries), generated_at=export.document.get("generated_at"),
                       last_entry=None if last is None else {"seq": last.get("seq"), "hash": last.get("hash")},
                       problems=problems, extends=extends, checkpoint=checkpoint)
