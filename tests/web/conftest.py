"""Helpers for the portal's tests: reading the e-mail code from the outbox, and a portal client."""

from __future__ import annotations

import email
import re
from collections.abc import Iterator
from dataclasses import dataclass
from email.message import EmailMessage
from email.policy import default
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
from fastapi.testclient import TestClient
from httpx2 import Response

from facetrail.api import create_app
from facetrail.runtime import Facetrail
from tests.rights.captures import capture, hold_bush

CODE = re.compile(r"Your confirmation code: (\d{6})")


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
