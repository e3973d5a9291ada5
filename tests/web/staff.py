"""Staff accounts with console passwords, for the console's tests."""

from __future__ import annotations

import json
from typing import Any

from fastapi.testclient import TestClient
from httpx2 import Response
from sqlalchemy import select

from facetrail.accounts.staff import StaffSignIn
from facetrail.runtime import Facetrail, local_actor
from facetrail.store.models import AuditEntry
from tests.web.conftest import csrf_of

PASSWORD = "correct horse battery staple"


def staff(ft: Facetrail, name: str, role: str, password: str = PASSWORD) -> str:
    """A new account of `role` with a console password; its name."""
    ft.accounts.create(local_actor(), name=name, role=role)
    StaffSignIn(ft.db, ft.audit).set_password(local_actor(), name, password)
    return name


def sign_in(client: TestClient, name: str, password: str = PASSWORD) -> Response:
    token = csrf_of(client.get("/console/sign-in").text)
    return client.post("/console/sign-in", data={"name": name, "password": password, "csrf": token},
                       follow_redirects=False)


def audit_entries(ft: Facetrail, prefix: str = "") -> list[tuple[str, str, dict[str, Any]]]:
    """(actor, action, details) of every audit entry whose action starts with `prefix`, oldest first."""
    with ft.db.read() as session:
        rows = session.execute(select(AuditEntry.actor, AuditEntry.action, AuditEntry.details)
                               .where(AuditEntry.action.startswith(prefix)).order_by(AuditEntry.seq)).all()
    return [(actor, action, json.loads(details)) for actor, action, details in rows]
