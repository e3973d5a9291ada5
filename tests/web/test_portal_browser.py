"""The rights portal end to end in a real browser: Debian's Chromium driven by Playwright, against uvicorn."""

from __future__ import annotations

import json
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page

from facetrail.runtime import Facetrail
from tests.conftest import SAMPLES
from tests.web.conftest import needs_chromium, read_code, serve

pytestmark = needs_chromium


@pytest.fixture
def live_portal(samples_ft: Facetrail) -> Iterator[str]:
    yield from serve(samples_ft)


def watch_for_errors(page: Page) -> list[str]:
    """Console errors and uncaught exceptions (a Content-Security-Policy violation is reported as one)."""
    errors: list[str] = []
    page.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
    page.on("pageerror", lambda error: errors.append(str(error)))
    return errors


def test_access_request_in_a_browser(live_portal: str, browser: Browser, samples_ft: Facetrail,
                                     tmp_path: Path) -> None:
    address = "barack@example.org"
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

    page.set_input_files("#photo", str(SAMPLES / "obama2.jpg"))
    page.click("#selfie-form button[type=submit]")
    page.wait_for_selector("#answer", timeout=120_000)
    assert page.inner_text("#status") == "Answered"

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
    assert len(faces) >= 8
    assert all(any(n in f["original_name"] for n in ("obama", "32bit", "two_people")) for f in faces)
    assert errors == []
