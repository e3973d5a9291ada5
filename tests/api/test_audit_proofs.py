"""/v1/audit/checkpoint and the Merkle proofs through HTTP, and the server's checkpoint schedule."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from facetrail.api.app import create_app
from facetrail.audit import merkle
from facetrail.audit.checkpoints import check_inclusion, verify_checkpoint
from facetrail.audit.signing import read_verifier, write_key_pair
from facetrail.runtime import Facetrail, local_actor
from tests.audit.test_checkpoints import open_data
from tests.conftest import add_source

Api = tuple[TestClient, dict[str, str], Facetrail, Path]


@pytest.fixture
def api(tmp_path: Path) -> Iterator[Api]:
    data = tmp_path / "data"
    key = tmp_path / "outside" / "audit.key"
    public, _ = write_key_pair(key, data, "facetrail-test")
    ft = open_data(data, audit_signing_key_file=key, checkpoint_interval_s=0.3)
    keys = {role: ft.accounts.create(local_actor(), name=f"{role}-1", role=role)[1]
            for role in ("auditor", "dpo", "investigator")}
    for i in range(4):
        add_source(ft, name=f"source {i}")
    with TestClient(create_app(ft)) as client:
        yield client, {r: f"Bearer {k}" for r, k in keys.items()}, ft, public
    ft.close()


def wait_for_checkpoint(client: TestClient, key: str) -> dict[str, object]:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        response = client.get("/v1/audit/checkpoint", headers={"Authorization": key})
        if response.status_code == 200:
            body: dict[str, object] = response.json()
            return body
        assert response.status_code == 404, response.text
        time.sleep(0.1)
    raise AssertionError("the server made no checkpoint on its schedule")


def test_the_schedule_signs_checkpoints_and_the_proofs_check(api: Api) -> None:
    client, keys, ft, public = api
    body = wait_for_checkpoint(client, keys["auditor"])
    verifier = read_verifier(public)
    (checkpoint,) = verify_checkpoint(str(body["checkpoint"]), verifier)
    assert checkpoint.size == body["size"] and checkpoint.root.hex() == body["root"]
    assert checkpoint.size >= 7  # 3 accounts, 4 sources

    proof = client.get("/v1/audit/proof/inclusion", params={"seq": 2, "size": checkpoint.size},
                       headers={"Authorization": keys["dpo"]}).json()
    assert check_inclusion(proof, checkpoint) is None
    assert proof["checkpoint"] == checkpoint.text
    tampered = {**proof, "entry": {**proof["entry"], "actor": "mallory"}}
    assert check_inclusion(tampered, checkpoint) is not None

    # The proofs just served were audited, so the log grew: the next scheduled checkpoint extends the first.
    later = checkpoint
    deadline = time.monotonic() + 20
    while later.size == checkpoint.size and time.monotonic() < deadline:
        time.sleep(0.1)
        later = verify_checkpoint(str(wait_for_checkpoint(client, keys["auditor"])["checkpoint"]), verifier)[0]
    assert later.size > checkpoint.size
    consistency = client.get("/v1/audit/proof/consistency", params={"first": checkpoint.size, "second": later.size},
                             headers={"Authorization": keys["auditor"]}).json()
    assert consistency["first_root"] == checkpoint.root.hex() and consistency["second_root"] == later.root.hex()
    assert merkle.verify_consistency(checkpoint.size, later.size, checkpoint.root, later.root,
                                     [bytes.fromhex(p) for p in consistency["proof"]])
    actions = [e.action for e in ft.read_audit(local_actor(), limit=1000)]
    assert actions.count("audit.checkpoint") >= 2 and "audit.prove" in actions
    reasons = [e.details for e in ft.read_audit(local_actor(), limit=1000) if e.action == "audit.checkpoint"]
    assert all('"reason":"schedule"' in r for r in reasons)


def test_bad_proof_requests_name_the_field(api: Api) -> None:
    client, keys, _, _ = api
    auditor = {"Authorization": keys["auditor"]}
    wait_for_checkpoint(client, keys["auditor"])
    response = client.get("/v1/audit/proof/inclusion", params={"seq": 10_000}, headers=auditor)
    assert response.status_code == 422 and response.json()["field"] == "seq"
    response = client.get("/v1/audit/proof/inclusion", params={"seq": 1, "size": 10_000}, headers=auditor)
    assert response.status_code == 422 and response.json()["field"] == "size"
    response = client.get("/v1/audit/proof/consistency", params={"first": 5, "second": 3}, headers=auditor)
    assert response.status_code == 422
    for path in ("/v1/audit/checkpoint", "/v1/audit/proof/inclusion?seq=1"):
        assert client.get(path, headers={"Authorization": keys["investigator"]}).status_code == 403


def test_without_a_signing_key_the_checkpoint_route_says_so(tmp_path: Path) -> None:
    ft = open_data(tmp_path / "data", checkpoint_interval_s=0)
    _, key = ft.accounts.create(local_actor(), name="aud", role="auditor")
    with TestClient(create_app(ft)) as client:
        response = client.get("/v1/audit/checkpoint", headers={"Authorization": f"Bearer {key}"})
        assert response.status_code == 404 and "no audit signing key" in response.json()["detail"]
    ft.close()


def test_the_schedule_pushes_and_does_not_repeat_an_unchanged_log(tmp_path: Path) -> None:
    data, key, pushed = tmp_path / "data", tmp_path / "outside" / "audit.key", tmp_path / "pushed.txt"
    write_key_pair(key, data, "facetrail-test")
    ft = open_data(data, audit_signing_key_file=key, checkpoint_interval_s=0.2,
                        checkpoint_push_command=f"tee -a {pushed}")
    _, auditor = ft.accounts.create(local_actor(), name="aud", role="auditor")
    with TestClient(create_app(ft)) as client:
        body = wait_for_checkpoint(client, f"Bearer {auditor}")
        time.sleep(1.5)  # several intervals with nothing new logged
    ft.close()
    ft = Facetrail.open(data, workers=1)
    actions = [e.action for e in ft.read_audit(local_actor(), limit=100)]
    ft.close()
    assert actions.count("audit.checkpoint") == 1
    assert pushed.read_text() == body["checkpoint"]
