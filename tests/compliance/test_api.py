"""The compliance routes: orders for the DPO (an auditor reads them), retention and source retirement."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from facetrail.api import create_app
from facetrail.runtime import Facetrail, local_actor
from tests.compliance.conftest import FR_PHOTOS, TAKEN_IN_PARIS, JurisdictionStore, image_ids
from tests.compliance.gps import PARIS, with_gps

ORDER = {"authority": "CNIL", "reference": "MED-2021-134", "received_on": "2026-11-01", "jurisdictions": ["FR"],
         "cease": True, "erase": True, "deadline": "2026-12-31", "daily_penalty": 100000}


@pytest.fixture
def client(jft: Facetrail) -> Iterator[tuple[TestClient, dict[str, str]]]:
    keys = {role: {"Authorization": f"Bearer {jft.accounts.create(local_actor(), name=role, role=role)[1]}"}
            for role in ("operator", "dpo", "auditor")}
    with TestClient(create_app(jft)) as test_client:
        yield test_client, keys


def test_the_dpo_records_and_runs_an_order_and_the_auditor_follows_it(
        client: tuple[TestClient, dict[str, str]], jft: Facetrail, jurisdiction_store: JurisdictionStore) -> None:
    http, keys = client
    made = http.post("/v1/orders", json=ORDER, headers=keys["dpo"])
    assert made.status_code == 201, made.text
    order = made.json()
    assert (order["images_remaining"], order["faces_remaining"], order["job_state"]) == (4, 4, "not_started")
    assert order["deadline"] == "2026-12-31" and order["recorded_at"].endswith("Z")
    upload = http.post(f"/v1/sources/{jurisdiction_store.de_source}/images", headers=keys["operator"],
                       files={"files": ("paris2.jpg", with_gps("kit_harington2.jpeg", PARIS), "image/jpeg")})
    assert upload.json()["items_refused"] == 1
    assert "enforcement order 1 (CNIL, MED-2021-134)" in upload.json()["errors"][0]["cause"]
    assert http.post(f"/v1/orders/{order['order_id']}/run", headers=keys["auditor"]).status_code == 403
    done = http.post(f"/v1/orders/{order['order_id']}/run", headers=keys["dpo"])
    assert done.status_code == 200, done.text
    assert (done.json()["images_remaining"], done.json()["images_erased"], done.json()["complied"]) == (0, 4, True)
    assert image_ids(jft, *FR_PHOTOS, TAKEN_IN_PARIS) == []
    listed = http.get("/v1/orders", headers=keys["auditor"]).json()
    assert [o["order_id"] for o in listed] == [order["order_id"]] and listed[0]["items_refused"] == 1
    assert http.get("/v1/orders/1", headers=keys["auditor"]).json()["job_state"] == "completed"
    assert http.post("/v1/orders", json=ORDER, headers=keys["auditor"]).status_code == 403


def test_bad_orders_are_refused_naming_the_field(client: tuple[TestClient, dict[str, str]]) -> None:
    http, keys = client
    for change, field in (({"jurisdictions": ["ZZ"]}, "jurisdictions"), ({"cease": False, "erase": False},
                                                                         "measures"),
                          ({"source_ids": [42]}, "source_ids"), ({"deadline": "2026-01-01"}, "deadline")):
        answer = http.post("/v1/orders", json={**ORDER, **change}, headers=keys["dpo"])
        assert answer.status_code == 422 and answer.json()["field"] == field, answer.text
    assert http.get("/v1/orders/99", headers=keys["dpo"]).status_code == 404


def test_retention_and_retirement_through_the_api(client: tuple[TestClient, dict[str, str]], jft: Facetrail,
                                                  jurisdiction_store: JurisdictionStore) -> None:
    http, keys = client
    dry = http.post("/v1/retention/run", json={"dry_run": True}, headers=keys["dpo"])
    assert dry.status_code == 200 and dry.json()["dry_run"] is True and dry.json()["images"] == []
    assert http.post("/v1/retention/run", headers=keys["auditor"]).status_code == 403
    fr = jurisdiction_store.fr_source
    bad = http.post(f"/v1/sources/{fr}/retire", json={"retirement": "shred"}, headers=keys["operator"])
    assert bad.status_code == 422
    kept = http.post(f"/v1/sources/{fr}/retire", json={"retirement": "keep-until-retention"},
                     headers=keys["operator"])
    assert kept.status_code == 200 and kept.json()["images_kept"] == 3 and kept.json()["kept_until"].endswith("Z")
    erased = http.post(f"/v1/sources/{fr}/retire", json={"retirement": "erase"}, headers=keys["operator"])
    assert erased.json()["images_erased"] == 3 and image_ids(jft, *FR_PHOTOS) == []
    refused = http.post(f"/v1/sources/{fr}/images", headers=keys["operator"],
                        files={"files": ("a.jpg", with_gps("kit_harington2.jpeg", PARIS), "image/jpeg")})
    assert refused.status_code == 409 and "retired" in refused.json()["detail"]
