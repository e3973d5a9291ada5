"""The API docs (/docs, Swagger UI) render in a real browser with the network cut off: every file they need is
served by facetrail itself (from the fastapi-offline package), none from a CDN."""

from __future__ import annotations

from collections.abc import Iterator
from urllib.parse import urlsplit

import pytest
from playwright.sync_api import Browser, Route

from facetrail.runtime import Facetrail
from tests.web.conftest import needs_chromium, serve

pytestmark = needs_chromium
LOOPBACK = {"127.0.0.1", "localhost", "::1", "[::1]"}


@pytest.fixture
def live_api(ft: Facetrail) -> Iterator[str]:
    yield from serve(ft)


def is_loopback(url: str) -> bool:
    parts = urlsplit(url)
    # data: and blob: URLs are made inside the page; they never reach a network.
    return parts.scheme in ("data", "blob") or (parts.hostname or "") in LOOPBACK


def test_the_docs_render_offline(live_api: str, browser: Browser) -> None:
    context = browser.new_context()
    requested: list[str] = []
    blocked: list[str] = []

    def offline(route: Route) -> None:
        # The network is off: whatever is not on this machine's loopback fails, as it would air-gapped.
        if is_loopback(route.request.url):
            route.continue_()
        else:
            blocked.append(route.request.url)
            route.abort("internetdisconnected")

    context.route("**/*", offline)
    page = context.new_page()
    page.on("request", lambda request: requested.append(request.url))
    page.goto(f"{live_api}/docs")
    page.wait_for_selector(".opblock", timeout=60_000)
    text = page.inner_text("body")
    for path in ("/v1/search", "/v1/sources", "/v1/requests/{request_id}/approve"):
        assert path in text, path
    schema = page.request.get(f"{live_api}/openapi.json").json()
    operations = sum(len(methods) for methods in schema["paths"].values())
    assert page.locator(".opblock").count() == operations  # every operation is on the page
    context.close()
    assert blocked == [] and requested and all(is_loopback(url) for url in requested), (blocked, requested)
