"""Helpers for the web tests: reading the e-mail code from the outbox, a portal client, and for the browser tests
the app served by uvicorn on loopback and Debian's Chromium driven by Playwright."""

from __future__ import annotations

import email
import re
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from email.message import EmailMessage
from email.policy import default
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
import uvicorn
from fastapi.testclient import TestClient
from httpx2 import Response
from playwright.sync_api import Browser, sync_playwright

from facetrail.api import create_app
from facetrail.runtime import Facetrail
from tests.rights.captures import capture, hold_bush

CODE = re.compile(r"Your confirmation code: (\d{6})")
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]
needs_chromium = pytest.mark.skipif(not CHROMIUM.exists(), reason="Debian's Chromium is not installed at "
                                    "/usr/bin/chromium (.ci/run installs it)")


def read_code(data: Path, to: str) -> str:
    """The confirmation code in the newest message to `to` in the data directory's outbox."""
    for path in sorted((data / "outbox").glob("*.eml"), reverse=True):
        message = email.message_from_bytes(path.read_bytes(), policy=default)
        assert isinstance(message, EmailMessage)
        body = message.get_body(("plain",))
        found = CODE.search(body.get_content() if body else "")
        if message["To"] == to and found:
            return found.group(1)
    raise AssertionError(f"no code was mailed to {to}")


def csrf_of(html: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', html)
    assert found, "the page has no form with a CSRF token"
    return found.group(1)


@dataclass
class Portal:
    """A browser-like client of the portal (it keeps cookies) and the data directory it writes to."""

    client: TestClient
    ft: Facetrail

    @property
    def data(self) -> Path:
        return self.ft.data

    def form_token(self) -> str:
        return csrf_of(self.client.get("/portal").text)

    def intake(self, kind: str, address: str, message: str = "", consent: bool = False) -> Response:
        fields = {"kind": kind, "email": address, "message": message, "csrf": self.form_token()}
        if consent:
            fields["consent"] = "yes"
        return self.client.post("/portal/requests", data=fields)

    def new_request(self, kind: str, address: str) -> tuple[str, str]:
        """Send a request through the form; the request id and the status token from its private link."""
        response = self.intake(kind, address)
        assert response.status_code == 201, response.text
        link = re.search(r'id="status-link" href="([^"]+)"', response.text)
        assert link, response.text
        url = urlsplit(link.group(1))
        return url.path.rsplit("/", 1)[1], parse_qs(url.query)["token"][0]

    def send_code(self, request_id: str, token: str, code: str) -> Response:
        return self.client.post(f"/portal/requests/{request_id}/code",
                                data={"token": token, "code": code, "csrf": self.form_token()})

    def challenge(self, request_id: str, token: str) -> tuple[str, list[str]]:
        """The live challenge the status page shows: its nonce and the poses in order."""
        page = self.status_page(request_id, token).text
        nonce = re.search(r'name="nonce" value="([^"]+)"', page)
        assert nonce, page
        return nonce.group(1), re.findall(r'<li data-pose="(\w+)">', page)

    def send_frames(self, request_id: str, token: str, nonce: str, frames: list[tuple[int, bytes]]) -> Response:
        """The upload form of the live check: one file per step, each with its step."""
        return self.client.post(f"/portal/requests/{request_id}/capture",
                                data={"token": token, "csrf": self.form_token(), "nonce": nonce,
                                      "steps": [str(step) for step, _ in frames]},
                                files=[("frames", (f"step{step}.jpg", data, "image/jpeg")) for step, data in frames])

    def send_capture(self, request_id: str, token: str, person: dict[str, tuple[str, str]]) -> Response:
        """A capture of `person` for the challenge the page shows (tests/rights/captures.py)."""
        nonce, poses = self.challenge(request_id, token)
        return self.send_frames(request_id, token, nonce, [(f.step, f.data) for f in capture(poses, person)])

    def status_page(self, request_id: str, token: str) -> Response:
        return self.client.get(f"/portal/requests/{request_id}", params={"token": token})


def portal_of(ft: Facetrail) -> Iterator[Portal]:
    with TestClient(create_app(ft)) as client:
        yield Portal(client, ft)


@pytest.fixture
def portal(samples_ft: Facetrail) -> Iterator[Portal]:
    """The portal over a copy of the samples store (source 1) with three photos of George W. Bush (source 2)."""
    hold_bush(samples_ft)
    yield from portal_of(samples_ft)


@pytest.fixture
def empty_portal(ft: Facetrail) -> Iterator[Portal]:
    """The portal over an empty store, for what needs no faces."""
    yield from portal_of(ft)


def serve(ft: Facetrail) -> Iterator[str]:
    """The app served by uvicorn on a free loopback port, in a background thread; yields its base URL."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))  # bound here and handed over, so no other process can take the port meanwhile
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(create_app(ft), log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(timeout=30)
    sock.close()


@pytest.fixture
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        instance = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield instance
        instance.close()
