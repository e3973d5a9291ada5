"""The server's log holds no secret: a full portal flow through a real `facetrail serve` leaves no status token,
package token, e-mail code, e-mail address or capture frame in what the server printed (access log and app loggers)."""

from __future__ import annotations

import contextlib
import hashlib
import io
import logging
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import httpx2
import pytest

from facetrail.api.serving import REDACTED, SecretsFilter, redact
from facetrail.runtime import Facetrail, local_actor
from tests.rights.captures import BUSH, capture, hold_bush
from tests.web.conftest import Portal, read_code


@pytest.mark.parametrize("text,expected", [
    ('127.0.0.1:5 - "GET /portal/requests/ab12?token=s3cr3t&note=code-ok HTTP/1.1" 303',
     f'127.0.0.1:5 - "GET /portal/requests/ab12?token={REDACTED}&note={REDACTED} HTTP/1.1" 303'),
    ("/portal/requests/ab12/package?token=abc", f"/portal/requests/ab12/package?token={REDACTED}"),
    ("/x?ft_0123_secretkey", f"/x?{REDACTED}"),
    ("mail to Barack.Obama+rights@example.org failed", f"mail to {REDACTED} failed"),
    ("/v1/sources/1", "/v1/sources/1"),
])
def test_redact(text: str, expected: str) -> None:
    assert redact(text) == expected


def test_the_filter_redacts_app_records_and_keeps_access_records_formattable() -> None:
    app_record = logging.LogRecord("facetrail.rights", logging.WARNING, __file__, 1, "no mail to %s (%s)",
                                   ("joe@example.org", "refused"), None)
    assert SecretsFilter().filter(app_record) and app_record.getMessage() == f"no mail to {REDACTED} (refused)"
    try:
        raise ValueError("not an address: eve@example.org")
    except ValueError:
        crash = logging.LogRecord("uvicorn.error", logging.ERROR, __file__, 1, "Exception in ASGI application", (),
                                  sys.exc_info())
    assert SecretsFilter().filter(crash)
    printed = logging.Formatter().format(crash)
    assert "ValueError: not an address: [redacted]" in printed and "eve@" not in printed
    access = logging.LogRecord("uvicorn.access", logging.INFO, __file__, 1, '%s - "%s %s HTTP/%s" %d',
                               ("127.0.0.1:1", "GET", "/portal/api/requests/1?token=t0ken", "1.1", 200), None)
    assert SecretsFilter().filter(access)
    assert access.getMessage() == f'127.0.0.1:1 - "GET /portal/api/requests/1?token={REDACTED} HTTP/1.1" 200'


@contextlib.contextmanager
def serving(data: Path, log: io.TextIOBase) -> Iterator[str]:
    """`facetrail serve` on a free loopback port, everything it prints into `log`; stopped as Ctrl-C would."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = {k: v for k, v in os.environ.items() if not k.startswith("FACETRAIL_")}
    proc = subprocess.Popen([sys.executable, "-m", "facetrail.cli", "--data", str(data), "serve", "--port", str(port)],
                            stdout=log, stderr=subprocess.STDOUT, env=env)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and proc.poll() is None:
            with contextlib.suppress(httpx2.HTTPError):
                if httpx2.get(f"{url}/health", timeout=2).status_code == 200:
                    break
            time.sleep(0.2)
        yield url
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def test_a_portal_flow_leaves_no_secret_in_the_server_log(samples_store: Path, tmp_path: Path) -> None:
    data = tmp_path / "data"
    shutil.copytree(samples_store, data)
    ft = Facetrail.open(data, workers=1)
    try:
        hold_bush(ft)
        _, dpo_key = ft.accounts.create(local_actor(), name="dora", role="dpo")
    finally:
        ft.close()
    address = "George.Bush@example.org"
    log_path = tmp_path / "server.log"
    with open(log_path, "w") as log, serving(data, log) as url, \
            httpx2.Client(base_url=url, timeout=300, follow_redirects=True) as client:
        portal = Portal(client, ft)  # type: ignore[arg-type]  # the same calls as a TestClient's; ft: its data path
        request_id, status_token = portal.new_request("access", address)
        code = read_code(data, address)
        assert portal.send_code(request_id, status_token, "000000").status_code == 200  # a wrong code first
        assert portal.send_code(request_id, status_token, code).status_code == 200
        nonce, poses = portal.challenge(request_id, status_token)
        frames = [frame.data for frame in capture(poses, BUSH)]
        sent = portal.send_frames(request_id, status_token, nonce, list(enumerate(frames)))
        assert sent.status_code == 200 and "note=capture-ok" in str(sent.url), sent.text
        approved = client.post(f"/v1/requests/{request_id}/approve", headers={"Authorization": f"Bearer {dpo_key}"},
                               json={"reason": "the key frames match the held faces"})
        assert approved.status_code == 200, approved.text
        assert portal.status_page(request_id, status_token).status_code == 200
        status = client.get(f"/portal/api/requests/{request_id}", params={"token": status_token}).json()
        download = status["answer"]["download"]
        package_token = parse_qs(urlsplit(download).query)["token"][0]
        package = client.get(download)
        assert package.status_code == 200 and package.content[:2] == b"PK"
        assert client.get(f"/portal/requests/{request_id}", params={"token": status_token[::-1]}).status_code == 404
    raw = log_path.read_bytes()
    printed = raw.decode(errors="replace")
    # The log was written (it is not empty by accident): the requests are there, with their query names only.
    assert f"GET /portal/requests/{request_id}?token={REDACTED}" in printed
    assert f"GET /portal/requests/{request_id}/package?token={REDACTED}" in printed
    assert "Application startup complete" in printed
    secrets = {"status token": status_token, "package token": package_token, "e-mail code": code,
               "e-mail address": address, "its local part": "george.bush@", "frame SHA-256":
               hashlib.sha256(frames[0]).hexdigest(), "frame bytes as hex": frames[0][200:216].hex()}
    leaked = {name: value for name, value in secrets.items() if value.lower() in printed.lower()}
    assert leaked == {}, leaked
    assert not any(frame[200:232] in raw for frame in frames)
    assert not re.search(r"token=(?!\[redacted\])", printed)
