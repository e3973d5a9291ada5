"""The REST API: authentication and roles on every route, ingestion by upload, search, audit."""

from __future__ import annotations

import importlib
import io
import pkgutil
import re
import shutil
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient

from facetrail.api import create_app
from facetrail.api import routes as api_routes
from facetrail.api.guard import GuardedRoute
from facetrail.runtime import Facetrail, local_actor
from tests.conftest import sample_bytes

ROLES = ("operator", "investigator", "dpo", "auditor")
# Who may call each route; every other role must get 403, and no key 401.
ALLOWED = {
    ("GET", "/v1/sources"): {"operator", "investigator", "dpo", "auditor"},
    ("POST", "/v1/sources"): {"operator"},
    ("GET", "/v1/sources/{source_id}"): {"operator", "investigator", "dpo", "auditor"},
    ("PATCH", "/v1/sources/{source_id}"): {"operator"},
    ("GET", "/v1/sources/{source_id}/versions"): {"operator", "investigator", "dpo", "auditor"},
    ("POST", "/v1/sources/{source_id}/images"): {"operator"},
    ("GET", "/v1/sources/{source_id}/urls"): {"operator", "investigator", "dpo", "auditor"},
    ("POST", "/v1/sources/{source_id}/urls"): {"operator"},
    ("POST", "/v1/sources/{source_id}/urls/ingest"): {"operator"},
    ("POST", "/v1/search"): {"investigator"},
    ("GET", "/v1/searches/{search_id}/faces/{face_id}/crop"): {"investigator"},
    ("GET", "/v1/searches/{search_id}/faces/{face_id}/frame"): {"investigator"},
    ("GET", "/v1/accounts"): {"operator", "dpo"},
    ("POST", "/v1/accounts"): {"operator", "dpo"},
    ("GET", "/v1/audit"): {"auditor", "dpo"},
    ("GET", "/v1/audit/verify"): {"auditor", "dpo"},
    ("GET", "/v1/audit/checkpoint"): {"auditor", "dpo"},
    ("GET", "/v1/audit/proof/inclusion"): {"auditor", "dpo"},
    ("GET", "/v1/audit/proof/consistency"): {"auditor", "dpo"},
    ("GET", "/v1/requests"): {"dpo"},
    ("GET", "/v1/requests/{request_id}"): {"dpo"},
    ("GET", "/v1/requests/{request_id}/evidence"): {"dpo"},
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
    ("GET", "/v1/orders"): {"dpo", "auditor"},
    ("POST", "/v1/orders"): {"dpo"},
    ("GET", "/v1/orders/{order_id}"): {"dpo", "auditor"},
    ("POST", "/v1/orders/{order_id}/run"): {"dpo"},
    ("POST", "/v1/retention/run"): {"operator", "dpo"},
    ("POST", "/v1/sources/{source_id}/retire"): {"operator"},
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
    # The role tests send many requests from one address: a per-address limit high enough never to answer 429.
    ft = Facetrail.open(data, workers=1, requests_per_minute_per_ip=1_000_000)
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


# Bodies no route accepts: not JSON at all, JSON of the wrong shape, a form where JSON is expected.
INVALID_BODIES: list[dict[str, object]] = [
    {"content": b"{not json", "headers": {"Content-Type": "application/json"}},
    {"json": {"unexpected": ["x" * 10]}},
    {"data": {"photo": "not a file", "top": "many"}},
]


def invalid_path(path: str) -> str:
    """The route with a value that is not a number in each path parameter (most of them are numbers)."""
    return re.sub(r"\{[^}]+\}", "not-a-number", path)


def valid_call(method: str, path: str) -> dict[str, object]:
    """The parts of a valid call to the route (files, form, JSON body or query), without its headers."""
    if path == "/v1/search":
        return {"files": {"photo": ("q.jpg", sample_bytes("obama_small.jpg"), "image/jpeg")},
                "data": {"purpose": "demo", "case": "c"}}
    if path.endswith("/images"):
        return {"files": {"files": ("a.jpg", sample_bytes("obama_small.jpg"), "image/jpeg")}}
    if path.startswith("/v1/audit/proof/"):
        return {"params": {"seq": 1, "first": 1, "second": 1}}
    bodies: dict[tuple[str, str], object] = {
        ("POST", "/v1/sources"): valid_source("role-check"),
        ("PATCH", "/v1/sources/{source_id}"): {"description": "role check"},
        ("POST", "/v1/accounts"): {"name": "someone", "role": "operator"},
        ("POST", "/v1/orders"): {"authority": "CNIL", "reference": "R", "received_on": "2026-11-01",
                                 "jurisdictions": ["FR"], "cease": True, "deadline": "2026-12-31"},
        ("POST", "/v1/sources/{source_id}/retire"): {"retirement": "keep-until-retention"},
        ("POST", "/v1/sources/{source_id}/urls"): {"urls": ["https://club.example/a.jpg"]},
        **{("POST", route): body for route, body in BREACH_BODIES.items()},
    }
    tail = path[path.rindex("/"):]
    if path.startswith("/v1/people/{person_id}/"):
        return {"json": PEOPLE_BODIES[tail]}
    if path.startswith("/v1/requests/{request_id}/"):
        return {"json": REQUEST_BODIES.get(tail)}
    return {"json": bodies[(method, path)]} if (method, path) in bodies else {}


@pytest.mark.parametrize("method,path", sorted(ALLOWED))
def test_every_route_checks_the_role(api: tuple[TestClient, dict[str, str]], method: str, path: str) -> None:
    client, keys = api
    for role in set(ROLES) - ALLOWED[(method, path)]:
        call = valid_call(method, path)
        response = client.request(method, concrete(path), headers=auth(keys[role]), **call)  # type: ignore[arg-type]
        assert response.status_code == 403, (method, path, role, response.text)


def test_every_staff_route_is_guarded() -> None:
    """Each staff route declares its roles, so the guard runs first (a route without one fails at start-up)."""
    modules = [importlib.import_module(f"facetrail.api.routes.{m.name}") for m in pkgutil.iter_modules(
        api_routes.__path__)]
    routes = [r for module in modules for r in module.router.routes if getattr(r, "path", "").startswith("/v1/")]
    assert all(isinstance(r, GuardedRoute) for r in routes)
    assert {(m, r.path) for r in routes if isinstance(r, APIRoute) for m in r.methods} == set(ALLOWED)


BREACH_BODIES: dict[str, object] = {
    "/v1/breaches": {"title": "t", "nature": "n", "data_categories": ["d"], "subject_categories": ["s"],
                     "consequences": "c", "measures": "m"},
    "/v1/breaches/{breach_id}/updates": {"note": "n", "approx_subjects": 1},
}
REQUEST_BODIES: dict[str, object] = {
    "/approve": {"reason": "x"},
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
    # The threshold follows the faces searched; each result says what its band means at that size.
    reach = body["reach"]
    assert body["min_band"] == reach["min_band"] == "auto" and reach["gallery_size"] > 1
    assert reach["target_fpir"] == 0.01 and reach["fpir"] == pytest.approx(0.01, rel=1e-3)
    assert all(r["distance"] <= reach["max_distance"] and 0 < r["fmr"] <= r["fpir"] <= 0.0101
               for r in body["results"])
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
    assert [e["name"] for e in report["errors"]] == ["broken.jpg"] and report["outcome"] == "partial"
    again = client.post(f"/v1/sources/{source_id}/images", headers=auth(keys["operator"]), files=files).json()
    assert again["images_added"] == 0 and again["images_skipped"] == 2 and again["outcome"] == "partial"


def test_upload_of_a_zip_of_a_bad_video_and_other_files(api: tuple[TestClient, dict[str, str]]) -> None:
    client, keys = api
    source_id = client.post("/v1/sources", headers=auth(keys["operator"]), json=valid_source("videos")).json()["id"]
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("clips/goal.mp4", b"\x00\x00\x00\x18ftypmp42")
        zf.writestr("clips/notes.txt", b"match report")
        zf.writestr("README", b"no suffix")
    response = client.post(f"/v1/sources/{source_id}/images", headers=auth(keys["operator"]),
                           files={"files": ("clips.zip", archive.getvalue(), "application/zip")})
    assert response.status_code == 200, response.text
    report = response.json()
    # The video is tried (and is no sound video: 14 bytes of a header), the other files are listed as skipped.
    assert report["outcome"] == "failed" and report["images_added"] == 0 and report["videos_added"] == 0
    assert [e["name"] for e in report["errors"]] == ["clips.zip!clips/goal.mp4"]
    assert report["errors"][0]["cause"].startswith("truncated or corrupt video")
    assert report["skipped"] == [
        {"name": "clips.zip!clips/notes.txt", "reason": "not an image or video file type (.txt)"},
        {"name": "clips.zip!README", "reason": "not an image or video file type (no suffix)"},
    ]


def test_search_for_a_purpose_without_a_source_is_422_naming_the_purposes(
        api: tuple[TestClient, dict[str, str]]) -> None:
    client, keys = api
    response = client.post("/v1/search", headers=auth(keys["investigator"]), data={"purpose": "find-my-photo",
                                                                                 "case": "c"},
                           files={"photo": ("q.jpg", sample_bytes("obama_small.jpg"), "image/jpeg")})
    assert response.status_code == 422
    body = response.json()
    assert body["error"] == "InvalidValueError" and body["field"] == "purpose"
    assert body["detail"].startswith("purpose: no source is registered for the purpose 'find-my-photo'; purposes "
                                     "with sources you may search: demo")


def test_invalid_source_names_the_field(api: tuple[TestClient, dict[str, str]]) -> None:
    client, keys = api
    response = client.post("/v1/sources", headers=auth(keys["operator"]),
                           json={**valid_source("bad"), "art9_condition": "z"})
    assert response.status_code == 422 and response.json()["field"] == "art9_condition"
    response = client.post("/v1/sources", headers=auth(keys["operator"]),
                           json={**valid_source("bad"), "retention_days": "forever"})
    assert response.status_code == 422 and "retention_days" in response.text


def test_declared_urls_are_listed_and_their_ingestion_needs_a_contact(api: tuple[TestClient, dict[str, str]]) -> None:
    client, keys = api
    source_id = client.post("/v1/sources", headers=auth(keys["operator"]), json=valid_source("web")).json()["id"]
    urls = ["https://club.example/a.jpg", "https://club.example/b.jpg"]
    declared = client.post(f"/v1/sources/{source_id}/urls", headers=auth(keys["operator"]), json={"urls": urls})
    assert declared.json() == {"source_id": source_id, "added": 2, "already": 0}, declared.text
    listed = client.get(f"/v1/sources/{source_id}/urls", headers=auth(keys["auditor"])).json()
    assert [u["url"] for u in listed] == urls and listed[0]["declared_at"].endswith("Z")
    refused = client.post(f"/v1/sources/{source_id}/urls", headers=auth(keys["operator"]),
                          json={"urls": ["file:///etc/passwd"]})
    assert refused.status_code == 422 and "only http and https" in refused.json()["detail"]
    # No contact for the sites in the User-Agent (FACETRAIL_FETCH_CONTACT): nothing is fetched.
    response = client.post(f"/v1/sources/{source_id}/urls/ingest", headers=auth(keys["operator"]))
    assert response.status_code == 422 and response.json()["field"] == "fetch_contact"


def test_upload_to_unregistered_source_is_refused(api: tuple[TestClient, dict[str, str]]) -> None:
    client, keys = api
    response = client.post("/v1/sources/999/images", headers=auth(keys["operator"]),
                           files={"files": ("a.jpg", sample_bytes("obama_small.jpg"), "image/jpeg")})
    assert response.status_code == 404 and "not registered" in response.json()["detail"]


def test_accounts_and_disabled_keys(api: tuple[TestClient, dict[str, str]]) -> None:
    client, keys = api
    created = client.post("/v1/accounts", headers=auth(keys["dpo"]), json={"name": "temp", "role": "auditor"})
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


def test_source_update_in_place_and_as_a_new_version(api: tuple[TestClient, dict[str, str]]) -> None:
    client, keys = api
    operator = auth(keys["operator"])
    source = client.post("/v1/sources", headers=operator, json=valid_source("edited")).json()
    assert source["version"] == 1 and source["controller_contact"] == ""
    url = f"/v1/sources/{source['id']}"
    edited = client.patch(url, headers=operator, json={"retention_days": 30, "controller_contact": "dpo@agency.example",
                                                       "evidence_ref": "law 2026-2"})
    assert edited.status_code == 200, edited.text
    assert edited.json() == source | {
        "retention_days": 30, "controller_contact": "dpo@agency.example", "evidence_ref": "law 2026-2"}
    refused = client.patch(url, headers=operator, json={"legal_basis": "consent", "art9_condition": "a"})
    assert refused.status_code == 422 and refused.json()["field"] == "reason"
    versioned = client.patch(url, headers=operator, json={"legal_basis": "consent", "art9_condition": "a",
                                                          "reason": "the agency now asks for consent"})
    assert versioned.status_code == 200 and versioned.json()["version"] == 2
    assert client.get(url, headers=operator).json()["legal_basis"] == "consent"
    history = client.get(f"{url}/versions", headers=auth(keys["auditor"])).json()
    assert [(v["version"], v["legal_basis"], v["art9_condition"], v["reason"]) for v in history] == [
        (1, "public_task", "g", "registered"), (2, "consent", "a", "the agency now asks for consent")]
    bad = client.patch(url, headers=operator, json={"name": "renamed"})
    assert bad.status_code == 422  # not editable: a source's name and controller stay what was registered
    assert client.patch("/v1/sources/999", headers=operator, json={"description": "x"}).status_code == 404
