"""The regulator export: every part, valid against the schema in the repo, nothing biometric in it, and an
audit log that an authority re-verifies offline (an altered row is named)."""

from __future__ import annotations

import hashlib
import io
import json
import sqlite3
import zipfile
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import jsonschema_rs
import pytest
from sqlalchemy import select
from typer.testing import CliRunner

from facetrail.accounts.roles import Actor, Role
from facetrail.audit.log import entry_hash
from facetrail.audit.merkle import leaf_hash, tree_root
from facetrail.audit.note import parse_signer, sign_checkpoint
from facetrail.audit.signing import read_verifier, write_key_pair
from facetrail.cli.main import app
from facetrail.compliance.breach_scope import BreachScope
from facetrail.compliance.export import SCHEMA
from facetrail.compliance.exportcheck import verify_export
from facetrail.errors import InvalidValueError, PermissionDeniedError
from facetrail.runtime import Facetrail
from facetrail.store.models import Face
from tests.conftest import template_of
from tests.rights.test_requests import code_for, full_request

DPO = Actor("dora", Role.DPO)
AUDITOR = Actor("audrey", Role.AUDITOR)
PARTS = ("record_of_processing", "dpia", "sources", "rights_requests", "orders", "breaches", "retention", "audit")
FILES = {"manifest.json", "export.json", "audit-log.jsonl", "record-of-processing.md", "record-of-processing.html",
         "dpia.md", "dpia.html"}


def members(data: bytes) -> dict[str, bytes]:
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        return {name: archive.read(name) for name in archive.namelist()}


def rezip(files: dict[str, bytes]) -> bytes:
    """The zip an attacker would write after editing files, with a manifest recomputed to match."""
    manifest = json.loads(files["manifest.json"])
    manifest["files"] = {n: hashlib.sha256(d).hexdigest() for n, d in files.items() if n != "manifest.json"}
    files = {**files, "manifest.json": json.dumps(manifest).encode()}
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, data in files.items():
            archive.writestr(name, data)
    return buffer.getvalue()


def tamper(data: Path, statement: str) -> None:
    conn = sqlite3.connect(data / "facetrail.db")
    conn.execute("DROP TRIGGER audit_log_no_update")
    conn.execute(statement)
    conn.commit()
    conn.close()


@pytest.fixture
def busy_ft(samples_ft: Facetrail) -> Iterator[Facetrail]:
    """The samples store with a completed access request, a refused one, and a breach."""
    ft = samples_ft
    full_request(ft, "access")
    refused = ft.requests.intake(kind="erasure", email="someone@example.org", client_ip="203.0.113.9")
    assert ft.requests.verify_email(refused.request.id, refused.status_token, code_for(ft, "someone@example.org"))
    ft.requests.refuse(DPO, refused.request.id, "the requester asked for someone else's photos")
    ft.breaches.add(DPO, title="disk lost", nature="an encrypted disk was lost", data_categories=["templates"],
                    subject_categories=["attendees"], consequences="none expected", measures="key rotated",
                    aware_at=datetime.now(UTC), scope=BreachScope.of([1]))
    yield ft


def test_export_holds_every_part_and_validates_against_the_schema(busy_ft: Facetrail) -> None:
    result = busy_ft.compliance.regulator_export(AUDITOR)
    files = members(result.data)
    assert set(files) == FILES
    document = json.loads(files["export.json"])
    schema = json.loads(SCHEMA.read_text())
    errors = [str(e) for e in jsonschema_rs.validator_for(schema).iter_errors(document)]
    assert not errors, errors[:5]
    entry_schema = jsonschema_rs.validator_for({"$ref": "#/$defs/audit_entry", "$defs": schema["$defs"]})
    lines = files["audit-log.jsonl"].decode().splitlines()
    for line in lines:
        entry_schema.validate(json.loads(line))
    assert all(document[part] is not None for part in PARTS)
    requests = document["rights_requests"]
    assert (requests["received"], requests["completed"], requests["refused"]) == (2, 1, 1)
    assert requests["refusals"][0]["reason"] == "the requester asked for someone else's photos"
    assert requests["response_days"]["closed_requests"] == 2 and requests["response_days"]["max"] is not None
    assert [b["title"] for b in document["breaches"]] == ["disk lost"]
    assert document["sources"][0]["evidence_ref"] == "consent-records/1"
    assert document["retention"]["sources"][0]["retention_days"] == 365
    audit = document["audit"]
    assert audit["verification"]["ok"] and audit["entries"] == len(lines)
    # The export itself is the last entry of the log it carries.
    assert json.loads(lines[-1])["action"] == "export.regulator" and json.loads(lines[-1])["actor"] == "audrey"
    assert audit["head"] == audit["last_entry"] == {"seq": len(lines), "hash": json.loads(lines[-1])["hash"]}
    assert "record of processing" in files["record-of-processing.md"].decode().lower()
    # A document missing a part does not validate: the schema is not a formality.
    del document["breaches"]
    assert not jsonschema_rs.validator_for(schema).is_valid(document)


def test_export_holds_no_template_crop_or_image(busy_ft: Facetrail) -> None:
    blob = b"".join(members(busy_ft.compliance.regulator_export(DPO).data).values())
    with busy_ft.db.read() as session:
        sealed = list(session.scalars(select(Face.template)))
    assert sealed
    for stored in sealed:
        assert template_of(busy_ft, stored).tobytes() not in blob
        assert stored not in blob
    for magic in (b"\xff\xd8\xff", b"\x89PNG", b"RIFF", b"GIF8"):
        assert magic not in blob


def test_an_altered_audit_row_fails_the_exports_verification(busy_ft: Facetrail) -> None:
    first = busy_ft.compliance.regulator_export(AUDITOR).data
    assert verify_export(first).ok
    tamper(busy_ft.data, "UPDATE audit_log SET actor = 'mallory' WHERE seq = 2")
    second = busy_ft.compliance.regulator_export(AUDITOR)
    assert not second.summary["audit_ok"]
    report = json.loads(members(second.data)["export.json"])["audit"]["verification"]
    assert (report["ok"], report["first_broken_seq"]) == (False, 2)
    check = verify_export(second.data, previous=first)
    assert not check.ok and check.extends is False
    assert any("audit entry 2: content does not match its hash" in p for p in check.problems)


def test_offline_verification_catches_an_edited_export(busy_ft: Facetrail) -> None:
    original = busy_ft.compliance.regulator_export(AUDITOR).data
    files = members(original)
    lines = [json.loads(line) for line in files["audit-log.jsonl"].decode().splitlines()]
    # Edited without the manifest being recomputed: the manifest names the file.
    edited = dict(files, **{"audit-log.jsonl": files["audit-log.jsonl"].replace(b'"seq": 3', b'"seq": 33')})
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, data in edited.items():
            archive.writestr(name, data)
    assert "audit-log.jsonl does not match its SHA-256 in the manifest (altered)" in verify_export(
        buffer.getvalue()).problems
    # An entry edited and the manifest recomputed: the chain names the entry.
    lines[2]["actor"] = "mallory"
    forged = rezip(dict(files, **{"audit-log.jsonl": _jsonl(lines)}))
    assert verify_export(forged).problems == ["audit entry 3: content does not match its hash (edited)"]
    # The whole chain rewritten from that entry on, head included: it holds on its own, but does not extend
    # an export the authority kept.
    rewritten = _rechain(lines)
    document = json.loads(files["export.json"])
    document["audit"]["head"] = document["audit"]["last_entry"] = {"seq": rewritten[-1]["seq"],
                                                                    "hash": rewritten[-1]["hash"]}
    forged = rezip(dict(files, **{"audit-log.jsonl": _jsonl(rewritten),
                                  "export.json": json.dumps(document).encode()}))
    assert verify_export(forged).ok
    assert not verify_export(forged, previous=original).ok
    later = busy_ft.compliance.regulator_export(AUDITOR).data
    assert verify_export(later, previous=original).extends is True
    assert verify_export(original, previous=later).extends is False
    with pytest.raises(InvalidValueError, match="not a zip"):
        verify_export(b"PK not really")


def _jsonl(entries: list[dict[str, Any]]) -> bytes:
    return "".join(json.dumps(e, sort_keys=True) + "\n" for e in entries).encode()


def _rechain(entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
    prev = entries[0]["prev_hash"]
    out = []
    for entry in entries:
        entry = dict(entry, prev_hash=prev)
        entry["hash"] = prev = entry_hash(seq=entry["seq"], at=entry["at"], actor=entry["actor"],
                                          action=entry["action"], details=entry["details"], prev_hash=prev)
        out.append(entry)
    return out


def test_export_needs_the_dpo_or_auditor_role(ft: Facetrail) -> None:
    with pytest.raises(PermissionDeniedError):
        ft.compliance.regulator_export(Actor("olga", Role.OPERATOR))
    with pytest.raises(PermissionDeniedError):
        ft.compliance.regulator_export(Actor("ivy", Role.INVESTIGATOR))


def test_cli_writes_and_verifies_the_export(busy_ft: Facetrail, tmp_path: Path) -> None:
    data = busy_ft.data
    busy_ft.close()
    runner = CliRunner()
    out, later = tmp_path / "export.zip", tmp_path / "later.zip"
    made = runner.invoke(app, ["--data", str(data), "export", "regulator", str(out), "--json"])
    assert made.exit_code == 0, made.output
    assert json.loads(made.output)["audit_ok"] is True
    checked = runner.invoke(app, ["export", "verify", str(out)])
    assert checked.exit_code == 0 and "verified" in checked.output
    assert runner.invoke(app, ["--data", str(data), "export", "regulator", str(later)]).exit_code == 0
    extends = runner.invoke(app, ["export", "verify", str(later), "--extends", str(out), "--json"])
    assert extends.exit_code == 0 and json.loads(extends.output)["extends_previous"] is True
    tamper(data, "UPDATE audit_log SET details = '{}' WHERE seq = 1")
    broken = runner.invoke(app, ["--data", str(data), "export", "regulator", str(tmp_path / "broken.zip")])
    assert broken.exit_code == 1 and "does not verify" in broken.output
    failed = runner.invoke(app, ["export", "verify", str(tmp_path / "broken.zip")])
    assert failed.exit_code == 1 and "audit entry 1" in failed.output
    missing = runner.invoke(app, ["export", "verify", str(tmp_path / "none.zip")])
    assert missing.exit_code == 2 and "is not a file" in missing.output
    into_dir = runner.invoke(app, ["--data", str(data), "export", "regulator", str(tmp_path)])
    assert into_dir.exit_code == 2 and "directory" in into_dir.output


def test_the_export_carries_the_orders_the_last_purge_and_a_signed_checkpoint_that_binds_the_log(
        busy_ft: Facetrail, tmp_path: Path) -> None:
    """Orders, the last retention run and the newest signed checkpoint are in the export; an insider who rewrites
    the log and recomputes the whole chain and manifest is caught by the checkpoint's Merkle root (no earlier
    export needed), and given the public key the signature is checked too."""
    key = tmp_path / "keys" / "audit.key"
    public_path, _public = write_key_pair(key, busy_ft.data, "dpo-audit")
    busy_ft.close()
    ft = Facetrail.open(busy_ft.data, workers=1, audit_signing_key_file=key)
    try:
        order = ft.orders.add(DPO, authority="CNIL", reference="MED-2021-134", received_on="2026-11-01",
                              jurisdictions=["FR"], cease=True, erase=True, deadline="2026-12-31",
                              daily_penalty=100_000)
        ft.orders.run(DPO, order.id)  # followed by a signed checkpoint
        ft.retention.run(Actor("olga", Role.OPERATOR))
        result = ft.compliance.regulator_export(AUDITOR)
    finally:
        ft.close()
    files = members(result.data)
    document = json.loads(files["export.json"])
    schema = json.loads(SCHEMA.read_text())
    errors = [str(e) for e in jsonschema_rs.validator_for(schema).iter_errors(document)]
    assert not errors, errors[:5]
    assert document["orders"]["available"] is True
    [listed] = document["orders"]["orders"]
    assert (listed["order_id"], listed["reference"], listed["job_state"]) == (order.id, "MED-2021-134", "completed")
    lines = [json.loads(line) for line in files["audit-log.jsonl"].decode().splitlines()]
    purge = document["retention"]["last_purge"]
    assert purge is not None and lines[purge["audit_seq"] - 1]["action"] == "retention.run"
    checkpoint = document["audit"]["checkpoint"]
    recorded = lines[checkpoint["size"]]  # the entry that records the checkpoint, just after what it covers
    assert recorded["action"] == "audit.checkpoint" and f"order {order.id}" in recorded["details"]
    verifier = read_verifier(public_path)
    check = verify_export(result.data, verifier=verifier)
    assert check.ok, check.problems
    assert check.checkpoint == {"size": checkpoint["size"], "root_matches": True, "signature": "verified"}
    assert verify_export(result.data).checkpoint["signature"].startswith("not checked")  # type: ignore[index]
    (tmp_path / "export.zip").write_bytes(result.data)
    printed = CliRunner().invoke(app, ["export", "verify", str(tmp_path / "export.zip"), "--public-key",
                                       str(public_path)])
    assert printed.exit_code == 0 and "signature verified" in printed.output, printed.output
    # Entry 2 rewritten, every hash after it recomputed, head and manifest too: the chain holds on its own,
    # the signed root does not.
    lines[1]["actor"] = "mallory"
    rewritten = _rechain(lines)
    document["audit"]["head"] = document["audit"]["last_entry"] = {"seq": rewritten[-1]["seq"],
                                                                    "hash": rewritten[-1]["hash"]}
    forged = rezip(dict(files, **{"audit-log.jsonl": _jsonl(rewritten), "export.json": json.dumps(document).encode()}))
    caught = verify_export(forged, verifier=verifier)
    assert not caught.ok and caught.checkpoint is not None and caught.checkpoint["root_matches"] is False
    assert any("not the checkpoint's" in p for p in caught.problems), caught.problems
    # The insider also signs a checkpoint of the rewritten log with a key of their own: the root matches,
    # the signature is not by the key the authority holds.
    other_key = tmp_path / "other" / "audit.key"
    write_key_pair(other_key, busy_ft.data, "dpo-audit")
    root = tree_root(leaf_hash(bytes.fromhex(e["hash"])) for e in rewritten[:checkpoint["size"]])
    resigned = sign_checkpoint(parse_signer(other_key.read_text(), "key"), size=checkpoint["size"], root=root,
                               time=checkpoint["time"])
    document["audit"]["checkpoint"] = {**checkpoint, **resigned.as_dict()}
    forged = rezip(dict(files, **{"audit-log.jsonl": _jsonl(rewritten), "export.json": json.dumps(document).encode()}))
    caught = verify_export(forged, verifier=verifier)
    assert caught.checkpoint == {"size": checkpoint["size"], "root_matches": True, "signature": "failed"}
    assert any("signature does not verify" in p for p in caught.problems), caught.problems
