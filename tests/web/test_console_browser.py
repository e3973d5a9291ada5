"""The staff console end to end in a real browser: Debian's Chromium driven by Playwright, against uvicorn.
Every test records the browser's requests: no page may ask anything of another server."""

from __future__ import annotations

import contextlib
import shutil
from collections.abc import Iterator
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, Page, Response
from playwright.sync_api import Error as PlaywrightError

from facetrail.accounts.staff import MAX_FAILURES
from facetrail.runtime import Facetrail
from tests.conftest import SAMPLES
from tests.web.conftest import needs_chromium, serve
from tests.web.staff import PASSWORD, audit_entries, received_days_ago, staff

pytestmark = needs_chromium

OBAMA = {"obama.jpg", "obama2.jpg", "obama3.jpg", "obama-1080p.jpg", "obama-240p.jpg", "obama_small.jpg",
         "obama_partial_face.jpg", "obama_partial_face2.jpg", "obama_and_biden.jpg", "two_people.jpg", "32bit.png"}


EXPECTED_STATUS = ("Failed to load resource: the server responded with a status of 401",
                   "Failed to load resource: the server responded with a status of 403",
                   "Failed to load resource: the server responded with a status of 422")


class Session:
    """A browser page signed in (or not) to the console, recording every URL it requested."""

    def __init__(self, browser: Browser, base: str) -> None:
        self.base = base
        self.page: Page = browser.new_page()
        self.requested: list[str] = []
        self.page.on("request", lambda request: self.requested.append(request.url))
        # Script errors and refused loads (a Content-Security-Policy violation is reported as one); a page answered
        # 401 or 403 on purpose is reported too, and left out here (its status is asserted where it is expected).
        self.errors: list[str] = []
        self.page.on("console", lambda m: self.errors.append(m.text)
                     if m.type == "error" and not m.text.startswith(EXPECTED_STATUS) else None)
        self.page.on("pageerror", lambda error: self.errors.append(str(error)))

    def sign_in(self, name: str, password: str = PASSWORD) -> None:
        self.page.goto(f"{self.base}/console")  # redirected to the sign-in form
        self.page.fill("#name", name)
        self.page.fill("#password", password)
        self.page.click("button[type=submit]")
        self.page.wait_for_load_state("load")  # the page the form leads to, whole, before anyone reads it

    def only_this_server(self) -> None:
        assert self.requested, "the page requested nothing"
        foreign = [url for url in self.requested if not url.startswith(self.base + "/")]
        assert not foreign, foreign


@pytest.fixture
def live(samples_ft: Facetrail) -> Iterator[str]:
    yield from serve(samples_ft)


def test_sign_in_then_lock_out_after_wrong_passwords(live: str, browser: Browser, samples_ft: Facetrail) -> None:
    staff(samples_ft, "dana", "dpo")
    staff(samples_ft, "lucy", "investigator")
    user = Session(browser, live)
    user.sign_in("dana")
    assert user.page.url == f"{live}/console"
    assert "Welcome, dana" in user.page.inner_text("h1")
    user.page.click("text=Sign out")
    assert user.page.url == f"{live}/console/sign-in"
    user.page.goto(f"{live}/console/requests")
    assert user.page.url == f"{live}/console/sign-in"  # signed out: back to the form

    for _ in range(MAX_FAILURES):
        user.sign_in("lucy", "a wrong password")
    assert "locked until" in user.page.inner_text("#sign-in-error")
    user.sign_in("lucy")
    assert "locked until" in user.page.inner_text("#sign-in-error")
    assert user.page.url == f"{live}/console/sign-in"
    actions = [action for _, action, _ in audit_entries(samples_ft, "console.")]
    assert actions == (["console.signin", "console.signout"] + ["console.signin_failed"] * MAX_FAILURES
                       + ["console.locked", "console.signin_failed"])
    user.only_this_server()
    assert not user.errors, user.errors


def test_a_search_shows_the_right_persons_faces_first_and_is_logged(live: str, browser: Browser,
                                                                      samples_ft: Facetrail) -> None:
    staff(samples_ft, "ivan", "investigator")
    user = Session(browser, live)
    user.sign_in("ivan")
    user.page.click("nav >> text=Search")
    assert "search is logged" in user.page.inner_text("#logged-note")
    user.page.set_input_files("#photo", str(SAMPLES / "obama2.jpg"))
    user.page.fill("#case", "CASE-2026-17")
    user.page.click("button:has-text('Search')")  # no purpose chosen: the browser asks for it first
    assert user.page.url == f"{live}/console/search"
    assert user.page.query_selector("#results") is None
    user.page.select_option("#purpose", "demo")
    user.page.click("button:has-text('Search')")
    user.page.wait_for_selector("#results")
    user.page.wait_for_load_state("load")
    hits = user.page.query_selector_all("#results li")
    names = [hit.get_attribute("data-image") or "" for hit in hits]
    assert len(names) >= 4 and all(Path(n).name in OBAMA for n in names[:4]), names
    assert not any("kit" in n or "rose" in n for n in names[:4])
    # Every crop loaded (through the search's own access check), each shown with its band, score and source.
    assert user.page.evaluate("[...document.querySelectorAll('#results img')].every(i => i.naturalWidth > 0)"), \
        user.errors
    first = hits[0].inner_text()
    assert "Band" in first and "Score" in first and "samples" in first
    user.page.wait_for_selector("#history >> text=CASE-2026-17")
    searches = [d for actor, _, d in audit_entries(samples_ft, "search") if actor == "ivan"]
    assert len(searches) == 1 and searches[0]["case"] == "CASE-2026-17" and searches[0]["purpose"] == "demo"
    shown = [int(hit.get_attribute("data-face") or 0) for hit in hits]
    assert searches[0]["result_face_ids"] == shown
    # The filters narrow the results shown: collected after the last day, none; from the first, all; by source,
    # all (there is one).
    days = sorted(hit.get_attribute("data-date") or "" for hit in hits)
    user.page.fill("#filter-from", (date.fromisoformat(days[-1]) + timedelta(days=1)).isoformat())
    assert user.page.inner_text("#filter-count") == f"0 of {len(hits)} result(s) shown."
    assert not any(hit.is_visible() for hit in hits)
    user.page.fill("#filter-from", days[0])
    user.page.select_option("#filter-source", "samples")
    assert user.page.inner_text("#filter-count") == f"{len(hits)} of {len(hits)} result(s) shown."
    # The full image with the face outlined, opened from the first result.
    user.page.click(f"#results li[data-face='{shown[0]}'] a.full")
    user.page.wait_for_load_state("load")
    assert user.page.evaluate("document.getElementById('full-image').naturalWidth") > 0
    assert [d["face_id"] for a, _, d in audit_entries(samples_ft, "search.image") if a == "ivan"] == [shown[0]]
    user.only_this_server()
    assert not user.errors, user.errors


def test_an_investigator_gets_403_on_a_dpo_page_and_the_refusal_is_audited(live: str, browser: Browser,
                                                                           samples_ft: Facetrail) -> None:
    staff(samples_ft, "ivan", "investigator")
    user = Session(browser, live)
    user.sign_in("ivan")
    assert user.page.query_selector("nav >> text=Requests") is None
    response = user.page.goto(f"{live}/console/requests")
    assert response is not None and response.status == 403
    assert "Not for your role" in user.page.inner_text("h1")
    denied = audit_entries(samples_ft, "auth.denied")
    assert denied[-1][0] == "ivan" and denied[-1][2]["route"] == "/console/requests"
    user.only_this_server()


def test_the_dpo_queue_is_ordered_by_due_date_and_a_request_is_decided(live: str, browser: Browser,
                                                                        samples_ft: Facetrail) -> None:
    staff(samples_ft, "dana", "dpo")
    recent = received_days_ago(samples_ft, "access", "recent@example.org", 2)
    overdue = received_days_ago(samples_ft, "erasure", "late@example.org", 40)
    middle = received_days_ago(samples_ft, "access", "middle@example.org", 20)
    user = Session(browser, live)
    user.sign_in("dana")
    user.page.click("nav >> text=Requests")
    user.page.wait_for_selector("#queue tbody tr")  # the queue's page, not the one the click left
    rows = user.page.query_selector_all("#queue tbody tr")
    assert [row.get_attribute("data-id") for row in rows] == [overdue, middle, recent]
    assert rows[0].get_attribute("class") == "overdue" and "overdue by" in rows[0].inner_text()
    assert rows[1].get_attribute("class") is None

    user.page.click(f"text={overdue}")
    assert "E-mail address not confirmed" in user.page.inner_text("#evidence")
    user.page.click("button:has-text('Reject')")  # no reason yet: the browser asks for one
    assert user.page.url == f"{live}/console/requests/{overdue}"
    user.page.fill("#reason", "The e-mail address was never confirmed and the live check was not done.")
    user.page.click("button:has-text('Reject')")
    assert "Identity rejected" in user.page.inner_text("#note")
    assert user.page.inner_text("#status") == "refused"
    assert "identity rejected: The e-mail address was never confirmed" in user.page.inner_text("#history")
    user.page.goto(f"{live}/console/requests")
    assert [row.get_attribute("data-id") for row in user.page.query_selector_all("#queue tbody tr")] == [
        middle, recent]
    user.only_this_server()
    assert not user.errors, user.errors


def test_verify_now_on_the_compliance_dashboard(live: str, browser: Browser, samples_ft: Facetrail) -> None:
    staff(samples_ft, "dana", "dpo")
    user = Session(browser, live)
    user.sign_in("dana")
    user.page.click("nav >> text=Compliance")
    assert "Not verified" in user.page.inner_text("#chain-status")
    assert "Retention has not been enforced yet" in user.page.inner_text("#last-purge")
    user.page.click("button:has-text('Verify now')")
    status = user.page.inner_text("#chain-status")
    assert status.startswith("Intact:"), status
    verified = [(actor, d) for actor, _, d in audit_entries(samples_ft, "audit.verify")]
    assert verified[-1][0] == "dana" and verified[-1][1]["ok"] is True
    assert f"{verified[-1][1]['entries']} entries" in status
    user.only_this_server()
    assert not user.errors, user.errors


def test_an_operator_registers_a_source_and_ingests_photos(live: str, browser: Browser,
                                                           samples_ft: Facetrail) -> None:
    staff(samples_ft, "otto", "operator")
    user = Session(browser, live)
    user.sign_in("otto")
    user.page.click("nav >> text=Sources")
    user.page.fill("#name", "press archive")
    user.page.fill("#controller", "Agency")
    user.page.fill("#purposes", "press")
    user.page.select_option("#legal_basis", "public_task")
    user.page.select_option("#art9_condition", "g")
    user.page.fill("#evidence_ref", "law 2026-1")
    user.page.fill("#jurisdictions", "FR, ZZ")
    user.page.fill("#retention_days", "90")
    user.page.click("button:has-text('Register')")
    assert "jurisdictions" in user.page.inner_text("#source-error")  # beside the field, the form kept
    assert user.page.get_attribute("#jurisdictions", "aria-invalid") == "true"
    assert user.page.input_value("#name") == "press archive"
    user.page.fill("#jurisdictions", "FR")
    user.page.click("button:has-text('Register')")
    row = user.page.wait_for_selector("#sources tr:has-text('press archive')")
    assert row is not None
    source_id = row.get_attribute("data-id")
    user.page.set_input_files(f"#files-{source_id}", [str(SAMPLES / "rose_leslie1.jpg"),
                                                      str(SAMPLES / "rose_leslie2.jpg")])
    user.page.click(f"#sources tr[data-id='{source_id}'] button:has-text('Ingest')")
    report = user.page.inner_text("#report")
    assert "press archive" in report and "2 image(s) added with 2 face(s)" in " ".join(report.split())
    user.only_this_server()
    assert not user.errors, user.errors


@pytest.fixture
def photos(tmp_path: Path) -> Path:
    """A server folder of sample photos (and a file that is not one) that the console may ingest from."""
    folder = tmp_path / "incoming" / "press-photos"
    folder.mkdir(parents=True)
    for name in ("rose_leslie1.jpg", "rose_leslie2.jpg", "kit_harington1.jpeg", "biden.jpg", "obama.jpg"):
        shutil.copy(SAMPLES / name, folder)
    (folder / "caption.txt").write_text("not a photo")
    return folder


@pytest.fixture
def folder_live(tmp_path: Path, photos: Path) -> Iterator[tuple[str, Facetrail]]:
    ft = Facetrail.open(tmp_path / "data", create=True, workers=1, console_folders=[photos.parent])
    yield from ((base, ft) for base in serve(ft))
    ft.close()


def test_an_operator_registers_a_source_and_ingests_a_server_folder_watching_progress(
        folder_live: tuple[str, Facetrail], browser: Browser, photos: Path) -> None:
    live, ft = folder_live
    staff(ft, "otto", "operator")
    user = Session(browser, live)
    user.sign_in("otto")
    user.page.click("nav >> text=Sources")
    for field, value in (("#name", "press archive"), ("#controller", "Agency"), ("#purposes", "press"),
                         ("#evidence_ref", "law 2026-1"), ("#jurisdictions", "FR"), ("#retention_days", "90")):
        user.page.fill(field, value)
    user.page.select_option("#legal_basis", "public_task")
    user.page.select_option("#art9_condition", "g")
    user.page.click("button:has-text('Register')")
    row = user.page.wait_for_selector("#sources tr:has-text('press archive')")
    assert row is not None
    if AXE.exists():
        assert not serious_violations(user.page)
    user.page.select_option("#folder-source", row.get_attribute("data-id"))
    user.page.select_option("#folder", str(photos.resolve()))
    # The answers of the progress endpoint the page polls, as the browser received them (the last one's body may
    # be gone already: the page reloads itself on reading it).
    polled: list[dict[str, Any]] = []

    def progress(response: Response) -> None:
        if response.url.endswith("/progress"):
            with contextlib.suppress(PlaywrightError):
                polled.append(response.json())

    user.page.on("response", progress)
    user.page.click("button:has-text('Start the ingestion')")
    assert "/console/ingestions/" in user.page.url
    user.page.wait_for_selector("#report", timeout=120_000)
    report = " ".join(user.page.inner_text("#report").split())
    assert "press archive: complete" in report and "6 file(s): 5 image(s) added with 5 face(s)" in report
    assert "caption.txt: not an image or video file type (.txt)" in report
    assert user.page.inner_text("#job-state") == "Finished: 6 of 6 file(s) done."
    assert user.page.evaluate("document.getElementById('job-progress').value") == 6
    # The page showed the batch running, its count only rising, until it reached the total.
    assert any(p["running"] for p in polled), polled
    assert [p["done"] for p in polled] == sorted(p["done"] for p in polled)
    assert all(p["total"] in (0, 6) for p in polled), polled
    assert [d for _, action, d in audit_entries(ft, "ingest.finish")][-1]["images_added"] == 5
    if AXE.exists():
        assert not serious_violations(user.page)
    user.only_this_server()
    assert not user.errors, user.errors


def test_an_operator_groups_names_and_splits_people(live: str, browser: Browser, samples_ft: Facetrail) -> None:
    staff(samples_ft, "otto", "operator")
    user = Session(browser, live)
    user.sign_in("otto")
    user.page.click("nav >> text=People")
    user.page.click("button:has-text('Group the new faces into people')")
    assert "new person(s)" in user.page.inner_text("#cluster-report")
    user.page.wait_for_load_state("load")
    assert user.page.evaluate("[...document.querySelectorAll('#people img')].every(i => i.naturalWidth > 0)")
    if AXE.exists():
        assert not serious_violations(user.page)
    user.page.click("#people li:first-child a")
    user.page.fill("#name", "Barack Obama")
    user.page.click("button:has-text('Save the name')")
    assert user.page.inner_text("#person-name") == "Barack Obama"
    faces = user.page.query_selector_all("#faces li")
    assert len(faces) >= 3
    user.page.check(f"#face-{faces[-1].get_attribute('data-face')}")
    user.page.click("button:has-text('Split off the ticked faces')")
    assert "now a new person" in user.page.inner_text("#note") and "1 face(s)" in user.page.inner_text("main")
    if AXE.exists():
        assert not serious_violations(user.page)
    assert [a for _, a, _ in audit_entries(samples_ft, "people.") if a != "people.show"] == [
        "people.cluster", "people.name", "people.split"]
    user.only_this_server()
    assert not user.errors, user.errors


AXE = Path(__file__).resolve().parents[2] / "node_modules" / "axe-core" / "axe.min.js"
needs_axe = pytest.mark.skipif(not AXE.exists(), reason="axe-core is not installed (npm install, package.json)")


def serious_violations(page: Page) -> list[str]:
    """axe-core's serious and critical violations on the page (its script run in the page, not served by it)."""
    page.wait_for_load_state("load")  # never a document still being replaced by a navigation
    page.evaluate(AXE.read_text())
    found = page.evaluate("axe.run(document, {resultTypes: ['violations']}).then(r => r.violations.filter("
                          "v => v.impact === 'serious' || v.impact === 'critical').map("
                          "v => v.id + ': ' + v.nodes.map(n => n.target.join(' ')).join(', ')))")
    return list(found)


@needs_axe
def test_no_page_has_a_serious_accessibility_violation(live: str, browser: Browser, samples_ft: Facetrail) -> None:
    staff(samples_ft, "ivan", "investigator")
    staff(samples_ft, "dana", "dpo")
    request_id = received_days_ago(samples_ft, "access", "late@example.org", 40)
    received_days_ago(samples_ft, "access", "soon@example.org", 2)
    checked: dict[str, list[str]] = {}
    user = Session(browser, live)
    user.page.goto(f"{live}/console/sign-in")
    user.sign_in("nobody", "a wrong password")  # the form with its error
    checked["sign-in"] = serious_violations(user.page)
    user.sign_in("ivan")
    checked["home"] = serious_violations(user.page)
    user.page.goto(f"{live}/console/search")
    user.page.set_input_files("#photo", str(SAMPLES / "biden.jpg"))
    user.page.select_option("#purpose", "demo")
    user.page.fill("#case", "C-1")
    user.page.click("button:has-text('Search')")
    user.page.wait_for_selector("#results")
    checked["search results"] = serious_violations(user.page)
    user.page.click("#results li:first-child a.full")
    user.page.wait_for_load_state("load")
    checked["full image"] = serious_violations(user.page)
    user.page.goto(f"{live}/console/compliance")
    checked["403"] = serious_violations(user.page)
    user.page.click("text=Sign out")
    user.sign_in("dana")
    for name, path in (("queue", "/console/requests"), ("request", f"/console/requests/{request_id}"),
                       ("evidence", f"/console/requests/{request_id}/evidence"), ("compliance", "/console/compliance")):
        user.page.goto(f"{live}{path}")
        checked[name] = serious_violations(user.page)
    user.page.click("text=Sign out")
    staff(samples_ft, "otto", "operator")
    user.sign_in("otto")
    user.page.goto(f"{live}/console/accounts")
    user.page.fill("#name", "ines")
    user.page.select_option("#role", "investigator")
    user.page.click("button:has-text('Create')")
    user.page.wait_for_selector("#api-key")
    checked["accounts"] = serious_violations(user.page)
    user.page.goto(f"{live}/console/sources")
    checked["sources"] = serious_violations(user.page)
    assert checked == {name: [] for name in checked}
    # The checker does find what it looks for: an image without a text alternative, planted in the page.
    user.page.evaluate("document.querySelector('main').append(Object.assign(document.createElement('img'), "
                       "{src: '/console/static/favicon.svg'}))")
    assert any(v.startswith("image-alt") for v in serious_violations(user.page))
    user.only_this_server()
