"""Access control of the API: scoped and expiring keys, rate limits, size limits, security headers, and every
authorisation failure in the audit log (with repeated 401s written once)."""

from __future__ import annotations

import asyncio
import json
import shutil
import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from facetrail.api import create_app
from facetrail.api.limits import BodySizeLimit
from facetrail.api.ratelimit import RateLimiter, client_address
from facetrail.errors import PermissionDeniedError
from facetrail.runtime import Facetrail, local_actor
from facetrail.store.models import Account, AuditEntry
from facetrail.web.security import API_CSP, HEADERS
from tests.conftest import sample_bytes

ROLES = ("operator", "investigator", "dpo", "auditor")


class Server:
    """A client of a fresh API over a copy of the samples store, with one key per role."""

    def __init__(self, ft: Facetrail, client: TestClient, keys: dict[str, str]) -> None:
        self.ft, self.client, self.keys = ft, client, keys

    def auth(self, role_or_key: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.keys.get(role_or_key, role_or_key)}"}

    def audit(self, action: str) -> list[dict[str, Any]]:
        with self.ft.db.read() as session:
            rows = session.scalars(select(AuditEntry).where(AuditEntry.action == action).order_by(AuditEntry.seq))
            return [{"seq": r.seq, "actor": r.actor, **json.loads(r.details)} for r in rows]

    def search(self, key: str, purpose: str = "demo", photo: bytes | None = None) -> Any:
        return self.client.post("/v1/search", headers=self.auth(key), data={"purpose": purpose, "case": "c-1"},
                                files={"photo": ("q.jpg", photo or sample_bytes("obama2.jpg"), "image/jpeg")})


@pytest.fixture
def make_server(samples_store: Path, tmp_path: Path) -> Iterator[Callable[..., Server]]:
    opened: list[tuple[Facetrail, TestClient]] = []

    def make(**settings: object) -> Server:
        data = tmp_path / f"data{len(opened)}"
        shutil.copytree(samples_store, data)
        ft = Facetrail.open(data, workers=1, **settings)
        keys = {role: ft.accounts.create(local_actor(), name=f"{role}-1", role=role)[1] for role in ROLES}
        client = TestClient(create_app(ft))
        client.__enter__()
        opened.append((ft, client))
        return Server(ft, client, keys)

    yield make
    for ft, client in opened:
        client.__exit__(None, None, None)
        ft.close()


@pytest.fixture
def server(make_server: Callable[..., Server]) -> Server:
    return make_server()


# -- keys scoped by purpose, keys that expire ------------------------------------------------------------------


def test_a_key_searches_only_for_its_purposes(server: Server) -> None:
    created = server.client.post("/v1/accounts", headers=server.auth("operator"),
                                 json={"name": "ivy", "role": "investigator", "purposes": ["press"]})
    assert created.status_code == 201, created.text
    assert created.json()["purposes"] == ["press"]
    key = created.json()["api_key"]
    refused = server.search(key, purpose="demo")
    assert refused.status_code == 403 and "press" in refused.json()["detail"]
    assert refused.json()["error"] == "PermissionDeniedError"
    denied = server.audit("auth.denied")
    assert len(denied) == 1
    assert denied[0] | {"message": ""} == {
        "seq": denied[0]["seq"], "actor": "ivy", "account": "ivy", "role": "investigator", "method": "POST",
        "route": "/v1/search", "ip": "testclient", "message": ""}
    assert "'demo'" in denied[0]["message"]
    assert [e for e in server.audit("search") if e["actor"] == "ivy"] == []
    unregistered = server.search(key, purpose="press")  # in the key's scope, but no source is registered for it
    assert unregistered.status_code == 422 and unregistered.json() == {
        "detail": "purpose: no source is registered for the purpose 'press'; purposes with sources you may "
                  "search: none (register a source for a purpose first)",
        "error": "InvalidValueError", "field": "purpose"}
    scoped_to_demo = server.client.post("/v1/accounts", headers=server.auth("operator"),
                                        json={"name": "ian", "role": "investigator", "purposes": ["demo"]})
    found = server.search(scoped_to_demo.json()["api_key"], purpose="demo")
    assert found.status_code == 200 and found.json()["results"]


@pytest.mark.parametrize("body,field", [
    ({"purposes": []}, "purposes"),
    ({"purposes": ["Not A Purpose!"]}, "purpose"),
    ({"expires_days": -1}, "expires_days"),
    ({"expires_days": 40_000}, "expires_days"),
])
def test_invalid_scopes_are_422(server: Server, body: dict[str, object], field: str) -> None:
    response = server.client.post("/v1/accounts", headers=server.auth("operator"),
                                  json={"name": "ivy", "role": "investigator", **body})
    assert response.status_code == 422 and field in response.text


def test_accounts_show_purposes_and_expiry(make_server: Callable[..., Server]) -> None:
    server = make_server(key_ttl_days=30)
    server.client.post("/v1/accounts", headers=server.auth("dpo"), json={"name": "a", "role": "auditor"})
    server.client.post("/v1/accounts", headers=server.auth("dpo"),
                       json={"name": "b", "role": "auditor", "expires_days": 0, "purposes": ["demo"]})
    listed = {a["name"]: a for a in server.client.get("/v1/accounts", headers=server.auth("operator")).json()}
    expires = datetime.fromisoformat(listed["a"]["expires_at"]) - datetime.now(UTC)
    assert timedelta(days=29) < expires <= timedelta(days=30)
    assert listed["a"]["purposes"] is None
    assert listed["b"]["expires_at"] is None and listed["b"]["purposes"] == ["demo"]


def test_an_expired_key_is_401_saying_so(server: Server) -> None:
    created = server.client.post("/v1/accounts", headers=server.auth("dpo"),
                                 json={"name": "old", "role": "auditor", "expires_days": 1}).json()
    key = created["api_key"]
    assert server.client.get("/v1/audit/verify", headers=server.auth(key)).status_code == 200
    with server.ft.db.write() as session, session.begin():
        account = session.scalar(select(Account).where(Account.name == "old"))
        assert account is not None
        account.expires_at = datetime.now(UTC) - timedelta(minutes=1)
    response = server.client.get("/v1/audit/verify", headers=server.auth(key))
    assert response.status_code == 401 and "expired" in response.json()["detail"]
    assert response.headers["WWW-Authenticate"] == "Bearer"
    guessed = server.client.get("/v1/audit/verify", headers=server.auth(key[:-2] + "zz"))
    assert guessed.status_code == 401 and guessed.json()["detail"] == "invalid or missing API key"
    failed = server.audit("auth.failed")
    assert [(e["reason"], e.get("account")) for e in failed] == [("expired", "old"), ("wrong-secret", "old")]
    assert all(e["key_id"] == key.split("_")[1] for e in failed)


# -- rate limits -------------------------------------------------------------------------------------------------


def test_searches_are_limited_per_key(make_server: Callable[..., Server]) -> None:
    server = make_server(search_per_minute=3)
    not_a_photo = b"hello"  # refused after the limiter: cheap, and still counted
    for _ in range(3):
        assert server.search("investigator", photo=not_a_photo).status_code == 422
    limited = server.search("investigator", photo=not_a_photo)
    assert limited.status_code == 429
    assert 1 <= int(limited.headers["Retry-After"]) <= 20
    assert limited.json() == {"detail": "too many searches with this API key; try again later",
                              "error": "TooManyRequestsError", "field": None}
    # Per key: another account still searches, and this one still reads what is not a search.
    other = server.client.post("/v1/accounts", headers=server.auth("operator"),
                               json={"name": "ian", "role": "investigator"}).json()["api_key"]
    assert server.search(other).status_code == 200
    assert server.client.get("/v1/sources", headers=server.auth("investigator")).status_code == 200


def test_requests_are_limited_per_address(make_server: Callable[..., Server]) -> None:
    server = make_server(requests_per_minute_per_ip=4)
    statuses = [server.client.get("/health").status_code for _ in range(2)]
    statuses += [server.client.get("/v1/sources", headers=server.auth("dpo")).status_code]
    statuses += [server.client.get("/portal").status_code]
    assert statuses == [200, 200, 200, 200]
    for path in ("/health", "/portal", "/v1/sources"):
        limited = server.client.get(path)
        assert limited.status_code == 429 and int(limited.headers["Retry-After"]) >= 1
        assert limited.json()["error"] == "TooManyRequestsError"
        assert limited.headers["X-Content-Type-Options"] == "nosniff"
    other = TestClient(server.client.app, client=("192.0.2.7", 4000))
    assert other.get("/health").status_code == 200


def test_401s_count_against_the_address_and_are_logged_once(make_server: Callable[..., Server]) -> None:
    server = make_server(requests_per_minute_per_ip=5)
    bad = server.auth("ft_0123456789abcdef_" + "s3cret" * 6)
    statuses = [server.client.get("/v1/sources", headers=bad).status_code for _ in range(8)]
    assert statuses == [401] * 5 + [429] * 3
    failed = server.audit("auth.failed")
    assert len(failed) == 1
    assert failed[0] == {"seq": failed[0]["seq"], "actor": "anonymous", "ip": "testclient", "method": "GET",
                         "route": "/v1/sources", "reason": "unknown-key", "key_id": "0123456789abcdef", "count": 1}
    assert server.client.app.state.denials.flush(everything=True) == 1  # type: ignore[attr-defined]
    failed = server.audit("auth.failed")
    assert failed[1]["count"] == 4 and failed[1]["repeat_of"] == failed[0]["seq"]
    assert not any("s3cret" in json.dumps(e) for e in failed)


def test_trusted_proxies_name_the_client(make_server: Callable[..., Server]) -> None:
    server = make_server(requests_per_minute_per_ip=1, trusted_proxies=["10.0.0.0/8"])
    proxy = TestClient(server.client.app, client=("10.1.2.3", 5000))
    assert proxy.get("/health", headers={"X-Forwarded-For": "198.51.100.1, 10.9.9.9"}).status_code == 200
    assert proxy.get("/health", headers={"X-Forwarded-For": "198.51.100.2"}).status_code == 200
    assert proxy.get("/health", headers={"X-Forwarded-For": "198.51.100.1"}).status_code == 429
    # From a peer that is not a trusted proxy, the header is ignored.
    direct = TestClient(server.client.app, client=("203.0.113.5", 5000))
    assert direct.get("/health", headers={"X-Forwarded-For": "198.51.100.3"}).status_code == 200
    assert direct.get("/health", headers={"X-Forwarded-For": "198.51.100.4"}).status_code == 429


def test_client_address() -> None:
    from ipaddress import ip_network

    proxies = [ip_network("10.0.0.0/8"), ip_network("::1/128")]

    def scope(peer: str, *forwarded: str) -> dict[str, Any]:
        return {"client": (peer, 1), "headers": [(b"x-forwarded-for", f.encode()) for f in forwarded]}

    assert client_address(scope("10.0.0.1", "1.2.3.4, 5.6.7.8, 10.0.0.2"), proxies) == "5.6.7.8"
    assert client_address(scope("10.0.0.1", "1.2.3.4", "10.0.0.9"), proxies) == "1.2.3.4"
    assert client_address(scope("10.0.0.1", "not-an-address"), proxies) == "10.0.0.1"
    assert client_address(scope("10.0.0.1"), proxies) == "10.0.0.1"
    assert client_address(scope("9.9.9.9", "1.2.3.4"), proxies) == "9.9.9.9"
    assert client_address(scope("::1", "2001:db8::1"), proxies) == "2001:db8::1"
    assert client_address({"headers": []}, proxies) == "unknown"


def test_rate_limiter_refills_and_says_when() -> None:
    now = [0.0]
    limiter = RateLimiter(6, clock=lambda: now[0])  # one token every 10 s
    assert [limiter.hit("a") for _ in range(7)] == [0] * 6 + [10]
    assert limiter.hit("b") == 0
    now[0] = 4.0
    assert limiter.hit("a") == 6
    now[0] = 10.0
    assert limiter.hit("a") == 0 and limiter.hit("a") == 10
    now[0] = 1000.0
    assert [limiter.hit("a") for _ in range(7)] == [0] * 6 + [10]  # a full bucket, never more
    assert all(RateLimiter(0).hit("x") == 0 for _ in range(1000))


def test_rate_limiter_is_bounded_and_thread_safe() -> None:
    small = RateLimiter(1, clock=lambda: 0.0, max_keys=3)
    for key in "abcd":
        assert small.hit(key) == 0
    assert small.hit("a") == 0  # forgotten (least recently used), so it starts afresh
    assert small.hit("d") > 0
    limiter = RateLimiter(500, clock=lambda: 0.0)
    passed: list[int] = []

    def worker() -> None:
        passed.append(sum(1 for _ in range(100) if limiter.hit("k") == 0))

    threads = [threading.Thread(target=worker) for _ in range(10)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sum(passed) == 500


# -- request size ------------------------------------------------------------------------------------------------


def test_an_oversized_body_is_413(make_server: Callable[..., Server]) -> None:
    server = make_server(max_file_bytes=2048)
    limit = 2048 + 1024 * 1024
    big = b"x" * (limit + 1)
    declared = server.client.post("/v1/search", headers={**server.auth("investigator"),
                                                         "Content-Type": "application/octet-stream"}, content=big)
    assert declared.status_code == 413
    assert declared.json() == {"detail": f"request body too large (the limit is {limit} bytes)",
                               "error": "RequestTooLargeError", "field": None}
    assert declared.headers["X-Content-Type-Options"] == "nosniff"

    def chunks() -> Iterator[bytes]:  # a multipart form, sent chunked: no Content-Length
        yield b'--b0undary\r\nContent-Disposition: form-data; name="photo"; filename="q.jpg"\r\n\r\n'
        for _ in range(limit // 65536 + 2):
            yield b"y" * 65536

    chunked = server.client.post("/v1/search", content=chunks(), headers={
        **server.auth("investigator"), "Content-Type": "multipart/form-data; boundary=b0undary"})
    assert chunked.request.headers["Transfer-Encoding"] == "chunked"
    assert "Content-Length" not in chunked.request.headers
    assert chunked.status_code == 413 and chunked.json()["error"] == "RequestTooLargeError"
    # A multipart upload over the limit, to the route that ingests uploads.
    upload = server.client.post("/v1/sources/1/images", headers=server.auth("operator"),
                                files={"files": ("a.jpg", big, "image/jpeg")})
    assert upload.status_code == 413
    # Under the limit the route answers itself: the photo is over max_file_bytes, its own check.
    small = server.search("investigator", photo=b"z" * 4096)
    assert small.status_code == 422 and "too large" in small.json()["detail"]


def test_the_size_limit_reads_no_further_than_the_limit() -> None:
    reads: list[int] = []
    answered: list[dict[str, Any]] = []

    async def app(_scope: dict[str, Any], receive: Callable[..., Any], send: Callable[..., Any]) -> None:
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"read %d" % len(body)})

    async def receive() -> dict[str, Any]:
        reads.append(1)
        return {"type": "http.request", "body": b"a" * 100, "more_body": True}  # endless

    async def send(message: dict[str, Any]) -> None:
        answered.append(message)

    scope = {"type": "http", "method": "POST", "path": "/", "headers": []}
    asyncio.run(BodySizeLimit(app, max_bytes=1000)(scope, receive, send))  # type: ignore[arg-type]
    assert len(reads) == 11
    assert answered[0]["status"] == 413 and b"RequestTooLargeError" in answered[1]["body"]
    reads.clear()
    answered.clear()
    declared = {**scope, "headers": [(b"content-length", b"1001")]}
    asyncio.run(BodySizeLimit(app, max_bytes=1000)(declared, receive, send))  # type: ignore[arg-type]
    assert reads == [] and answered[0]["status"] == 413


# -- who makes the accounts that oversee the others ---------------------------------------------------------------


@pytest.mark.parametrize("role", ["dpo", "auditor"])
def test_an_operator_cannot_make_its_own_overseers(server: Server, role: str) -> None:
    """DPO and auditor accounts are made by a DPO (or the local command line): an operator's try is a 403, audited,
    and makes nothing."""
    refused = server.client.post("/v1/accounts", headers=server.auth("operator"), json={"name": "mine", "role": role})
    assert refused.status_code == 403 and refused.json()["error"] == "PermissionDeniedError"
    assert "account.oversight requires the role dpo" in refused.json()["detail"]
    denied = server.audit("auth.denied")
    assert [(e["actor"], e["method"], e["route"]) for e in denied] == [("operator-1", "POST", "/v1/accounts")]
    created = server.client.post("/v1/accounts", headers=server.auth("dpo"), json={"name": "mine", "role": role})
    assert created.status_code == 201 and created.json()["role"] == role
    assert [(e["actor"], e["role"]) for e in server.audit("account.add") if e["name"] == "mine"] == [("dpo-1", role)]


def test_a_dpo_makes_only_overseers_and_an_operator_only_staff(server: Server) -> None:
    for role in ("operator", "investigator"):
        by_dpo = server.client.post("/v1/accounts", headers=server.auth("dpo"),
                                    json={"name": f"d-{role}", "role": role})
        assert by_dpo.status_code == 403, by_dpo.text
        by_operator = server.client.post("/v1/accounts", headers=server.auth("operator"),
                                         json={"name": f"o-{role}", "role": role})
        assert by_operator.status_code == 201, by_operator.text
    listed = {a["name"] for a in server.client.get("/v1/accounts", headers=server.auth("dpo")).json()}
    assert {"o-operator", "o-investigator"} <= listed and not {"d-operator", "d-investigator"} & listed


def test_only_a_dpo_or_the_command_line_disables_an_overseer(server: Server) -> None:
    operator = server.ft.accounts.authenticate(server.keys["operator"])
    with pytest.raises(PermissionDeniedError):
        server.ft.accounts.disable(operator, name="auditor-1")
    assert server.client.get("/v1/audit/verify", headers=server.auth("auditor")).status_code == 200
    server.ft.accounts.disable(operator, name="investigator-1")
    server.ft.accounts.disable(server.ft.accounts.authenticate(server.keys["dpo"]), name="auditor-1")
    assert server.client.get("/v1/audit/verify", headers=server.auth("auditor")).status_code == 401
    server.ft.accounts.disable(local_actor(), name="dpo-1")
    assert server.client.get("/v1/requests", headers=server.auth("dpo")).status_code == 401


# -- security headers --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("method,path,role,status", [
    ("GET", "/v1/sources", "dpo", 200),
    ("GET", "/v1/sources", None, 401),
    ("GET", "/v1/accounts", "auditor", 403),
    ("GET", "/v1/nowhere", None, 404),
    ("GET", "/nowhere", None, 404),
    ("GET", "/health", None, 200),
    ("POST", "/v1/sources", "operator", 422),
])
def test_security_headers_on_api_responses(server: Server, method: str, path: str, role: str | None,
                                           status: int) -> None:
    response = server.client.request(method, path, headers=server.auth(role) if role else {}, json={})
    assert response.status_code == status
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["X-Frame-Options"] == "DENY"
    assert response.headers["Referrer-Policy"] == "no-referrer"
    assert response.headers["Content-Security-Policy"] == API_CSP
    if path.startswith("/v1/"):
        assert response.headers["Cache-Control"] == "no-store"


def test_portal_pages_keep_their_own_policy(server: Server) -> None:
    for path in ("/portal", "/portal/static/portal.css"):
        response = server.client.get(path)
        assert response.status_code == 200
        for name, value in HEADERS.items():
            if name != "Cache-Control":  # the portal's static files may be cached (no-cache: revalidated)
                assert response.headers[name] == value, (path, name)
    docs = server.client.get("/docs")
    assert docs.status_code == 200 and "Content-Security-Policy" not in docs.headers  # an inline script
    assert docs.headers["X-Content-Type-Options"] == "nosniff"


# -- authorisation failures in the audit log ---------------------------------------------------------------------


def test_403s_are_logged_each_time(server: Server) -> None:
    for _ in range(2):
        assert server.client.get("/v1/accounts", headers=server.auth("investigator")).status_code == 403
    assert server.search("operator").status_code == 403
    denied = server.audit("auth.denied")
    assert [(e["actor"], e["role"], e["method"], e["route"]) for e in denied] == [
        ("investigator-1", "investigator", "GET", "/v1/accounts"),
        ("investigator-1", "investigator", "GET", "/v1/accounts"),
        ("operator-1", "operator", "POST", "/v1/search"),
    ]
    assert "account.admin or account.oversight requires the role dpo, operator" in denied[0]["message"]


def test_401s_are_logged_with_reason_and_repeats_counted_per_minute(server: Server) -> None:
    now = [0.0]
    denials = server.client.app.state.denials  # type: ignore[attr-defined]
    denials.clock = lambda: now[0]
    wrong = server.keys["auditor"][:-3] + "xyz"
    for _ in range(3):
        assert server.client.get("/v1/audit", headers=server.auth(wrong)).status_code == 401
    assert server.client.get("/v1/audit").status_code == 401
    assert server.client.get("/v1/audit", headers={"X-API-Key": "garbage"}).status_code == 401
    assert server.client.get("/v1/requests/1", headers={"X-API-Key": "garbage"}).status_code == 401
    failed = server.audit("auth.failed")
    assert [(e["reason"], e["route"], e.get("account"), e["count"]) for e in failed] == [
        ("wrong-secret", "/v1/audit", "auditor-1", 1), ("missing", "/v1/audit", None, 1),
        ("malformed", "/v1/audit", None, 1), ("malformed", "/v1/requests/{request_id}", None, 1)]
    assert failed[0]["key_id"] == wrong.split("_")[1] and "key_id" not in failed[1]
    now[0] = 61.0  # the minute is over: the next 401 writes the repeat count first, then opens a new minute
    assert server.client.get("/v1/audit", headers=server.auth(wrong)).status_code == 401
    failed = server.audit("auth.failed")[4:]
    assert [(e["reason"], e["count"], e.get("repeat_of")) for e in failed] == [
        ("wrong-secret", 2, server.audit("auth.failed")[0]["seq"]), ("wrong-secret", 1, None)]
    secret = server.keys["auditor"].split("_", 2)[2]
    assert not any(secret[:10] in json.dumps(e) for e in server.audit("auth.failed"))


def test_the_audit_chain_still_verifies(server: Server) -> None:
    server.client.get("/v1/accounts", headers=server.auth("auditor"))
    for _ in range(3):
        server.client.get("/v1/sources", headers=server.auth("ft_0123456789abcdef_" + "n" * 30))
    server.client.app.state.denials.flush(everything=True)  # type: ignore[attr-defined]
    verified = server.client.get("/v1/audit/verify", headers=server.auth("auditor")).json()
    assert verified["ok"] is True and verified["entries"] > 4
    assert server.ft.verify_audit(local_actor()).ok
