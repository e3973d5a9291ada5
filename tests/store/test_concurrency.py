"""Several processes on one store at once (run on SQLite and, with --db postgres, on PostgreSQL): audit appends,
ingestion of the same files, erasure of the same person and the rights workflow give what one process would."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

from sqlalchemy import func, select

from facetrail.accounts.roles import Actor
from facetrail.runtime import Facetrail
from facetrail.store.models import AuditEntry, Face, RequestEvent, RightsRequest, StoredImage
from tests.conftest import SAMPLES, add_source, labelled_people
from tests.rights.biden import find_biden, stored_faces

PROCESSES = 4
# Each process opens the data directory, waits for the others (the `go` file), then runs its part.
PRELUDE = """
import json, sys, time
from pathlib import Path
from facetrail.runtime import Facetrail, local_actor
data, go, me = Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3])
ft = Facetrail.open(data, workers=1)
(go.parent / f"ready-{me}").touch()
while not go.exists():
    time.sleep(0.01)
"""
SOURCES = PRELUDE + """
for i in range(10):
    ft.sources.add(local_actor(), name=f"process {me} source {i}", controller="c", purposes=["demo"],
                   legal_basis="consent", art9_condition="a", evidence_ref="e", jurisdictions=["FR"],
                   retention_days=30)
ft.close()
"""
INGEST = PRELUDE + """
from facetrail.sources.inputs import from_paths
report = ft.ingest.ingest(local_actor(), 1, from_paths([Path(sys.argv[4])], ft.input_limits))
print(json.dumps({"added": report.images_added, "errors": len(report.errors)}))
ft.close()
"""
ERASE = PRELUDE + """
print(json.dumps(ft.erasure.erase(local_actor().name, json.loads(sys.argv[4]), request_id=f"REQ-{me}")))
ft.close()
"""
INTAKE = PRELUDE + """
from facetrail.errors import ConflictError, RateLimitedError
outcome = {"accepted": [], "limited": 0, "refused": 0, "conflict": 0}
for i in range(5):
    try:
        outcome["accepted"].append(ft.requests.intake(kind="access", email="same@example.org",
                                                      client_ip=f"10.0.{me}.{i}").request.id)
    except RateLimitedError:
        outcome["limited"] += 1
try:
    ft.requests.refuse(local_actor(), sys.argv[4], "not a person we hold")
    outcome["refused"] += 1
except ConflictError:
    outcome["conflict"] += 1
print(json.dumps(outcome))
ft.close()
"""


def run_at_once(data: Path, script: str, *args: str, processes: int = PROCESSES) -> list[str]:
    """Start `processes` copies of `script` on `data`, release them together, and return their outputs."""
    go = data.parent / "go"
    procs = [subprocess.Popen([sys.executable, "-c", script, str(data), str(go), str(me), *args],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for me in range(processes)]
    try:
        deadline = time.monotonic() + 120
        while (len(list(data.parent.glob("ready-*"))) < processes and time.monotonic() < deadline
               and all(p.poll() is None for p in procs)):
            time.sleep(0.05)
        go.touch()
        outputs = [p.communicate(timeout=600) for p in procs]
    finally:
        for p in procs:
            p.kill()
            p.wait()
    for p, (_out, err) in zip(procs, outputs, strict=True):
        assert p.returncode == 0, err[-3000:]
    return [out for out, _err in outputs]


def test_audit_appends_from_several_processes_form_one_chain(ft: Facetrail, actor: Actor) -> None:
    data = ft.data
    ft.close()
    run_at_once(data, SOURCES)
    ft = Facetrail.open(data, workers=1)
    with ft.db.read() as session:
        seqs = list(session.scalars(select(AuditEntry.seq).order_by(AuditEntry.seq)))
        added = session.scalar(select(func.count()).select_from(AuditEntry).where(AuditEntry.action == "source.add"))
    assert seqs == list(range(1, len(seqs) + 1))
    assert added == PROCESSES * 10
    head = ft.audit.read_head()
    assert head is not None and head[0] == len(seqs)  # the anchor moved to the end, never back
    assert ft.verify_audit(actor).ok
    ft.close()


def test_the_same_files_ingested_by_two_processes_at_once_are_stored_once(ft: Facetrail, actor: Actor) -> None:
    source = add_source(ft)
    assert source == 1
    data = ft.data
    ft.close()
    outputs = [json.loads(out) for out in run_at_once(data, INGEST, str(SAMPLES), processes=2)]
    ft = Facetrail.open(data, workers=1)
    with ft.db.read() as session:
        names = list(session.scalars(select(StoredImage.original_name)))
        faces = sorted(session.scalars(select(Face.id)))
    assert sorted(names) == sorted(set(names)) and len(names) == sum(o["added"] for o in outputs)
    assert len(names) == len(labelled_people())  # every photo once, as one process stores them
    assert len(faces) == 26
    assert sorted(ft.gallery.index().ids().tolist()) == faces == sorted(ft.gallery.persisted_ids())
    assert ft.verify_audit(actor).ok
    ft.close()


def test_one_person_erased_by_several_processes_at_once_is_erased_once_and_completely(
        samples_ft: Facetrail, actor: Actor) -> None:
    ft = samples_ft
    biden = find_biden(ft, actor)
    faces = stored_faces(ft, biden)
    assert len(faces) == 4
    data = ft.data
    ft.close()
    receipts = [json.loads(out) for out in run_at_once(data, ERASE, json.dumps(biden))]
    # Each plan sees all four faces or none (another erasure's deletion committed before it): never a part.
    assert {r["faces_erased"] for r in receipts} <= {0, 4} and any(r["faces_erased"] == 4 for r in receipts)
    ft = Facetrail.open(data, workers=1)
    with ft.db.read() as session:
        assert session.scalar(select(func.count()).select_from(Face).where(Face.id.in_(biden))) == 0
    assert not set(biden) & ft.gallery.persisted_ids()
    assert not set(biden) & set(ft.gallery.index().ids().tolist())
    for face in faces:
        assert not ft.blobs.exists(face.crop_key)
        assert ft.vault.keyring.existing([face.key_id]) == set()
    assert ft.erasure.pending() == []
    assert ft.verify_audit(actor).ok
    ft.close()


def test_the_rights_workflow_from_several_processes_keeps_its_limits_and_decides_once(ft: Facetrail) -> None:
    first = ft.requests.intake(kind="erasure", email="someone@example.org", client_ip="10.1.0.1").request.id
    data = ft.data
    ft.close()
    outcomes = [json.loads(out) for out in run_at_once(data, INTAKE, first)]
    accepted = [rid for o in outcomes for rid in o["accepted"]]
    # The hourly intake limit per e-mail address holds across processes: exactly 10 of the 20 get through.
    assert len(accepted) == len(set(accepted)) == 10 and sum(o["limited"] for o in outcomes) == 10
    # The same request refused by four staff processes at once: refused once, the others told it is closed.
    assert sum(o["refused"] for o in outcomes) == 1 and sum(o["conflict"] for o in outcomes) == PROCESSES - 1
    ft = Facetrail.open(data, workers=1)
    with ft.db.read() as session:
        assert session.scalar(select(func.count()).select_from(RightsRequest)) == 11
        refusals = session.scalar(select(func.count()).select_from(RequestEvent).where(
            RequestEvent.request_id == first, RequestEvent.to_status == "refused"))
    assert refusals == 1
    ft.close()
