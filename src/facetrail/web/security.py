"""Security of responses: the headers every response carries (API and portal), and a CSRF defence for
the portal's and the staff console's forms.

CSRF defence: a double-submit cookie. The first portal page a browser gets sets the `ft_csrf` cookie to a
random value (HttpOnly, SameSite=Strict, Path=/portal or /console, Secure over https), and every form carries the same
value in a hidden `csrf` field. A post is accepted only when the cookie and the field are both present and
equal (compared in constant time), and when the browser does not say it comes from another site (Origin,
Sec-Fetch-Site). A page on another
site can make a browser post a form, but it can neither read the cookie to copy it into the form nor (with
SameSite=Strict) get the browser to send the cookie along. It needs no session and no server secret, so it
holds across restarts and worker processes. What it cannot stop is a sibling host name planting its own
cookie (cookie tossing): serve the portal on a host name of its own.
"""

from __future__ import annotations

import hmac
import re
import secrets
from collections.abc import Callable, Coroutine
from typing import Any
from urllib.parse import urlsplit

from fastapi import Request, Response
from fastapi.routing import APIRoute
from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

CSRF_COOKIE = "ft_csrf"
CSRF_FIELD = "csrf"
_TOKEN = re.compile(r"^[A-Za-z0-9_-]{43}$")

# On every response of the application, the API's JSON included (SecurityHeaders below).
BASE_HEADERS = {
    "X-Frame-Options": "DENY",
    # Status links carry the request's secret token: never hand them to another site.
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
}
# For whatever is not an HTML page (JSON, images): nothing may load from it, nothing may frame it.
API_CSP = "default-src 'none'; frame-ancestors 'none'"

HEADERS = {
    # Only this site's own files: no inline script or style, no frames, forms post only here.
    "Content-Security-Policy": ("default-src 'self'; base-uri 'none'; form-action 'self'; "
                                "frame-ancestors 'none'; object-src 'none'"),
    **BASE_HEADERS,
    # Pages hold a person's request, its token and answer: no cache may keep them.
    "Cache-Control": "no-store",
}


def add_security_headers(response: Response) -> Response:
    for name, value in HEADERS.items():
        response.headers.setdefault(name, value)
    return response


class SecurityHeaders:
    """ASGI middleware: BASE_HEADERS on every response, `Cache-Control: no-store` under /v1 (biometric search
    results, accounts, the audit log), and API_CSP on every response that is not an HTML page. A header the
    route set already is kept (so the portal's pages keep their own policy); HTML pages without one (the
    OpenAPI docs, which load their script from a CDN) get no CSP from here."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope.get("path", "")
        no_store = path == "/v1" or path.startswith("/v1/")

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in BASE_HEADERS.items():
                    headers.setdefault(name, value)
                if no_store:
                    headers.setdefault("Cache-Control", "no-store")
                if not headers.get("content-type", "").lower().startswith("text/html"):
                    headers.setdefault("Content-Security-Policy", API_CSP)
            await send(message)

        await self.app(scope, receive, send_with_headers)


class SecureRoute(APIRoute):
    """A route whose every response, whatever the handler returns, carries the security headers."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def secured(request: Request) -> Response:
            return add_security_headers(await handler(request))

        return secured


def csrf_token(request: Request) -> tuple[str, bool]:
    """The browser's CSRF token, and whether it is new (and so must be set as a cookie)."""
    current = request.cookies.get(CSRF_COOKIE, "")
    if _TOKEN.match(current):
        return current, False
    return secrets.token_urlsafe(32), True


def set_csrf_cookie(request: Request, response: Response, token: str, path: str = "/portal") -> None:
    """The CSRF cookie, sent back only to pages under `path` (the portal's, or the staff console's)."""
    response.set_cookie(CSRF_COOKIE, token, httponly=True, samesite="strict", path=path,
                        secure=request.url.scheme == "https")


def csrf_ok(request: Request, offered: str) -> bool:
    """True when the form's token matches the cookie and the post does not come from another site."""
    # Browsers say where a post comes from. With Referrer-Policy no-referrer, Chromium sends `Origin: null`
    # even for this site's own forms, so only an Origin naming another host is refused; Sec-Fetch-Site
    # is sent whatever the referrer policy.
    origin = request.headers.get("origin")
    if origin not in (None, "null") and urlsplit(origin).netloc != request.headers.get("host"):
        return False
    if request.headers.get("sec-fetch-site") in ("cross-site", "same-site"):
        return False
    cookie = request.cookies.get(CSRF_COOKIE, "")
    return bool(_TOKEN.match(cookie)) and hmac.compare_digest(cookie.encode(), (offered or "").encode())
