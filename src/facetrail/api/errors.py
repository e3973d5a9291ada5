"""Errors to HTTP responses: one table for the domain errors, and one body shape for every error the API answers,
FastAPI's own (request validation, unknown routes) included. Every 401 and 403 also goes to the audit log
(facetrail.api.denials)."""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.types import Send

from facetrail.errors import (
    AuthenticationError,
    ConflictError,
    FacetrailError,
    InvalidValueError,
    KeyUnavailableError,
    MediaError,
    ModelUnavailableError,
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
    # A model file of the installation is missing or damaged: nothing can be analysed until it is repaired.
    (ModelUnavailableError, 503),
    (ShuttingDownError, 503),
]

log = logging.getLogger(__name__)


def status_for(exc: FacetrailError) -> int:
    for kind, status in STATUS:
        if isinstance(exc, kind):
            return status
    return 400


def error_body(detail: str, error: str, field: str | None = None) -> dict[str, object]:
    """Every error the API answers has this shape (schemas.ErrorBody); `field` names the invalid value, if any."""
    return {"detail": detail, "error": error, "field": field}


def _field(loc: Sequence[Any]) -> str:
    """A validation error's location as a field name: ("body", "purposes", 0) -> "purposes.0"."""
    inner = [str(part) for part in loc[1:]] if len(loc) > 1 and loc[0] in ("body", "query", "path", "header",
                                                                            "cookie") else [str(p) for p in loc]
    return ".".join(inner) or "body"


def validation_body(errors: Sequence[Any]) -> dict[str, object]:
    """FastAPI's list of validation problems as one error body: every problem in `detail`, the first in `field`."""
    problems: list[tuple[str, str]] = []
    for error in errors:
        if error.get("type") == "json_invalid":
            problems.append(("body", f"the body is not valid JSON ({error.get('ctx', {}).get('error', 'unreadable')})"))
        else:
            problems.append((_field(error.get("loc", ())), str(error.get("msg", "invalid"))))
    if not problems:
        problems.append(("body", "the request is not valid"))
    detail = "; ".join(f"{field}: {message}" for field, message in problems)
    return error_body(detail, "InvalidValueError", problems[0][0])


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
        body = error_body(str(exc), type(exc).__name__, exc.field if isinstance(exc, InvalidValueError) else None)
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

    @app.exception_handler(RequestValidationError)
    async def invalid_request(_request: Request, exc: RequestValidationError) -> JSONResponse:
        return JSONResponse(validation_body(exc.errors()), status_code=422)

    @app.exception_handler(HTTPException)
    async def http_error(_request: Request, exc: HTTPException) -> JSONResponse:
        # Starlette's own refusals (no such route, method not allowed, an unreadable body), in the same shape.
        kind = "NotFoundError" if exc.status_code == 404 else "HTTPError"
        return JSONResponse(error_body(str(exc.detail), kind), status_code=exc.status_code,
                            headers=dict(exc.headers) if exc.headers else None)
