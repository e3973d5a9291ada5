"""schemathesis over every operation of the OpenAPI schema, in-process (ASGI), each with a key of a role that
may call it: no 5xx, and responses that conform to the schema."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import response_schema_conformance

from facetrail.api import create_app
from facetrail.runtime import Facetrail, local_actor
from tests.api.test_api import ALLOWED, PUBLIC, ROLES

MAX_EXAMPLES = 15
OPERATIONS = sorted(ALLOWED) + sorted(PUBLIC)


@pytest.fixture(scope="module")
def fuzz_target(samples_store: Path,
                tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[schemathesis.BaseSchema, dict[str, str]]]:
    data = tmp_path_factory.mktemp("fuzz") / "data"
    shutil.copytree(samples_store, data)
    # Rate limits high enough never to answer 429 instead of the operation under test.
    ft = Facetrail.open(data, workers=1, search_per_minute=1_000_000, requests_per_minute_per_ip=1_000_000)
    keys = {role: ft.accounts.create(local_actor(), name=f"fuzz-{role}", role=role)[1] for role in ROLES}
    yield schemathesis.openapi.from_asgi("/openapi.json", create_app(ft)), keys
    ft.close()


@pytest.mark.parametrize("method,path", OPERATIONS)
def test_operation_survives_fuzzing(fuzz_target: tuple[schemathesis.BaseSchema, dict[str, str]],
                                    method: str, path: str) -> None:
    schema, keys = fuzz_target
    operation = schema[path][method]
    allowed = ALLOWED.get((method, path))
    headers = {"Authorization": f"Bearer {keys[sorted(allowed)[0]]}"} if allowed else {}

    statuses: list[int] = []

    @settings(max_examples=MAX_EXAMPLES, deadline=None, database=None, derandomize=True,
              suppress_health_check=list(HealthCheck))
    @given(st.data())
    def fuzz(data: st.DataObject) -> None:
        case = data.draw(operation.as_strategy())
        response = case.call(headers=headers)
        statuses.append(response.status_code)
        # Error bodies are documented too (ErrorBody): every answer must conform to the schema.
        case.validate_response(response, checks=[not_a_server_error, response_schema_conformance], headers=headers)

    fuzz()
    assert statuses and any(status not in (401, 403) for status in statuses), statuses  # the key was accepted


def test_out_of_range_number_is_a_client_error(fuzz_target: tuple[schemathesis.BaseSchema, dict[str, str]]) -> None:
    schema, keys = fuzz_target
    case = schema["/v1/people"]["GET"].Case(query={"source_id": 2**64})
    response = case.call(headers={"Authorization": f"Bearer {keys['operator']}"})
    assert response.status_code == 400 and "out of range" in response.json()["detail"]
