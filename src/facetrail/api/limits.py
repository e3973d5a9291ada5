"""The request size limit: a body larger than the limit is refused with 413, and never buffered here.

A pure ASGI middleware. A request that declares a Content-Length over the limit is answered at once,
before any of its body is read; one that does not (chunked transfer) is counted as the application reads
it, and the read that goes over the limit fails, so the application stops and the client gets 413
instead of whatever the application would have answered to a cut body.
"""

from __future__ import annotations

from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from facetrail.api.errors import send_json_error

MIB = 1024 * 1024
ERROR = "RequestTooLargeError"


class BodyTooLarge(Exception):
    """Raised into the application when the body it reads goes over the limit."""


class BodySizeLimit:
    def __init__(self, app: ASGIApp, *, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    @property
    def message(self) -> str:
        return f"request body too large (the limit is {self.max_bytes} bytes)"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = Headers(scope=scope).get("content-length")
        if declared is not None and declared.strip().isdigit() and int(declared) > self.max_bytes:
            await send_json_error(send, 413, self.message, ERROR, headers={"Connection": "close"})
            return
        received = 0
        exceeded = False
        started = False

        async def counted_receive() -> Message:
            nonlocal received, exceeded
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    exceeded = True
                    raise BodyTooLarge(self.message)
            return message

        async def guarded_send(message: Message) -> None:
            nonlocal started
            if exceeded:
                return  # the application's answer to a cut body: replaced by the 413 below
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, counted_receive, guarded_send)
        except Exception:
            if not exceeded:
                raise
        if exceeded and not started:
            await send_json_error(send, 413, self.message, ERROR, headers={"Connection": "close"})
