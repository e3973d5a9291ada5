"""The mailers: the outbox writes owner-only files and forgets a request's mail on purge; a mail server's refusal
(whose error names the address) is reported without the address, in the message and in the traceback."""

from __future__ import annotations

import socket
import stat
import threading
import traceback
from collections.abc import Iterator
from pathlib import Path

import pytest

from facetrail.rights.mailer import MailDeliveryError, OutboxMailer, SmtpMailer


def test_the_outbox_is_owner_only_and_purged_per_request(tmp_path: Path) -> None:
    outbox = OutboxMailer(tmp_path / "outbox")
    outbox.send(to="a@example.org", subject="code", body="Your confirmation code: 123456", ref="req1")
    outbox.send(to="a@example.org", subject="later", body="more", ref="req1")
    outbox.send(to="b@example.org", subject="code", body="Your confirmation code: 654321", ref="req2")
    assert stat.S_IMODE((tmp_path / "outbox").stat().st_mode) == 0o700
    assert all(stat.S_IMODE(p.stat().st_mode) == 0o600 for p in (tmp_path / "outbox").iterdir())
    outbox.purge("req1")
    left = [p.read_bytes() for p in (tmp_path / "outbox").iterdir()]
    assert len(left) == 1 and b"654321" in left[0]
    with pytest.raises(ValueError):
        outbox.purge("*")  # a ref is a request id, never a pattern


@pytest.fixture
def refusing_smtp() -> Iterator[int]:
    """A minimal SMTP server on loopback that refuses every recipient, naming it (as real servers do)."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)

    def answer() -> None:
        conn, _ = server.accept()
        with conn, conn.makefile("rb") as lines:
            conn.sendall(b"220 test ESMTP\r\n")
            for line in lines:
                command = line.decode().strip()
                verb = command.split(" ", 1)[0].upper()
                if verb == "EHLO":
                    conn.sendall(b"250 test\r\n")
                elif verb == "RCPT":
                    address = command.split(":", 1)[1].strip()
                    conn.sendall(f"550 5.1.1 {address}: no such user here\r\n".encode())
                elif verb == "QUIT":
                    conn.sendall(b"221 bye\r\n")
                    return
                else:
                    conn.sendall(b"250 ok\r\n")

    thread = threading.Thread(target=answer, daemon=True)
    thread.start()
    yield server.getsockname()[1]
    thread.join(timeout=10)
    server.close()


def test_a_refused_recipient_is_reported_without_the_address(refusing_smtp: int) -> None:
    mailer = SmtpMailer("127.0.0.1", refusing_smtp, "privacy@facetrail.invalid", starttls=False)
    with pytest.raises(MailDeliveryError) as caught:
        mailer.send(to="victim@example.org", subject="s", body="b", ref="req1")
    assert "SMTPRecipientsRefused" in str(caught.value) and "victim" not in str(caught.value)
    # The server's answer, which names the address, is in no traceback: the original error is not chained.
    printed = "".join(traceback.format_exception(caught.value))
    assert "no such user" not in printed and "During handling" not in printed
