"""Domain errors to HTTP responses: one table, one handler. Every 401 and 403 also goes to the audit log
(facetrail.api.denials)."""

from __future__ import annotations

import json
import logging

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool
from starlette.types import Send

from facetrail.errors import (
    AuthenticationError,
    ConflictError,
    FacetrailError,
    InvalidValueError,
    KeyUnavailableError,
    MediaError,
    NoFaceError,
    NotFoundError,
    PermissionDeniedError,
    RateLimitedError,
    ShuttingDownError,
)

STATUS: list[tuple[type[FacetrailError], int]] = [
    (AuthenticationError, 401),
    (PermissionDeniedError, 403),
    (NotFoundError, 404),
    (InvalidValueError, 422),
    (MediaError, 422),
    (NoFaceError, 422),
    (RateLimitedError, 429),
    (ConflictError, 409),
    # The master key is missing or wrong, or a key was destroyed under a request: the service cannot answer.
    (KeyUnavailableError, 503),
    (ShuttingDownError, 503),
]

log = logging.getLogger(__name__)


def status_for(exc: FacetrailError) -> int:
    for kind, status in STATUS:
        if isinstance(exc, kind):
            return status
    return 400


def error_body(detail: str, error: str) -> dict[str, object]:
    """Every error the API answers has this shape (plus `field` for an invalid value)."""
    return {"detail": detail, "error": error}


async def send_json_error(send: Send, status: int, detail: str, error: str,
                          headers: dict[str, str] | None = None) -> None:
    """Answer with an error body from a pure ASGI middleware (before or instead of the application)."""
    body = json.dumps(error_body(detail, error)).encode()
    raw = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    raw += [(name.lower().encode("latin-1"), value.encode("latin-1")) for name, value in (headers or {}).items()]
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": body})


def install(app: FastAPI) -> None:
    @app.exception_handler(FacetrailError)
    async def handle(request: Request, exc: FacetrailError) -> JSONResponse:
        status = status_for(exc)
        body = error_body(str(exc), type(exc).__name__)
        if isinstance(exc, InvalidValueError):
            body["field"] = exc.field
        headers: dict[str, str] = {}
        if status == 401:
            headers["WWW-Authenticate"] = "Bearer"
        retry_after = getattr(exc, "retry_after", None)
        if status == 429 and isinstance(retry_after, int):
            headers["Retry-After"] = str(retry_after)
        if status in (401, 403):
            denials = getattr(request.app.state, "denials", None)
            if denials is not None:
                try:
                    await run_in_threadpool(denials.record, request, exc)
                except Exception:  # the refusal stands even if it could not be logged
                    log.exception("could not write an authorisation failure to the audit log")
        return JSONResponse(body, status_code=status, headers=headers or None)

    @app.exception_handler(OverflowError)
    async def out_of_range(_request: Request, _exc: OverflowError) -> JSONResponse:
        # A well-formed number too large for the store (SQLite integers are 64-bit): the caller's error, not ours.
        return JSONResponse(error_body("a number in the request is out of range", "InvalidValueError"),
                            status_code=400)
