"""The DPO's request page beyond the decisions: the identity evidence (the live check's key frames beside the held
faces they matched, with scores) and the access package of an answered request, both audited, both the DPO's."""

from __future__ import annotations

import io
import re
import zipfile

from fastapi.testclient import TestClient
from PIL import Image

from facetrail.api import create_app
from facetrail.runtime import Facetrail, local_actor
from tests.rights.captures import BUSH, bush_ft
from tests.rights.test_identity_proof import answer
from tests.web.conftest import csrf_of
from tests.web.staff import audit_entries, sign_in, staff

__all__ = ["bush_ft"]  # the fixture, used by name


def test_the_evidence_and_the_package_are_shown_to_the_dpo_and_audited(bush_ft: Facetrail) -> None:
    ft = bush_ft
    request_id, _, failure = answer(ft, "access", "george@example.org", BUSH)
    assert failure is None
    staff(ft, "dana", "dpo")
    with TestClient(create_app(ft)) as client:
        sign_in(client, "dana")
        page = client.get(f"/console/requests/{request_id}").text
        assert f'href="/console/requests/{request_id}/evidence"' in page and 'id="package-link"' not in page
        assert not audit_entries(ft, "request.evidence_viewed")  # the request page alone reads no evidence
        evidence = client.get(f"/console/requests/{request_id}/evidence")
        assert evidence.status_code == 200
        matches = re.findall(r"<tr><td>(\d+)</td><td>([\d.]+)</td><td>(\w+)</td>", evidence.text)
        held = ft.requests.get(local_actor(), request_id).matched_face_ids or []
        assert [int(face) for face, _, _ in matches] == held and len(held) == 3
        assert all(band in {"strong", "probable", "possible"} for _, _, band in matches)
        assert len(re.findall(r"<tr><td>\d</td><td>(?:left|right|up|down|front|rest)\w*</td>", evidence.text)) >= 1
        assert "passed" in evidence.text  # the attempt that passed, listed
        sheet = client.get(f"/console/requests/{request_id}/evidence/sheet")
        assert sheet.status_code == 200 and sheet.headers["content-type"] == "image/jpeg"
        picture = Image.open(io.BytesIO(sheet.content))
        assert picture.height == 2 * (160 + 20) and picture.width >= 3 * 160  # frames above, the 3 faces below
        assert [a for a, _, _ in audit_entries(ft, "request.evidence_viewed")] == ["dana", "dana"]

        assert client.get(f"/console/requests/{request_id}/package").status_code == 404  # not answered yet
        token = csrf_of(page)
        approved = client.post(f"/console/requests/{request_id}/decide", follow_redirects=False, data={
            "decision": "approve", "text": "The live check matches the held photos.", "csrf": token})
        assert approved.status_code == 303, approved.text
        page = client.get(f"/console/requests/{request_id}").text
        assert 'id="status">completed<' in page and 'id="package-link"' in page  # answered once approved
        package = client.get(f"/console/requests/{request_id}/package")
        assert package.status_code == 200 and package.headers["content-type"] == "application/zip"
        assert f'filename="facetrail-{request_id}.zip"' in package.headers["content-disposition"]
        with zipfile.ZipFile(io.BytesIO(package.content)) as archive:
            assert "data.json" in archive.namelist()
        assert audit_entries(ft, "request.package_read") == [("dana", "request.package_read",
                                                               {"request_id": request_id})]

        staff(ft, "ivan", "investigator")
        sign_in(client, "ivan")
        for path in ("evidence", "evidence/sheet", "package"):
            assert client.get(f"/console/requests/{request_id}/{path}").status_code == 403
    assert len(audit_entries(ft, "request.evidence_viewed")) == 2  # refused: nothing read
    assert len(audit_entries(ft, "request.package_read")) == 1
