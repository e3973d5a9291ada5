"""Staff accounts with console passwords, for the console's tests."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

from fastapi.testclient import TestClient
from httpx2 import Response
from sqlalchemy import select, update

from facetrail.accounts.staff import StaffSignIn
from facetrail.rights.deadlines import due_date
from facetrail.runtime import Facetrail, local_actor
from facetrail.store.models import AuditEntry, RightsRequest
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


def console_search(client: TestClient, photo: bytes, purpose: str = "demo", case: str = "C1") -> Response:
    """A search from the console's form by the signed-in client; the results page."""
    token = csrf_of(client.get("/console/search").text)
    return client.post("/console/search", data={"purpose": purpose, "case": case, "csrf": token},
                       files={"photo": ("q.jpg", photo, "image/jpeg")})


def audit_entries(ft: Facetrail, prefix: str = "") -> list[tuple[str, str, dict[str, Any]]]:
    """(actor, action, details) of every audit entry whose action starts with `prefix`, oldest first."""
    with ft.db.read() as session:
        rows = session.execute(select(AuditEntry.actor, AuditEntry.action, AuditEntry.details)
                               .where(AuditEntry.action.startswith(prefix)).order_by(AuditEntry.seq)).all()
    return [(actor, action, json.loads(details)) for actor, action, details in rows]


def received_days_ago(ft: Facetrail, kind: str, address: str, days: int) -> str:
    """A request sent through the portal's service `days` ago (received and due dates moved back); its id."""
    request_id = ft.requests.intake(kind=kind, email=address, details={"message": ""}).request.id
    received = datetime.now(UTC) - timedelta(days=days)
    with ft.db.write() as session, session.begin():
        session.execute(update(RightsRequest).where(RightsRequest.id == request_id)
                        .values(received_at=received, due_at=due_date(received)))
    return request_id
