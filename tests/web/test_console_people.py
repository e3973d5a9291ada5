"""The console's People pages without a browser: grouping faces into people, each shown by a face crop served
through PeopleService's own check; naming, merging and splitting with the API's service calls, each audited;
refused to every role but the operator's."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import update

from facetrail.api import create_app
from facetrail.runtime import Facetrail, local_actor
from facetrail.store.models import Face
from tests.web.conftest import csrf_of
from tests.web.staff import audit_entries, sign_in, staff


@pytest.fixture
def client(samples_ft: Facetrail) -> Iterator[TestClient]:
    with TestClient(create_app(samples_ft)) as instance:
        yield instance


@pytest.fixture
def operator(samples_ft: Facetrail, client: TestClient) -> TestClient:
    """The client signed in as an operator, the sample faces grouped into people through the page."""
    staff(samples_ft, "otto", "operator")
    sign_in(client, "otto")
    empty = client.get("/console/people")
    assert empty.status_code == 200 and 'id="no-people"' in empty.text
    grouped = client.post("/console/people/cluster", data={"csrf": csrf_of(empty.text)})
    assert grouped.status_code == 200 and 'id="cluster-report"' in grouped.text
    return client


def people_on(html: str) -> list[int]:
    return [int(n) for n in re.findall(r'<li data-person="(\d+)">', html)]


def test_people_are_listed_with_their_face_and_the_crops_pass_the_service_check(samples_ft: Facetrail,
                                                                              operator: TestClient) -> None:
    page = operator.get("/console/people").text
    listed = people_on(page)
    everyone = samples_ft.people.list(local_actor())
    assert listed == [p.id for p in everyone] and len(listed) > 3  # most faces first
    first = everyone[0]
    assert f'src="/console/people/faces/{first.face_id}/crop"' in page
    crop = operator.get(f"/console/people/faces/{first.face_id}/crop")
    assert crop.status_code == 200 and crop.content[:2] == b"\xff\xd8" and crop.headers["cache-control"] == "no-store"
    # A restricted face (Art. 18) is kept but not shown.
    with samples_ft.db.write() as session, session.begin():
        session.execute(update(Face).where(Face.id == first.face_id).values(restricted=True))
    assert operator.get(f"/console/people/faces/{first.face_id}/crop").status_code == 404
    assert operator.get("/console/people/faces/999999/crop").status_code == 404
    report = audit_entries(samples_ft, "people.cluster")
    assert report[-1][0] == "otto"


def test_name_merge_and_split_from_a_persons_page_are_audited(samples_ft: Facetrail, operator: TestClient) -> None:
    everyone = samples_ft.people.list(local_actor())
    big, second, third = everyone[0], everyone[1], everyone[2]
    page = operator.get(f"/console/people/{big.id}")
    assert page.status_code == 200 and len(re.findall(r'name="faces" value="\d+"', page.text)) == big.faces
    assert audit_entries(samples_ft, "people.show")[-1] == ("otto", "people.show",
                                                            {"person_id": big.id, "faces": big.faces})
    token = csrf_of(page.text)

    too_long = operator.post(f"/console/people/{big.id}/name", data={"name": "x" * 201, "csrf": token})
    assert too_long.status_code == 422 and "at most 200 characters" in too_long.text
    named = operator.post(f"/console/people/{big.id}/name", data={"name": " Barack Obama ", "csrf": token})
    assert "Barack Obama" in named.text and "Name saved." in named.text

    bad = operator.post(f"/console/people/{big.id}/merge", data={"others": "two, three", "csrf": token})
    assert bad.status_code == 422 and "separated by commas" in bad.text and 'value="two, three"' in bad.text
    itself = operator.post(f"/console/people/{big.id}/merge", data={"others": str(big.id), "csrf": token})
    assert itself.status_code == 422 and "into itself" in itself.text
    missing = operator.post(f"/console/people/{big.id}/merge", data={"others": "999999", "csrf": token})
    assert missing.status_code == 422 and "does not exist" in missing.text
    merged = operator.post(f"/console/people/{big.id}/merge", data={"others": f"{second.id}, {third.id}",
                                                                   "csrf": token})
    assert "People merged into this one." in merged.text
    total = big.faces + second.faces + third.faces
    assert f"{total} face(s)" in merged.text
    assert operator.get(f"/console/people/{second.id}").status_code == 404

    none = operator.post(f"/console/people/{big.id}/split", data={"csrf": token})
    assert none.status_code == 422 and "tick the faces" in none.text
    faces = [int(f) for f in re.findall(r'name="faces" value="(\d+)"', merged.text)]
    every = operator.post(f"/console/people/{big.id}/split", data={"faces": faces, "csrf": token})
    assert every.status_code == 422 and "leaves nothing to split" in every.text
    split = operator.post(f"/console/people/{big.id}/split", data={"faces": faces[-2:], "csrf": token},
                          follow_redirects=False)
    assert split.status_code == 303
    new_page = operator.get(split.headers["location"]).text
    assert "The chosen faces are now a new person." in new_page and "2 face(s)" in new_page
    actions = [(actor, action) for actor, action, _ in audit_entries(samples_ft, "people.")
               if action in {"people.name", "people.merge", "people.split"}]
    assert actions == [("otto", "people.name"), ("otto", "people.merge"), ("otto", "people.split")]
    assert operator.post(f"/console/people/{big.id}/name", data={"name": "x"}).status_code == 403  # no token


def test_people_are_the_operators_alone(samples_ft: Facetrail, client: TestClient) -> None:
    samples_ft.people.cluster(local_actor())
    face = samples_ft.people.list(local_actor())[0].face_id
    for role in ("investigator", "dpo", "auditor"):
        staff(samples_ft, f"someone-{role}", role)
        sign_in(client, f"someone-{role}")
        home = client.get("/console").text
        assert 'href="/console/people"' not in home
        assert client.get("/console/people").status_code == 403
        assert client.get(f"/console/people/faces/{face}/crop").status_code == 403
        assert client.post("/console/people/1/name", data={"name": "x", "csrf": csrf_of(home)}).status_code == 403
        assert audit_entries(samples_ft, "auth.denied")[-1][0] == f"someone-{role}"
