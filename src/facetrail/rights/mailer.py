"""Sending mail to requesters: an outbox directory by default (and in tests), SMTP in production."""

from __future__ import annotations

import smtplib
import ssl
from dataclasses import dataclass
from datetime import UTC, datetime
from email.message import EmailMessage
from pathlib import Path
from typing import Protocol
from uuid import uuid4

from facetrail.fsutil import atomic_write


class Mailer(Protocol):
    def send(self, *, to: str, subject: str, body: str) -> None: ...


def _message(sender: str, to: str, subject: str, body: str) -> EmailMessage:
    message = EmailMessage()
    message["From"], message["To"], message["Subject"] = sender, to, subject
    message["Date"] = datetime.now(UTC).strftime("%a, %d %b %Y %H:%M:%S +0000")
    message.set_content(body)
    return message


@dataclass
class OutboxMailer:
    """Writes each message as an .eml file into `directory` (read it with any mail client, or a test)."""

    directory: Path
    sender: str = "privacy@facetrail.invalid"

    def send(self, *, to: str, subject: str, body: str) -> None:
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%f")
        atomic_write(self.directory / f"{stamp}-{uuid4().hex[:8]}.eml",
                     bytes(_message(self.sender, to, subject, body)))


@dataclass
class SmtpMailer:
    host: str
    port: int
    sender: str
    username: str | None = None
    password: str | None = None
    starttls: bool = True

    def send(self, *, to: str, subject: str, body: str) -> None:
        with smtplib.SMTP(self.host, self.port, timeout=30) as smtp:
            if self.starttls:
                smtp.starttls(context=ssl.create_default_context())
            if self.username:
                smtp.login(self.username, self.password or "")
            smtp.send_message(_message(self.sender, to, subject, body))
