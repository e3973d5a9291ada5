"""The regulator export: one zip that answers a supervisory authority, built from one snapshot of the store.

    manifest.json             the SHA-256 of every other file
    export.json               every part as data (schema: compliance/schemas/regulator-export.schema.json)
    audit-log.jsonl           every audit entry, as stored, so the chain can be re-verified offline
    record-of-processing.md/.html, dpia.md/.html   the same documents for people

It holds no template, crop or image: ids, counts, hashes and the registry only. The audit part carries the
chain's verification at export time, its head (seq, hash) and the newest signed checkpoint kept in the data
directory (audit/checkpoints.py): `facetrail export verify` recomputes the Merkle root of the exported entries
at the checkpoint's size and, given the log's public key, checks its signature. A later export extends this
one when its log holds the same entries (`facetrail export verify NEW.zip --extends OLD.zip`).
"""

from __future__ import annotations

import hashlib
import io
import json
import zipfile
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session, selectinload

from facetrail import __version__
from facetrail.audit.log import AuditLog
from facetrail.audit.note import Checkpoint
from facetrail.compliance import dpia, ropa
from facetrail.compliance.benchmarks import Benchmark
from facetrail.compliance.document import Format, render
from facetrail.compliance.facts import Facts
from facetrail.compliance.retention import last_purge_entry
from facetrail.compliance.stats import request_statistics
from facetrail.compliance.views import breach_view
from facetrail.policy.legal import ART9_DESCRIPTIONS, Art9Condition
from facetrail.store.models import AuditEntry, Breach, Source, StoredImage
from facetrail.timestamps import iso_z_or_none

SCHEMA = Path(__file__).with_name("schemas") / "regulator-export.schema.json"
"""The JSON Schema of export.json, shipped with the package."""
FORMAT = "facetrail-regulator-export"
VERSION = 1
MANIFEST = "manifest.json"
EXPORT = "export.json"
AUDIT_LOG = "audit-log.jsonl"
PURGE_NEVER = "retention has not been enforced yet (the server runs it hourly; `facetrail retention run`)"


@dataclass(frozen=True)
class ExportResult:
    data: bytes
    summary: dict[str, Any]


def audit_line(entry: AuditEntry) -> dict[str, Any]:
    """An entry exactly as hashed: `details` stays the stored canonical JSON text."""
    return {"seq": entry.seq, "at": entry.at, "actor": entry.actor, "action": entry.action, "details": entry.details,
            "prev_hash": entry.prev_hash, "hash": entry.hash}


def _sources(session: Session, facts: Facts) -> list[dict[str, Any]]:
    counts = {s.id: s for s in facts.sources}
    result = []
    for source in session.scalars(select(Source).order_by(Source.id)):
        known = counts.get(source.id)
        result.append({
            "id": source.id, "name": source.name, "controller": source.controller, "purposes": source.purposes,
            "legal_basis": source.legal_basis, "art9_condition": source.art9_condition,
            "art9_description": ART9_DESCRIPTIONS[Art9Condition(source.art9_condition)],
            "evidence_ref": source.evidence_ref, "jurisdictions": source.jurisdictions,
            "retention_days": source.retention_days, "description": source.description,
            "created_at": iso_z_or_none(source.created_at), "created_by": source.created_by,
            "images": known.images if known else 0, "faces": known.faces if known else 0,
        })
    return result


def _retention(session: Session, facts: Facts) -> dict[str, Any]:
    rows = []
    for s in facts.sources:
        expired = session.scalar(select(func.count()).select_from(StoredImage).where(
            StoredImage.source_id == s.id,
            StoredImage.ingested_at < facts.generated_at - timedelta(days=s.retention_days)))
        rows.append({"source_id": s.id, "source": s.name, "retention_days": s.retention_days,
                     "oldest_image_at": iso_z_or_none(s.oldest_image_at), "images_past_retention": int(expired or 0)})
    purge = last_purge_entry(session)
    if purge is None:
        return {"sources": rows, "last_purge": None, "note": PURGE_NEVER}
    details = json.loads(purge.details)
    return {"sources": rows, "last_purge": {
        "at": purge.at, "audit_seq": purge.seq, "actor": purge.actor, "images_erased": details.get("images_erased", 0),
        "faces_erased": details.get("faces_erased", 0), "erasure_ids": details.get("erasure_ids", []),
        "stopped": details.get("stopped", False)}}


def _checkpoint(checkpoint: Checkpoint | None, public_key: str | None) -> dict[str, Any] | None:
    if checkpoint is None:
        return None
    return {**checkpoint.as_dict(), "public_key": public_key,
            "note": "verify the signature with the public key the controller gave you beforehand, not this copy"}


def build(session: Session, audit: AuditLog, facts: Facts, benchmark: Benchmark | None, *,
          generated_by: str, orders: list[dict[str, Any]], checkpoint: Checkpoint | None = None,
          public_key: str | None = None) -> ExportResult:
    """The zip, from `session`'s snapshot (the caller opens it after recording the export in the log); `orders`
    are the enforcement orders' statuses, `checkpoint` the newest signed checkpoint (with the key's public
    text), if any."""
    record, assessment = ropa.build(facts), dpia.build(facts, benchmark)
    entries = [audit_line(e) for e in session.scalars(select(AuditEntry).order_by(AuditEntry.seq))]
    verification = audit.verify(session)
    head = audit.read_head()
    log_text = "".join(json.dumps(e, ensure_ascii=False, sort_keys=True) + "\n" for e in entries)
    breaches = [breach_view(b, facts.generated_at)
                for b in session.scalars(select(Breach).options(selectinload(Breach.updates)).order_by(Breach.id))]
    sources = _sources(session, facts)
    requests = request_statistics(session, facts.generated_at)
    document: dict[str, Any] = {
        "format": FORMAT, "version": VERSION, "generated_at": iso_z_or_none(facts.generated_at),
        "generated_by": generated_by,
        "facetrail_version": __version__,
        "record_of_processing": record,
        "dpia": assessment,
        "sources": sources,
        "rights_requests": requests,
        "orders": {"available": True, "orders": orders},
        "breaches": breaches,
        "retention": _retention(session, facts),
        "audit": {
            "file": AUDIT_LOG, "entries": len(entries),
            "verification": {"ok": verification.ok, "entries": verification.entries,
                             "first_broken_seq": verification.first_broken_seq, "reason": verification.reason},
            "head": None if head is None else {"seq": head[0], "hash": head[1]},
            "last_entry": None if not entries else {"seq": entries[-1]["seq"], "hash": entries[-1]["hash"]},
            "checkpoint": _checkpoint(checkpoint, public_key),
        },
    }
    files = {
        EXPORT: json.dumps(document, indent=1, ensure_ascii=False).encode(),
        AUDIT_LOG: log_text.encode(),
        "record-of-processing.md": render(ropa.document(record), Format.MARKDOWN).encode(),
        "record-of-processing.html": render(ropa.document(record), Format.HTML).encode(),
        "dpia.md": render(dpia.document(assessment), Format.MARKDOWN).encode(),
        "dpia.html": render(dpia.document(assessment), Format.HTML).encode(),
    }
    manifest = {"format": FORMAT, "version": VERSION, "generated_at": document["generated_at"],
                "files": {name: hashlib.sha256(data).hexdigest() for name, data in files.items()}}
    manifest_bytes = json.dumps(manifest, indent=1).encode()
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr(MANIFEST, manifest_bytes)
        for name, data in files.items():
            archive.writestr(name, data)
    summary = {"generated_at": document["generated_at"], "manifest_sha256": hashlib.sha256(manifest_bytes).hexdigest(),
               "audit_entries": len(entries), "audit_ok": verification.ok, "sources": len(sources),
               "breaches": len(breaches), "rights_requests": requests["received"]}
    return ExportResult(buffer.getvalue(), summary)
