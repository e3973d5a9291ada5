"""The public rights portal through its forms: intake, e-mail code, live check, status, package; and what it
refuses."""

from __future__ import annotations

import io
import json
import re
import zipfile
from pathlib import Path

import pytest

from facetrail.accounts.roles import Actor, Role
from facetrail.runtime import Facetrail
from facetrail.web.security import HEADERS
from tests.conftest import sample_bytes
from tests.rights.captures import BUSH, POWELL
from tests.web.conftest import Portal, csrf_of, portal_of, read_code

DPO = Actor("dora", Role.DPO)


def shape(html: str, request_id: str, token: str) -> str:
    """The page with what differs between two requests (reference, token, form token, times, the random
    challenge) blanked."""
    html = html.replace(request_id, "ID").replace(token, "TOKEN").replace(csrf_of(html), "CSRF")
    html = re.sub(r'name="nonce" value="[^"]+"', 'name="nonce" value="NONCE"', html)
    html = re.sub(r'<li data-pose="\w+">[^<]*</li>', "<li>POSE</li>", html)
    html = re.sub(r"(<label for=\"frame-\d\">Step \d: )[^<]*", r"\1POSE", html)
    return re.sub(r"\d{1,2} [A-Z][a-z]+ \d{4}(, \d\d:\d\d UTC)?", "DATE", html)


def test_access_request_through_the_forms(portal: Portal) -> None:
    request_id, token = portal.new_request("access", "george@example.org")
    before = portal.status_page(request_id, token)
    assert "Waiting for you to confirm your identity" in before.text and 'id="answer"' not in before.text
    assert 'id="capture-form"' not in before.text  # no challenge before the e-mail address is confirmed

    coded = portal.send_code(request_id, token, read_code(portal.data, "george@example.org"))
    assert coded.status_code == 200 and "note=code-ok" in str(coded.url)
    assert "your e-mail address is confirmed" in coded.text and 'id="code-form"' not in coded.text
    assert 'id="capture-form"' in coded.text and 'id="answer"' not in coded.text

    checked = portal.send_capture(request_id, token, BUSH)
    assert checked.status_code == 200 and "note=capture-ok" in str(checked.url), checked.text
    assert "A member of our data protection team checks your identity" in checked.text
    assert 'id="answer"' not in checked.text and 'id="capture-form"' not in checked.text

    portal.ft.requests.approve(DPO, request_id, "the key frames show the man of the three matched faces")
    answered = portal.status_page(request_id, token)
    assert "Answered" in answered.text and 'id="answer"' in answered.text
    shown = re.search(r"<dt>Faces of yours in the collection</dt><dd>(\d+)</dd>", answered.text)
    assert shown and int(shown.group(1)) == 3, answered.text
    assert not re.search(r"score|distance|similarity", answered.text, re.IGNORECASE)

    link = re.search(r'id="download" href="([^"]+)"', answered.text)
    assert link and link.group(1).startswith(f"/portal/requests/{request_id}/package?token=")
    package = portal.client.get(link.group(1).replace("&amp;", "&"))
    assert package.status_code == 200 and package.headers["content-type"] == "application/zip"
    assert "attachment" in package.headers["content-disposition"]
    with zipfile.ZipFile(io.BytesIO(package.content)) as archive:
        assert {"index.html", "data.json"} <= set(archive.namelist())
        data = json.loads(archive.read("data.json"))
    assert len(data["faces"]) == 3 and all("George_W_Bush" in f["original_name"] for f in data["faces"])

    as_json = portal.client.get(f"/portal/api/requests/{request_id}", params={"token": token}).json()
    assert as_json["status"] == "completed" and as_json["answer"]["faces"] == len(data["faces"])


def test_a_person_held_and_a_person_not_held_see_the_same_pages(portal: Portal) -> None:
    """Every page up to the DPO's decision is the same, byte for byte but for the request's own reference,
    token, dates and random challenge, whether or not the collection holds the person."""
    pages: dict[str, list[str]] = {}
    for address, person in (("george@example.org", BUSH), ("colin@example.org", POWELL)):
        request_id, token = portal.new_request("access", address)
        seen = [portal.status_page(request_id, token).text]
        wrong = portal.send_code(request_id, token, "000000" if read_code(portal.data, address) != "000000"
                                 else "111111")
        assert "note=code-wrong" in str(wrong.url) and "This code is not right" in wrong.text
        seen.append(wrong.text)
        seen.append(portal.send_code(request_id, token, read_code(portal.data, address)).text)
        page = portal.send_capture(request_id, token, person)
        assert page.status_code == 200 and "your live check is done" in page.text
        assert 'id="answer"' not in page.text and not re.search(r"\d+ (faces|images)", page.text)
        seen.append(page.text)
        status = portal.client.get(f"/portal/api/requests/{request_id}", params={"token": token}).json()
        assert status["status"] == "identity_pending" and status["answer"] is None
        pages[address] = [shape(text, request_id, token) for text in seen] + [
            json.dumps({k: v for k, v in status.items() if k not in ("id", "received_at", "due_at")})]
    assert pages["george@example.org"] == pages["colin@example.org"]


def test_an_unusable_capture_is_asked_again(empty_portal: Portal) -> None:
    request_id, token = empty_portal.new_request("confirm", "someone@example.org")
    empty_portal.send_code(request_id, token, read_code(empty_portal.data, "someone@example.org"))
    nonce, poses = empty_portal.challenge(request_id, token)
    page = empty_portal.send_frames(request_id, token, nonce, [(i, b"not a photo") for i in range(len(poses))])
    assert "note=capture-unusable" in str(page.url) and 'id="capture-form"' in page.text
    assert empty_portal.challenge(request_id, token)[0] != nonce  # the used challenge is replaced
    replayed = empty_portal.send_frames(request_id, token, nonce, [(0, sample_bytes("obama2.jpg"))])
    assert "note=challenge-expired" in str(replayed.url)


def test_a_document_is_added_for_the_dpo(empty_portal: Portal) -> None:
    request_id, token = empty_portal.new_request("access", "someone@example.org")
    posted = empty_portal.client.post(f"/portal/requests/{request_id}/document",
                                      data={"token": token, "csrf": empty_portal.form_token()},
                                      files={"document": ("letter.pdf", b"%PDF-1.4 letter", "application/pdf")})
    assert "note=document-ok" in str(posted.url) and "We received 1 document(s)" in posted.text
    empty = empty_portal.client.post(f"/portal/requests/{request_id}/document",
                                     data={"token": token, "csrf": empty_portal.form_token()},
                                     files={"document": ("empty.pdf", b"", "application/pdf")})
    assert "note=document-unusable" in str(empty.url)
    assert empty_portal.ft.requests.get(DPO, request_id).evidence["documents"][0]["name"] == "letter.pdf"  # type: ignore[index]


def test_security_headers_on_every_kind_of_response(empty_portal: Portal) -> None:
    request_id, token = empty_portal.new_request("confirm", "someone@example.org")
    client = empty_portal.client
    responses = [client.get("/portal"), empty_portal.status_page(request_id, token),
                 empty_portal.status_page(request_id, "wrong"), client.get("/portal/static/portal.css"),
                 client.post("/portal/requests", data={"kind": "confirm", "email": "a@example.org"}),
                 client.get(f"/portal/api/requests/{request_id}", params={"token": token})]
    for response in responses:
        for name, value in HEADERS.items():
            if name == "Cache-Control" and "/static/" in response.url.path:
                value = "no-cache"  # the portal's own CSS and JS may be cached, and revalidated
            assert response.headers.get(name) == value, (response.url, name)
    csp = HEADERS["Content-Security-Policy"]
    assert "default-src 'self'" in csp and "unsafe" not in csp and "frame-ancestors 'none'" in csp
    # What the policy forbids must not be needed: no inline script, style or event handler in the pages.
    for page in responses[:2]:
        assert not re.search(r"<script(?![^>]*\ssrc=)|<style|\sstyle=|\son[a-z]+=", page.text), page.text


def test_form_posts_without_the_csrf_token_are_refused(empty_portal: Portal) -> None:
    client = empty_portal.client
    form = {"kind": "access", "email": "victim@example.org"}
    token = empty_portal.form_token()
    assert client.post("/portal/requests", data=form).status_code == 403
    assert client.post("/portal/requests", data={**form, "csrf": "x" * 43}).status_code == 403
    assert client.post("/portal/requests", data={**form, "csrf": token},
                       headers={"Origin": "https://evil.example"}).status_code == 403
    assert client.post("/portal/requests", data={**form, "csrf": token},
                       headers={"Sec-Fetch-Site": "cross-site"}).status_code == 403
    client.cookies.clear()  # a cross-site post has the field an attacker copied, but not the browser's cookie
    assert client.post("/portal/requests", data={**form, "csrf": token}).status_code == 403
    assert not (empty_portal.data / "outbox").exists() or not list((empty_portal.data / "outbox").iterdir())

    request_id, status_token = empty_portal.new_request("access", "victim@example.org")
    code = read_code(empty_portal.data, "victim@example.org")
    refused = client.post(f"/portal/requests/{request_id}/code", data={"token": status_token, "code": code})
    assert refused.status_code == 403 and "reload the page" in refused.text
    refused = client.post(f"/portal/requests/{request_id}/capture", data={"token": status_token, "steps": ["0"]},
                          files={"frames": ("s.jpg", sample_bytes("obama2.jpg"), "image/jpeg")})
    assert refused.status_code == 403
    status = client.get(f"/portal/api/requests/{request_id}", params={"token": status_token}).json()
    assert status["email_verified"] is False and status["live_check_done"] is False


def test_a_wrong_token_is_the_same_404_as_no_request(empty_portal: Portal) -> None:
    request_id, token = empty_portal.new_request("access", "someone@example.org")
    client = empty_portal.client
    assert empty_portal.status_page(request_id, token).status_code == 200
    wrong = empty_portal.status_page(request_id, token[:-1] + ("A" if token[-1] != "A" else "B"))
    unknown = empty_portal.status_page("0123456789abcdef", token)
    missing = client.get(f"/portal/requests/{request_id}")
    assert wrong.status_code == unknown.status_code == missing.status_code == 404
    assert wrong.text == unknown.text == missing.text and request_id not in wrong.text
    for path in ("code", "capture", "document"):
        posted = client.post(f"/portal/requests/{request_id}/{path}",
                             data={"token": "wrong", "code": "123456", "csrf": empty_portal.form_token(),
                                   "steps": ["0"]},
                             files={"frames": ("s.jpg", sample_bytes("obama2.jpg"), "image/jpeg"),
                                    "document": ("d.pdf", b"%PDF", "application/pdf")})
        assert posted.status_code == 404 and posted.text == unknown.text
    assert client.get(f"/portal/requests/{request_id}/package", params={"token": token}).status_code == 404
    as_json = [client.get(f"/portal/api/requests/{rid}", params={"token": "wrong"}) for rid in (request_id, "nope")]
    assert [r.status_code for r in as_json] == [404, 404] and as_json[0].json() == as_json[1].json()


@pytest.mark.parametrize("kind,message,consent,error", [
    ("access", "", False, None),
    ("", "", False, "Choose what you ask for."),
    ("objection", "", False, "An objection needs the grounds"),
    ("objection", "I am not a public figure.", False, None),
    ("opt-out", "", False, "Opting out needs your consent"),
    ("opt-out", "", True, None),
])
def test_intake_form_checks(empty_portal: Portal, kind: str, message: str, consent: bool, error: str | None) -> None:
    response = empty_portal.intake(kind, "someone@example.org", message, consent)
    if error is None:
        assert response.status_code == 201, response.text
    else:
        assert response.status_code == 422 and error in response.text
        assert 'value="someone@example.org"' in response.text  # the form keeps what was typed


def test_intake_rejects_a_bad_address_and_a_long_message(empty_portal: Portal) -> None:
    bad = empty_portal.intake("access", "not-an-address")
    assert bad.status_code == 422 and "valid e-mail address" in bad.text and 'aria-invalid="true"' in bad.text
    long = empty_portal.intake("access", "someone@example.org", "x" * 5001)
    assert long.status_code == 422 and "longer than 5000" in long.text


def test_intake_is_rate_limited_per_client_address(tmp_path: Path) -> None:
    ft = Facetrail.open(tmp_path / "data", create=True, workers=1, intake_per_hour=2)
    try:
        for portal in portal_of(ft):
            statuses = [portal.intake("confirm", f"person{i}@example.org").status_code for i in range(3)]
            assert statuses == [201, 201, 429]
    finally:
        ft.close()


def test_only_the_listed_static_files_are_served(empty_portal: Portal) -> None:
    client = empty_portal.client
    assert client.get("/portal/static/portal.js").headers["content-type"].startswith("text/javascript")
    for name in ("render.py", "..%2Frender.py", "../templates/base.html"):
        assert client.get(f"/portal/static/{name}").status_code == 404


def test_refusal_and_extension_are_shown_with_their_reasons(empty_portal: Portal, ft: Facetrail) -> None:
    dpo = DPO
    extended_id, extended_token = empty_portal.new_request("rectification", "someone@example.org")
    empty_portal.send_code(extended_id, extended_token, read_code(empty_portal.data, "someone@example.org"))
    assert "note=capture-ok" in str(empty_portal.send_capture(extended_id, extended_token, POWELL).url)
    ft.requests.approve(dpo, extended_id, "a live capture and the address the request came from")
    ft.requests.extend(dpo, extended_id, months=2, reasons="The archive is being moved.")
    page = empty_portal.status_page(extended_id, extended_token).text
    assert "We need more time" in page and "The archive is being moved." in page and "by 2 month(s)" in page
    assert "Being handled (extended)" in page and "data-poll=" in page  # the script watches for the answer

    refused_id, refused_token = empty_portal.new_request("access", "other@example.org")
    ft.requests.refuse(dpo, refused_id, "The request was sent <b>three hundred</b> times in a day.")
    page = empty_portal.status_page(refused_id, refused_token).text
    assert 'id="refusal"' in page and "Refused" in page and "supervisory authority (Art. 77 GDPR)" in page
    assert "&lt;b&gt;three hundred&lt;/b&gt;" in page  # what staff wrote is shown as text, never as markup
    assert 'id="capture-form"' not in page and 'id="answer"' not in page
