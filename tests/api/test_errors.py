"""Every error body has one shape, {"detail", "error", "field"}: the domain's errors, FastAPI's request validation
errors, and Starlette's own refusals (no such route, method not allowed, an unreadable body)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from httpx2 import Response

from facetrail.api import create_app
from facetrail.runtime import Facetrail, local_actor
from facetrail.vision import model_files
from tests.api.test_api import auth, valid_source
from tests.conftest import add_source, sample_bytes


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[TestClient, str]]:
    ft = Facetrail.open(tmp_path_factory.mktemp("errors") / "data", create=True, workers=1)
    key = ft.accounts.create(local_actor(), name="op", role="operator")[1]
    with TestClient(create_app(ft)) as test_client:
        yield test_client, key
    ft.close()


def error_of(response: Response, status: int) -> dict[str, object]:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"detail", "error", "field"}, body
    assert isinstance(body["detail"], str) and body["detail"] and isinstance(body["error"], str)
    return dict(body)


@pytest.mark.parametrize("change,field", [
    ({"retention_days": "forever"}, "retention_days"),
    ({"purposes": ["press", 7]}, "purposes.1"),
    ({"name": None}, "name"),
    ({"colour": "blue"}, "colour"),
])
def test_a_body_that_fails_validation_names_its_field(client: tuple[TestClient, str], change: dict[str, object],
                                                      field: str) -> None:
    test_client, key = client
    body = error_of(test_client.post("/v1/sources", headers=auth(key), json={**valid_source("x"), **change}), 422)
    assert body["error"] == "InvalidValueError" and body["field"] == field
    assert str(body["detail"]).startswith(f"{field}: ")


def test_every_problem_is_listed_and_the_first_named(client: tuple[TestClient, str]) -> None:
    test_client, key = client
    body = error_of(test_client.post("/v1/sources", headers=auth(key), json={"name": "x"}), 422)
    missing = ["controller", "purposes", "legal_basis", "art9_condition", "evidence_ref", "jurisdictions",
               "retention_days"]
    assert body["field"] == "controller"
    assert all(f"{name}: Field required" in str(body["detail"]) for name in missing), body["detail"]


def test_query_and_path_values_name_their_parameter(client: tuple[TestClient, str]) -> None:
    test_client, key = client
    assert error_of(test_client.get("/v1/people", headers=auth(key), params={"source_id": "x"}), 422)["field"] \
        == "source_id"
    assert error_of(test_client.get("/v1/sources/first", headers=auth(key)), 422)["field"] == "source_id"


def test_a_body_that_is_not_json(client: tuple[TestClient, str]) -> None:
    test_client, key = client
    body = error_of(test_client.post("/v1/sources", headers={**auth(key), "Content-Type": "application/json"},
                                     content=b'{"name": '), 422)
    assert body["field"] == "body" and "not valid JSON" in str(body["detail"])


def test_a_domain_error_keeps_its_kind_and_field(client: tuple[TestClient, str]) -> None:
    test_client, key = client
    body = error_of(test_client.post("/v1/sources", headers=auth(key), json={**valid_source("x"),
                                                                            "legal_basis": "whim"}), 422)
    assert body["error"] == "InvalidValueError" and body["field"] == "legal_basis"
    missing = error_of(test_client.get("/v1/sources/999", headers=auth(key)), 404)
    assert missing["error"] == "NotFoundError" and missing["field"] is None
    assert error_of(test_client.get("/v1/sources"), 401)["error"] == "KeyRefusedError"


def test_routing_refusals_have_the_same_shape(client: tuple[TestClient, str]) -> None:
    test_client, _ = client
    assert error_of(test_client.get("/v1/nowhere"), 404)["error"] == "NotFoundError"
    refused = test_client.delete("/health")
    assert error_of(refused, 405)["error"] == "HTTPError" and refused.headers["allow"] == "GET"


def test_the_schema_documents_the_one_shape(client: tuple[TestClient, str]) -> None:
    test_client, _ = client
    schema = test_client.get("/openapi.json").json()
    error_body = schema["components"]["schemas"]["ErrorBody"]
    assert set(error_body["required"]) == {"detail", "error", "field"}
    assert error_body["properties"]["detail"]["type"] == "string"
    create = schema["paths"]["/v1/sources"]["post"]["responses"]["422"]["content"]["application/json"]["schema"]
    assert create["$ref"].endswith("/ErrorBody")
    assert "HTTPValidationError" not in schema["components"]["schemas"]


def test_a_search_while_a_model_file_is_damaged_is_503_naming_the_file(tmp_path: Path,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """Not the investigator's bad input (422): the installation must be repaired before anything is analysed."""
    monkeypatch.setitem(model_files.SHA256, "face-reidentification-retail-0095.bin", "0" * 64)
    ft = Facetrail.open(tmp_path / "data", create=True, workers=1)
    try:
        add_source(ft)
        key = ft.accounts.create(local_actor(), name="inv", role="investigator")[1]
        with TestClient(create_app(ft)) as test_client:
            response = test_client.post("/v1/search", headers=auth(key), data={"purpose": "demo", "case": "c"},
                                        files={"photo": ("q.jpg", sample_bytes("obama2.jpg"), "image/jpeg")})
        body = error_of(response, 503)
        assert body["error"] == "ModelUnavailableError" and body["field"] is None
        assert "face-reidentification-retail-0095.bin" in str(body["detail"])
        assert "reinstall facetrail" in str(body["detail"])
    finally:
        ft.close()
