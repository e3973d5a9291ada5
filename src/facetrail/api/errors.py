"""Domain errors to HTTP responses: one table, one handler."""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from facetrail.errors import (
    AuthenticationError,
    ConflictError,
    FacetrailError,
    InvalidValueError,
    MediaError,
    NoFaceError,
    NotFoundError,
    PermissionDeniedError,
    RateLimitedError,
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
]


def status_for(exc: FacetrailError) -> int:
    for kind, status in STATUS:
        if isinstance(exc, kind):
            return status
    return 400


def install(app: FastAPI) -> None:
    @app.exception_handler(FacetrailError)
    async def handle(_request: Request, exc: FacetrailError) -> JSONResponse:
        status = status_for(exc)
        body: dict[str, object] = {"detail": str(exc), "error": type(exc).__name__}
        if isinstance(exc, InvalidValueError):
            body["field"] = exc.field
        headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
        return JSONResponse(body, status_code=status, headers=headers)

    @app.exception_handler(OverflowError)
    async def out_of_range(_request: Request, _exc: OverflowError) -> JSONResponse:
        # A well-formed number too large for the store (SQLite integers are 64-bit): the caller's error, not ours.
        return JSONResponse({"detail": "a number in the request is out of range", "error": "InvalidValueError"},
                            status_code=400)
