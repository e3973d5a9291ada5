"""/v1/compliance, /v1/breaches and /v1/exports/regulator: the DPO writes, the auditor reads."""

from __future__ import annotations

import io
import shutil
import zipfile
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from facetrail.api import create_app
from facetrail.compliance.exportcheck import verify_export
from facetrail.runtime import Facetrail, local_actor

Api = tuple[TestClient, dict[str, dict[str, str]]]


@pytest.fixture(scope="module")
def api(samples_store: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    data = tmp_path_factory.mktemp("compliance-api") / "data"
    shutil.copytree(samples_store, data)
    ft = Facetrail.open(data, workers=1, controller_name="Club SA")
    keys = {role: {"Authorization": "Bearer " + ft.accounts.create(local_actor(), name=f"{role}-c", role=role)[1]}
            for role in ("dpo", "auditor", "operator")}
    with TestClient(create_app(ft)) as client:
        yield client, keys
    ft.close()


def test_documents_in_each_format(api: Api) -> None:
    client, keys = api
    record = client.get("/v1/compliance/ropa", headers=keys["auditor"])
    assert record.status_code == 200 and record.json()["controller"]["name"] == "Club SA"
    markdown = client.get("/v1/compliance/ropa", params={"format": "md"}, headers=keys["dpo"])
    assert markdown.headers["content-type"].startswith("text/markdown") and "Club SA" in markdown.text
    page = client.get("/v1/compliance/dpia", params={"format": "html"}, headers=keys["auditor"])
    assert page.headers["content-type"].startswith("text/html") and "wrongful identification" in page.text
    bad = client.get("/v1/compliance/dpia", params={"format": "pdf"}, headers=keys["auditor"])
    assert bad.status_code == 422 and bad.json()["field"] == "format"


def test_breaches_written_by_the_dpo_read_by_the_auditor(api: Api) -> None:
    client, keys = api
    # Aware a day ago: the notification below falls within the 72 hours on any day the test runs (a later one
    # must give the reasons for the delay, Art. 33(1)).
    aware = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(days=1)
    body = {"title": "phishing", "nature": "a DPO key was phished", "data_categories": ["request e-mails"],
            "subject_categories": ["requesters"], "consequences": "spam", "measures": "key disabled",
            "aware_at": f"{aware:%Y-%m-%dT%H:%M:%SZ}", "scope": {"source_ids": [1], "requests": True}}
    created = client.post("/v1/breaches", json=body, headers=keys["dpo"])
    assert created.status_code == 201, created.text
    breach = created.json()
    assert breach["clock"]["due_at"] == f"{aware + timedelta(hours=72):%Y-%m-%dT%H:%M:%SZ}"
    assert breach["scope"] == {"source_ids": [1], "from": None, "to": None, "requests": True}
    assert client.post("/v1/breaches", json=body, headers=keys["auditor"]).status_code == 403
    updated = client.post(f"/v1/breaches/{breach['id']}/updates", headers=keys["dpo"],
                          json={"note": "notified", "authority_status": "notified", "authority_reference": "R-1"})
    assert updated.status_code == 200 and updated.json()["authority"]["reference"] == "R-1"
    shown = client.get(f"/v1/breaches/{breach['id']}", headers=keys["auditor"]).json()
    assert [h["note"] for h in shown["history"]] == ["recorded", "notified"]
    assert [b["id"] for b in client.get("/v1/breaches", headers=keys["auditor"]).json()] == [breach["id"]]
    affected = client.get(f"/v1/breaches/{breach['id']}/affected", headers=keys["dpo"])
    assert affected.status_code == 200 and affected.json()["faces"] > 0
    assert client.get(f"/v1/breaches/{breach['id']}/affected", headers=keys["auditor"]).status_code == 403
    missing = client.post("/v1/breaches", json={**body, "title": ""}, headers=keys["dpo"])
    assert missing.status_code == 422 and missing.json()["field"] == "title"
    assert client.get("/v1/breaches/999", headers=keys["auditor"]).status_code == 404


def test_regulator_export_download(api: Api) -> None:
    client, keys = api
    response = client.get("/v1/exports/regulator", headers=keys["auditor"])
    assert response.status_code == 200 and response.headers["content-type"] == "application/zip"
    assert "attachment" in response.headers["content-disposition"]
    with zipfile.ZipFile(io.BytesIO(response.content)) as archive:
        assert "export.json" in archive.namelist()
    assert verify_export(response.content).ok
    assert client.get("/v1/exports/regulator", headers=keys["operator"]).status_code == 403
