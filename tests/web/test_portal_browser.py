"""The rights portal end to end in a real browser: Debian's Chromium driven by Playwright, against uvicorn."""

from __future__ import annotations

import json
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, sync_playwright

from facetrail.accounts.roles import Actor, Role
from facetrail.runtime import Facetrail
from tests.rights.captures import BUSH, hold_bush, photo
from tests.web.conftest import CHROMIUM, CHROMIUM_ARGS, needs_chromium, read_code, serve

pytestmark = needs_chromium


@pytest.fixture
def live_portal(samples_ft: Facetrail) -> Iterator[str]:
    """The app on loopback; the store holds the samples and three photos of George W. Bush."""
    hold_bush(samples_ft)
    yield from serve(samples_ft)


@pytest.fixture
def camera_browser() -> Iterator[Browser]:
    """Chromium with its fake camera (a moving test pattern, no face) and camera permission granted."""
    with sync_playwright() as playwright:
        instance = playwright.chromium.launch(executable_path=str(CHROMIUM), args=[
            *CHROMIUM_ARGS, "--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream"])
        yield instance
        instance.close()


def watch_for_errors(page: Page) -> list[str]:
    """Console errors and uncaught exceptions (a Content-Security-Policy violation is reported as one)."""
    errors: list[str] = []
    page.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
    page.on("pageerror", lambda error: errors.append(str(error)))
    return errors


def test_access_request_in_a_browser(live_portal: str, browser: Browser, samples_ft: Facetrail,
                                     tmp_path: Path) -> None:
    address = "george@example.org"
    page = browser.new_page(accept_downloads=True)
    errors = watch_for_errors(page)
    page.goto(f"{live_portal}/portal")
    assert "your rights" in page.inner_text("h1").lower()

    # The script shows the opt-out consent only for an opt-out.
    page.check("input[name=kind][value=opt-out]")
    assert page.is_visible(".opt-out")
    page.check("input[name=kind][value=access]")
    assert page.is_hidden(".opt-out")
    page.fill("#email", address)
    page.fill("#message", "Please send me a copy of everything.")
    page.click("#intake button[type=submit]")
    page.wait_for_selector("text=We have recorded your request")
    status_link = page.get_attribute("#status-link", "href")
    assert status_link and status_link.startswith(f"{live_portal}/portal/requests/")

    page.fill("#code", read_code(samples_ft.data, address))
    page.click("#code-form button[type=submit]")
    page.wait_for_selector("text=your e-mail address is confirmed")
    assert page.is_hidden("#answer")

    # The live check through the upload form: one picture per step, for the poses the page asks for.
    poses = [item.get_attribute("data-pose") for item in page.query_selector_all("#challenge li")]
    used = dict.fromkeys(BUSH, 0)
    for step, pose in enumerate(poses):
        assert pose in BUSH
        page.set_input_files(f"#frame-{step}", str(photo(BUSH[pose][used[pose]])))
        used[pose] += 1
    page.click("#capture-form button[type=submit]")
    page.wait_for_selector("text=your live check is done", timeout=120_000)
    assert page.is_hidden("#answer") and "data protection team checks your identity" in page.inner_text("main")

    request_id = status_link.split("/portal/requests/")[1].split("?")[0]
    samples_ft.requests.approve(Actor("dora", Role.DPO), request_id, "key frames and held faces: the same man")

    page.goto(status_link)  # the private link shown once still leads to the answer
    with page.expect_download() as download_info:
        page.click("#download")
    download = download_info.value
    saved = tmp_path / download.suggested_filename
    download.save_as(saved)
    assert download.suggested_filename.endswith(".zip")
    with zipfile.ZipFile(saved) as archive:
        assert {"index.html", "data.json"} <= set(archive.namelist())
        faces = json.loads(archive.read("data.json"))["faces"]
    assert page.inner_text("#status") == "Answered"
    assert len(faces) == 3 and all("George_W_Bush" in f["original_name"] for f in faces)
    assert errors == []


def test_the_camera_check_sends_its_frames(live_portal: str, camera_browser: Browser, samples_ft: Facetrail) -> None:
    """The camera path end to end: Chromium's fake camera shows a test pattern, so the script's frames reach the
    server, are read, and are answered as showing no face (a live face is what the upload test sends)."""
    address = "camera@example.org"
    page = camera_browser.new_page()
    errors = watch_for_errors(page)
    page.goto(f"{live_portal}/portal")
    page.check("input[name=kind][value=erasure]")
    page.fill("#email", address)
    page.click("#intake button[type=submit]")
    page.wait_for_selector("text=We have recorded your request")
    page.fill("#code", read_code(samples_ft.data, address))
    page.click("#code-form button[type=submit]")
    page.wait_for_selector("#camera-start", state="visible")
    page.click("#camera-start")
    page.wait_for_url("**note=capture-no-face**", timeout=120_000)
    assert "could not see a face" in page.inner_text("main") and page.is_visible("#capture-form")
    request_id = page.url.split("/portal/requests/")[1].split("?")[0]
    capture = samples_ft.requests.get(Actor("dora", Role.DPO), request_id).evidence["captures"][0]  # type: ignore[index]
    assert capture["result"] == "no-face" and capture["frames"] == 8  # two frames for each of the four steps
    assert errors == []
