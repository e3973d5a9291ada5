"""`make screenshots`: a PNG of each staff console page, from a data directory holding the sample photos, some
requests, an order and a breach, served on loopback and photographed in Debian's Chromium.

    python -m tests.web.screenshots [OUT]      # default: screenshots/ (git-ignored)
"""

from __future__ import annotations

import sys
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path

from playwright.sync_api import sync_playwright

from facetrail.runtime import Facetrail, local_actor
from facetrail.sources.inputs import from_paths
from tests.conftest import SAMPLES, add_source
from tests.web.conftest import CHROMIUM, CHROMIUM_ARGS, serve
from tests.web.staff import PASSWORD, received_days_ago, staff

VIEWPORT = {"width": 1280, "height": 800}  # a laptop screen


def prepare(data: Path) -> Facetrail:
    ft = Facetrail.open(data, create=True, workers=1, console_folders=[SAMPLES])
    source = add_source(ft)
    ft.ingest.ingest(local_actor(), source, from_paths([SAMPLES], ft.input_limits))
    staff(ft, "ivan", "investigator")
    staff(ft, "dana", "dpo")
    staff(ft, "otto", "operator")
    received_days_ago(ft, "erasure", "late@example.org", 40)
    received_days_ago(ft, "access", "soon@example.org", 25)
    received_days_ago(ft, "restriction", "new@example.org", 1)
    ft.orders.add(local_actor(), authority="CNIL", reference="MED-2021-134", received_on="2026-10-01",
                  source_ids=[source], cease=True, erase=True, deadline="2026-11-15", daily_penalty=100_000)
    ft.breaches.add(local_actor(), title="Laptop stolen", nature="an encrypted laptop holding an export was stolen",
                    data_categories=["face templates"], subject_categories=["people in the sources"],
                    consequences="none expected: the export is encrypted", measures="keys rotated",
                    aware_at=datetime.now(UTC) - timedelta(hours=30))
    return ft


def shoot(base: str, out: Path) -> list[Path]:
    shots: list[Path] = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        page = browser.new_page(viewport=VIEWPORT)

        def snap(name: str) -> None:
            shots.append(out / f"console-{name}.png")
            page.screenshot(path=str(shots[-1]), full_page=True)

        def sign_in(name: str) -> None:
            page.goto(f"{base}/console/sign-in")
            page.fill("#name", name)
            page.fill("#password", PASSWORD)
            page.click("button[type=submit]")

        page.goto(f"{base}/console/sign-in")
        snap("sign-in")
        sign_in("ivan")
        page.goto(f"{base}/console/search")
        page.set_input_files("#photo", str(SAMPLES / "obama2.jpg"))
        page.select_option("#purpose", "demo")
        page.fill("#case", "CASE-2026-17")
        page.click("button:has-text('Search')")
        page.wait_for_selector("#results")
        page.wait_for_load_state("load")
        snap("search")
        page.goto(f"{base}/console/requests")
        snap("forbidden")
        page.click("text=Sign out")
        sign_in("dana")
        page.goto(f"{base}/console/requests")
        snap("requests")
        page.click("#queue tbody tr:first-child a")
        snap("request")
        page.goto(f"{base}/console/compliance")
        page.click("button:has-text('Verify now')")
        snap("compliance")
        page.click("text=Sign out")
        sign_in("otto")
        page.goto(f"{base}/console/sources")
        page.set_input_files("#files-1", [str(SAMPLES / "rose_leslie1.jpg"), str(SAMPLES / "obama.jpg")])
        page.click("#sources tr[data-id='1'] button:has-text('Ingest')")
        snap("sources")
        page.select_option("#folder-source", "1")
        page.select_option("#folder", str(SAMPLES.resolve()))
        page.click("button:has-text('Start the ingestion')")
        page.wait_for_selector("#report", timeout=120_000)
        snap("ingestion")
        page.goto(f"{base}/console/people")
        page.click("button:has-text('Group the new faces into people')")
        page.wait_for_load_state("load")
        snap("people")
        page.click("#people li:first-child a")
        page.wait_for_load_state("load")
        snap("person")
        page.goto(f"{base}/console/accounts")
        snap("accounts")
        browser.close()
    return shots


def main(out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as temp:
        ft = prepare(Path(temp) / "data")
        server = serve(ft)
        try:
            for shot in shoot(next(server), out):
                sys.stdout.write(f"{shot}\n")
        finally:
            next(server, None)  # stops the server
            ft.close()


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "screenshots"))
