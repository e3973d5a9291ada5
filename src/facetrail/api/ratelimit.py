"""Rate limits of the API: per client address on every route (the portal included), per API key on searches.

Token buckets in this process's memory: each client address, and each account for searches, holds up to
`per_minute` tokens, refilled evenly over the minute; a request spends one, and one that finds none is
refused with 429 and a Retry-After saying when the next token arrives. So a client gets at most
`per_minute` requests in any minute, in a burst or spread out.

The limits are per process: several server processes (uvicorn --workers, several machines) each count on
their own, which multiplies the effective limit by their number, and a restart forgets every count. Where
that matters, put a shared limiter (the reverse proxy's, or one backed by Redis) in front. The buckets are
bounded (`max_keys`, least recently used dropped first), so many addresses cannot exhaust memory; a
dropped bucket only lets its client start afresh.

The client address is the TCP peer (request.client.host). X-Forwarded-For is believed only when the peer
is one of the `trusted_proxies`: then the client is the rightmost address in it that is not a trusted proxy,
and the request's `client` is rewritten to it, so that every later layer (the portal's intake limit, the
audit log) sees the same address.
"""

from __future__ import annotations

import math
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from ipaddress import IPv4Network, IPv6Network, ip_address

from starlette.datastructures import Headers
from starlette.types import ASGIApp, Receive, Scope, Send

from facetrail.api.errors import send_json_error
from facetrail.errors import RateLimitedError

Network = IPv4Network | IPv6Network


class TooManyRequestsError(RateLimitedError):
    """A rate limit refused the request; `retry_after` is the whole seconds until it would be accepted."""

    def __init__(self, message: str, *, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class RateLimiter:
    """Token buckets by key, thread-safe (sync routes run in a thread pool). `per_minute` 0 = no limit."""

    def __init__(self, per_minute: int, *, clock: Callable[[], float] = time.monotonic,
                 max_keys: int = 100_000) -> None:
        self.per_minute = per_minute
        self.clock = clock
        self.max_keys = max_keys
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()  # key -> (tokens, when)
        self._lock = threading.Lock()

    def hit(self, key: str) -> int:
        """Spend one of `key`'s tokens and return 0, or return the whole seconds (>= 1) until one is there."""
        if self.per_minute <= 0:
            return 0
        capacity, rate = float(self.per_minute), self.per_minute / 60.0
        with self._lock:
            now = self.clock()
            tokens, then = self._buckets.pop(key, (capacity, now))
            tokens = min(capacity, tokens + max(0.0, now - then) * rate)
            wait = 0
            if tokens >= 1.0:
                tokens -= 1.0
            else:
                wait = max(1, math.ceil((1.0 - tokens) / rate))
            self._buckets[key] = (tokens, now)  # re-inserted last: the most recently used
            while len(self._buckets) > self.max_keys:
                self._buckets.popitem(last=False)
            return wait


def _trusted(address: str, proxies: Sequence[Network]) -> bool:
    try:
        ip = ip_address(address)
    except ValueError:
        return False
    return any(ip in network for network in proxies)


def client_address(scope: Scope, proxies: Sequence[Network] = ()) -> str:
    """The client's address: the peer, or what a trusted proxy says in X-Forwarded-For."""
    client = scope.get("client")
    peer = str(client[0]) if client else "unknown"
    if not proxies or not _trusted(peer, proxies):
        return peer
    values = Headers(scope=scope).getlist("x-forwarded-for")
    hops = [hop.strip() for value in values for hop in value.split(",") if hop.strip()]
    for hop in reversed(hops):
        if not _trusted(hop, proxies):
            try:
                return str(ip_address(hop))
            except ValueError:
                return peer  # not an address: the proxy did not write it, so nothing to believe
    return hops[0] if hops else peer


class PerAddressLimit:
    """ASGI middleware: the per-address limit on every HTTP request, before anything else is done with it."""

    def __init__(self, app: ASGIApp, *, limiter: RateLimiter, trusted_proxies: Sequence[Network] = ()) -> None:
        self.app = app
        self.limiter = limiter
        self.proxies = tuple(trusted_proxies)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        address = client_address(scope, self.proxies)
        client = scope.get("client")
        if client and address != client[0]:
            scope = {**scope, "client": (address, 0)}
        wait = self.limiter.hit(address)
        if wait:
            await send_json_error(send, 429, "too many requests from this address; try again later",
                                  TooManyRequestsError.__name__, headers={"Retry-After": str(wait)})
            return
        await self.app(scope, receive, send)
