"""Sending mail to requesters: an outbox directory by default (and in tests), SMTP in production.

Each message names the request it is about (`ref`). The outbox keeps a message only while its request is open:
`purge(ref)` deletes them when the request closes (they hold its e-mail code and the person's address). Mail
errors never carry the address into a log or a traceback."""

from __future__ import annotations

import re
import smtplib
import ssl
from dataclasses import dataclass
from datetime import UTC, datetime
from email.message import EmailMessage
from pathlib import Path
from typing import Protocol
from uuid import uuid4

from facetrail.fsutil import atomic_write

_REF = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


class Mailer(Protocol):
    def send(self, *, to: str, subject: str, body: str, ref: str) -> None: ...

    def purge(self, ref: str) -> None:
        """Forget every message about `ref` kept on this machine."""
        ...


class MailDeliveryError(ConnectionError):
    """A message could not be sent; says why without the address (the traceback keeps no exception that has it)."""


def _message(sender: str, to: str, subject: str, body: str) -> EmailMessage:
    message = EmailMessage()
    message["From"], message["To"], message["Subject"] = sender, to, subject
    message["Date"] = datetime.now(UTC).strftime("%a, %d %b %Y %H:%M:%S +0000")
    message.set_content(body)
    return message


@dataclass
class OutboxMailer:
    """Writes each message as an owner-only .eml file into `directory` (read it with any mail client, or a test),
    named `<time>-<ref>-<random>.eml`."""

    directory: Path
    sender: str = "privacy@facetrail.invalid"

    def send(self, *, to: str, subject: str, body: str, ref: str) -> None:
        if not _REF.match(ref):
            raise ValueError("a message's ref is a request id")
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%f")
        atomic_write(self.directory / f"{stamp}-{ref}-{uuid4().hex[:8]}.eml",
                     bytes(_message(self.sender, to, subject, body)))

    def purge(self, ref: str) -> None:
        if not _REF.match(ref):
            raise ValueError("a message's ref is a request id")
        for path in self.directory.glob(f"*-{ref}-*.eml"):
            path.unlink(missing_ok=True)


@dataclass
class SmtpMailer:
    host: str
    port: int
    sender: str
    username: str | None = None
    password: str | None = None
    starttls: bool = True

    def send(self, *, to: str, subject: str, body: str, ref: str) -> None:  # noqa: ARG002  # nothing kept here
        try:
            with smtplib.SMTP(self.host, self.port, timeout=30) as smtp:
                if self.starttls:
                    smtp.starttls(context=ssl.create_default_context())
                if self.username:
                    smtp.login(self.username, self.password or "")
                smtp.send_message(_message(self.sender, to, subject, body))
        except (smtplib.SMTPException, OSError) as exc:
            # A refused recipient's error holds the address: raised without it, and without the original.
            raise MailDeliveryError(f"mail could not be sent through {self.host}:{self.port} "
                                    f"({type(exc).__name__})") from None

    def purge(self, ref: str) -> None:
        """Nothing to forget: sent mail is on the mail server, not here."""
