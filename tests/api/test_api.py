"""The REST API: authentication and roles on every route, ingestion by upload, search, audit."""

from __future__ import annotations

import io
import re
import shutil
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from facetrail.api import create_app
from facetrail.runtime import Facetrail, local_actor
from tests.conftest import sample_bytes

ROLES = ("operator", "investigator", "dpo", "auditor")
# Who may call each route; every other role must get 403, and no key 401.
ALLOWED = {
    ("GET", "/v1/sources"): {"operator", "investigator", "dpo", "auditor"},
    ("POST", "/v1/sources"): {"operator"},
    ("GET", "/v1/sources/{source_id}"): {"operator", "investigator", "dpo", "auditor"},
    ("POST", "/v1/sources/{source_id}/images"): {"operator"},
    ("POST", "/v1/search"): {"investigator"},
    ("GET", "/v1/searches/{search_id}/faces/{face_id}/crop"): {"investigator"},
    ("GET", "/v1/accounts"): {"operator"},
    ("POST", "/v1/accounts"): {"operator"},
    ("GET", "/v1/audit"): {"auditor", "dpo"},
    ("GET", "/v1/audit/verify"): {"auditor", "dpo"},
    ("GET", "/v1/requests"): {"dpo"},
    ("GET", "/v1/requests/{request_id}"): {"dpo"},
    ("POST", "/v1/requests/{request_id}/manual-check"): {"dpo"},
    ("POST", "/v1/requests/{request_id}/approve"): {"dpo"},
    ("POST", "/v1/requests/{request_id}/reject"): {"dpo"},
    ("POST", "/v1/requests/{request_id}/extend"): {"dpo"},
    ("POST", "/v1/requests/{request_id}/refuse"): {"dpo"},
    ("POST", "/v1/requests/{request_id}/objection"): {"dpo"},
    ("POST", "/v1/requests/{request_id}/fulfil"): {"dpo"},
    ("GET", "/v1/people"): {"operator"},
    ("POST", "/v1/people/cluster"): {"operator"},
    ("GET", "/v1/people/{person_id}"): {"operator"},
    ("POST", "/v1/people/{person_id}/name"): {"operator"},
    ("POST", "/v1/people/{person_id}/merge"): {"operator"},
    ("POST", "/v1/people/{person_id}/split"): {"operator"},
    ("GET", "/v1/compliance/ropa"): {"dpo", "auditor"},
    ("GET", "/v1/compliance/dpia"): {"dpo", "auditor"},
    ("GET", "/v1/exports/regulator"): {"dpo", "auditor"},
    ("GET", "/v1/breaches"): {"dpo", "auditor"},
    ("POST", "/v1/breaches"): {"dpo"},
    ("GET", "/v1/breaches/{breach_id}"): {"dpo", "auditor"},
    ("POST", "/v1/breaches/{breach_id}/updates"): {"dpo"},
    ("GET", "/v1/breaches/{breach_id}/affected"): {"dpo"},
}
# Valid bodies, so that a refusal is the role's doing and not the body's (bodies are checked first).
PEOPLE_BODIES = {"/name": {"name": "someone"}, "/merge": {"other_ids": [2]}, "/split": {"face_ids": [1]}}
# The rights portal is public by design (its request routes need the request id and its secret token);
# its HTML pages are left out of the schema, its JSON status is listed.
PUBLIC = {("GET", "/health"), ("GET", "/portal/api/requests/{request_id}")}


@pytest.fixture(scope="module")
def api(samples_store: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[TestClient, dict[str, str]]]:
    data = tmp_path_factory.mktemp("api") / "data"
    shutil.copytree(samples_store, data)
    ft = Facetrail.open(data, workers=1)
    keys = {role: ft.accounts.create(local_actor(), name=f"{role}-1", role=role)[1] for role in ROLES}
    with TestClient(create_app(ft)) as client:
        yield client, keys
    ft.close()


def auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def concrete(path: str) -> str:
    return re.sub(r"\{[^}]+\}", "1", path)


def test_route_table_is_complete(api: tuple[TestClient, dict[str, str]]) -> None:
    client, _ = api
    paths = client.get("/openapi.json").json()["paths"]
    routes = {(method.upper(), path) for path, ops in paths.items() for method in ops}
    assert routes == set(ALLOWED) | PUBLIC


def test_health_is_public(api: tuple[TestClient, dict[str, str]]) -> None:
    client, _ = api
    assert client.get("/health").json()["status"] == "ok"
    assert client.get("/docs").status_code == 200
    assert "/v1/search" in client.get("/openapi.json").json()["paths"]


@pytest.mark.parametrize("method,path", sorted(ALLOWED))
def test_every_route_needs_a_key(api: tuple[TestClient, dict[str, str]], method: str, path: str) -> None:
    client, _ = api
    for headers in ({}, auth("ft_0000000000000000_notarealkeynotarealkey00"), {"X-API-Key": "garbage"}):
        response = client.request(method, concrete(path), headers=headers)
        assert response.status_code == 401, (method, path, response.text)
        assert response.headers["WWW-Authenticate"] == "Bearer"


@pytest.mark.parametrize("method,path", sorted(ALLOWED))
def test_every_route_checks_the_role(api: tuple[TestClient, dict[str, str]], method: str, path: str) -> None:
    client, keys = api
    for role in set(ROLES) - ALLOWED[(method, path)]:
        kwargs: dict[str, object] = {"headers": auth(keys[role])}
        if path == "/v1/search":
            kwargs["files"] = {"photo": ("q.jpg", sample_bytes("obama_small.jpg"), "image/jpeg")}
            kwargs["data"] = {"purpose": "demo", "case": "c"}
        elif path.endswith("/images"):
            kwargs["files"] = {"files": ("a.jpg", sample_bytes("obama_small.jpg"), "image/jpeg")}
        elif method == "POST" and path == "/v1/sources":
            kwargs["json"] = valid_source("role-check")
        elif method == "POST" and path == "/v1/accounts":
            kwargs["json"] = {"name": "someone", "role": "operator"}
        elif path.startswith("/v1/people/{person_id}/"):
            kwargs["json"] = PEOPLE_BODIES[path[path.rindex("/"):]]
        elif path.startswith("/v1/requests/{request_id}/"):
            kwargs["json"] = REQUEST_BODIES.get(path[path.rindex("/"):])
        elif method == "POST" and path.startswith("/v1/breaches"):
            kwargs["json"] = BREACH_BODIES[path]
        response = client.request(method, concrete(path), **kwargs)  # type: ignore[arg-type]
        assert response.status_code == 403, (method, path, role, response.text)


BREACH_BODIES: dict[str, object] = {
    "/v1/breaches": {"title": "t", "nature": "n", "data_categories": ["d"], "subject_categories": ["s"],
                     "consequences": "c", "measures": "m"},
    "/v1/breaches/{breach_id}/updates": {"note": "n", "approx_subjects": 1},
}
REQUEST_BODIES: dict[str, object] = {
    "/reject": {"justification": "x"}, "/refuse": {"justification": "x"}, "/extend": {"months": 1, "reasons": "x"},
    "/objection": {"uphold": True, "reason": "x"}, "/fulfil": {"note": ""},
}


def valid_source(name: str) -> dict[str, object]:
    return {"name": name, "controller": "Agency", "purposes": ["press"], "legal_basis": "public_task",
            "art9_condition": "g", "evidence_ref": "law 2026-1", "jurisdictions": ["FR"], "retention_days": 90}


def test_search_by_photo(api: tuple[TestClient, dict[str, str]]) -> None:
    client, keys = api
    response = client.post("/v1/search", headers=auth(keys["investigator"]),
                           files={"photo": ("q.jpg", sample_bytes("obama2.jpg"), "image/jpeg")},
                           data={"purpose": "demo", "case": "case-9", "top": "5"})
    assert response.status_code == 200, response.text
    body = response.json()
    assert len(body["results"]) == 5 and body["used_face"] == 0 and body["case_ref"] == "case-9"
    assert all("obama" in r["original_name"] or "32bit" in r["original_name"] for r in body["results"])
    crop = client.get(body["results"][0]["crop"], headers=auth(keys["investigator"]))
    assert crop.status_code == 200 and crop.headers["content-type"] == "image/jpeg"


@pytest.mark.parametrize("data,field", [
    ({"purpose": "demo"}, "case"),
    ({"purpose": "demo", "case": "c", "top": "many"}, "top"),
    ({"purpose": "demo", "case": "c", "face": "first"}, "face"),
    ({"purpose": "demo", "case": "c", "top": "0"}, "top"),
])
def test_search_with_wrong_fields_is_422(api: tuple[TestClient, dict[str, str]], data: dict[str, str],
                                         field: str) -> None:
    client, keys = api
    response = client.post("/v1/search", headers=auth(keys["investigator"]), data=data,
                           files={"photo": ("q.jpg", sample_bytes("obama_small.jpg"), "image/jpeg")})
    assert response.status_code == 422 and field in response.text


def test_search_with_a_non_image_is_422(api: tuple[TestClient, dict[str, str]]) -> None:
    client, keys = api
    response = client.post("/v1/search", headers=auth(keys["investigator"]), data={"purpose": "demo", "case": "c"},
                           files={"photo": ("q.jpg", b"hello", "image/jpeg")})
    assert response.status_code == 422 and "not an image" in response.json()["detail"]


def test_source_then_upload_images_and_a_zip(api: tuple[TestClient, dict[str, str]]) -> None:
    client, keys = api
    created = client.post("/v1/sources", headers=auth(keys["operator"]), json=valid_source("uploads"))
    assert created.status_code == 201, created.text
    source_id = created.json()["id"]
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("x/biden2.jpg", sample_bytes("biden2.jpg"))
    files = [("files", ("kit.jpeg", sample_bytes("kit_harington1.jpeg"), "image/jpeg")),
             ("files", ("broken.jpg", b"\xff\xd8\xffnope", "image/jpeg")),
             ("files", ("batch.zip", archive.getvalue(), "application/zip"))]
    response = client.post(f"/v1/sources/{source_id}/images", headers=auth(keys["operator"]), files=files)
    assert response.status_code == 200, response.text
    report = response.json()
    assert report["images_added"] == 2 and report["faces_added"] == 2
    assert [e["name"] for e in report["errors"]] == ["broken.jpg"]
    again = client.post(f"/v1/sources/{source_id}/images", headers=auth(keys["operator"]), files=files).json()
    assert again["images_added"] == 0 and again["images_skipped"] == 2


def test_invalid_source_names_the_field(api: tuple[TestClient, dict[str, str]]) -> None:
    client, keys = api
    response = client.post("/v1/sources", headers=auth(keys["operator"]),
                           json={**valid_source("bad"), "art9_condition": "z"})
    assert response.status_code == 422 and response.json()["field"] == "art9_condition"
    response = client.post("/v1/sources", headers=auth(keys["operator"]),
                           json={**valid_source("bad"), "retention_days": "forever"})
    assert response.status_code == 422 and "retention_days" in response.text


def test_upload_to_unregistered_source_is_refused(api: tuple[TestClient, dict[str, str]]) -> None:
    client, keys = api
    response = client.post("/v1/sources/999/images", headers=auth(keys["operator"]),
                           files={"files": ("a.jpg", sample_bytes("obama_small.jpg"), "image/jpeg")})
    assert response.status_code == 404 and "not registered" in response.json()["detail"]


def test_accounts_and_disabled_keys(api: tuple[TestClient, dict[str, str]]) -> None:
    client, keys = api
    created = client.post("/v1/accounts", headers=auth(keys["operator"]), json={"name": "temp", "role": "auditor"})
    assert created.status_code == 201
    key = created.json()["api_key"]
    assert client.get("/v1/audit/verify", headers=auth(key)).json()["ok"] is True
    listed = client.get("/v1/accounts", headers=auth(keys["operator"])).json()
    assert "api_key" not in listed[0] and "key_hash" not in listed[0]
    ft: Facetrail = client.app.state.facetrail  # type: ignore[attr-defined]
    ft.accounts.disable(local_actor(), name="temp")
    assert client.get("/v1/audit/verify", headers=auth(key)).status_code == 401


def test_audit_lists_searches_with_result_ids(api: tuple[TestClient, dict[str, str]]) -> None:
    client, keys = api
    entries = client.get("/v1/audit", params={"limit": 1000}, headers=auth(keys["auditor"])).json()
    searches = [e for e in entries if e["action"] == "search"]
    assert searches and all("result_face_ids" in e["details"] and "query_sha256" in e["details"] for e in searches)


def test_people_cluster_name_split_and_merge(api: tuple[TestClient, dict[str, str]]) -> None:
    client, keys = api
    operator = auth(keys["operator"])
    report = client.post("/v1/people/cluster", headers=operator, json={"source_id": 1})
    assert report.status_code == 200, report.text
    assert report.json()["faces"] == 26 and report.json()["sources"] == [1]
    people = client.get("/v1/people", headers=operator, params={"source_id": 1}).json()
    assert sum(p["faces"] for p in people) == 26
    top = people[0]
    shown = client.get(f"/v1/people/{top['id']}", headers=operator).json()
    assert len(shown["face_list"]) == top["faces"] == 11
    assert all("obama" in f["original_name"] or "32bit" in f["original_name"] or "two_people" in f["original_name"]
               for f in shown["face_list"])
    named = client.post(f"/v1/people/{top['id']}/name", headers=operator, json={"name": "Barack Obama"})
    assert named.status_code == 200 and named.json()["name"] == "Barack Obama"
    faces = [f["face_id"] for f in shown["face_list"][:2]]
    split = client.post(f"/v1/people/{top['id']}/split", headers=operator, json={"face_ids": faces})
    assert split.status_code == 201 and split.json()["faces"] == 2
    merged = client.post(f"/v1/people/{top['id']}/merge", headers=operator, json={"other_ids": [split.json()["id"]]})
    assert merged.status_code == 200 and merged.json()["faces"] == 11
    entries = client.get("/v1/audit", params={"limit": 1000}, headers=auth(keys["auditor"])).json()
    people_actions = [e["action"] for e in entries if e["action"].startswith("people.")]
    assert people_actions[-5:] == ["people.cluster", "people.show", "people.name", "people.split", "people.merge"]
    assert all(e["actor"] == "operator-1" for e in entries if e["action"].startswith("people."))


@pytest.mark.parametrize("method,path,body,status", [
    ("GET", "/v1/people/99999", None, 404),
    ("POST", "/v1/people/99999/name", {"name": "x"}, 404),
    ("POST", "/v1/people/1/merge", {"other_ids": []}, 422),
    ("POST", "/v1/people/1/merge", {"other_ids": [1]}, 422),
    ("POST", "/v1/people/1/split", {"face_ids": ["first"]}, 422),
    ("POST", "/v1/people/1/name", {"name": "x", "extra": 1}, 422),
    ("POST", "/v1/people/cluster", {"source": 1}, 422),
])
def test_people_refuses_bad_requests(api: tuple[TestClient, dict[str, str]], method: str, path: str,
                                     body: dict[str, object] | None, status: int) -> None:
    client, keys = api
    response = client.request(method, path, headers=auth(keys["operator"]), json=body)
    assert response.status_code == status, response.text
