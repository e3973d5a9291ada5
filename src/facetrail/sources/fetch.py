"""The fetcher of URL-list sources: one listed URL in, its bytes out, politely and within bounds.

It is not a crawler and has no way to become one: it fetches the URL it is given, that origin's robots.txt, and
the hops of a redirect (each checked again: scheme, address, robots.txt), nothing else. It never reads a page for
links: a response that is not an image is refused from its Content-Type, before its body is read.

Each request: http or https only; the host resolved and every address checked (sources/addresses.py), then the
connection made to a checked address (the name is not resolved again, so DNS rebinding cannot redirect it; TLS
still verifies the certificate against the name); no proxy (one would connect on our behalf, unchecked); an
identifying User-Agent; no cookies, no credentials, no compression (the size limit counts the bytes that
arrive); one request at a time, at least `delay_s` apart per host (or the site's Crawl-delay); the body streamed
and abandoned past `max_bytes` or the time limit.
"""

from __future__ import annotations

import http.client
import socket
import ssl
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from urllib.parse import urljoin, urlsplit, urlunsplit

from facetrail import __version__
from facetrail.config import Settings
from facetrail.errors import FetchError, InvalidValueError
from facetrail.sources.addresses import IPNetwork, Resolver, resolve
from facetrail.sources.robots import ROBOTS_MAX_BYTES, RobotsAnswer, RobotsCache

REDIRECTS = frozenset({301, 302, 303, 307, 308})
ROBOTS_REDIRECTS = 5  # RFC 9309 2.3.1.2: follow at least five
CHUNK = 64 * 1024


@dataclass(frozen=True)
class FetchPolicy:
    user_agent: str
    delay_s: float = 1.0
    max_bytes: int = 50 * 1024 * 1024
    timeout_s: float = 30.0
    max_redirects: int = 5
    allowed_networks: Sequence[IPNetwork] = field(default_factory=tuple)

    @classmethod
    def from_settings(cls, settings: Settings) -> FetchPolicy:
        """The settings' policy; refuses to fetch anonymously (no contact for the sites to reach us)."""
        contact = (settings.fetch_contact or settings.controller_contact or "").strip()
        if not contact:
            raise InvalidValueError("fetch_contact", "URL-list ingestion sends a contact (URL or e-mail address) "
                                    "in its User-Agent: set FACETRAIL_FETCH_CONTACT (or FACETRAIL_CONTROLLER_CONTACT)")
        return cls(user_agent=user_agent(contact), delay_s=settings.fetch_delay_s,
                   max_bytes=settings.fetch_max_bytes, timeout_s=settings.fetch_timeout_s,
                   max_redirects=settings.fetch_max_redirects, allowed_networks=tuple(settings.fetch_allow_networks))


def user_agent(contact: str) -> str:
    """`facetrail/<version> (+<contact>)`: who fetches, and how its operator can be reached."""
    return f"facetrail/{__version__} (+{' '.join(contact.split())})"


@dataclass(frozen=True)
class Fetched:
    """A listed URL's bytes: `final_url` answered them (the listed one, or a checked redirect's target)."""

    url: str
    final_url: str
    data: bytes
    fetched_at: datetime
    content_type: str


class Fetcher:
    """Fetches listed URLs one at a time; keeps robots.txt and each host's last request time for the run."""

    def __init__(self, policy: FetchPolicy, *, resolver: Resolver = socket.getaddrinfo,
                 clock: Callable[[], float] = time.monotonic, sleep: Callable[[float], None] = time.sleep,
                 tls: ssl.SSLContext | None = None) -> None:
        """`tls`: the client context (default: the system's trusted certificates, names verified)."""
        self.policy = policy
        self._resolver = resolver
        self._clock = clock
        self._sleep = sleep
        self._last: dict[str, float] = {}
        self._robots = RobotsCache(self._download_robots)
        self._tls = tls or ssl.create_default_context()

    def fetch(self, url: str) -> Fetched:
        """The image at `url`; raise FetchError saying why not (refused address, robots.txt, HTTP status,
        redirect refused or too many, not an image, too large, timed out, network error)."""
        current = url
        for hop in range(self.policy.max_redirects + 1):
            try:
                self._check(current)
                with self._open(current, accept="image/*, video/*") as response:
                    if response.status in REDIRECTS:
                        current = _location(current, response)
                        continue
                    return self._image(url, current, response)
            except FetchError as exc:
                if hop == 0:
                    raise
                raise FetchError(f"redirected to {current}: {exc}") from None
        raise FetchError(f"more than {self.policy.max_redirects} redirects")

    def _check(self, url: str) -> None:
        """Refuse what may not be requested at all: another scheme, a refused address, a robots.txt rule."""
        host, port = _host_port(url)
        resolve(host, port, allowed=self.policy.allowed_networks, resolver=self._resolver)
        refused = self._robots.check(url)
        if refused is not None:
            raise FetchError(refused)

    def _image(self, url: str, final_url: str, response: http.client.HTTPResponse) -> Fetched:
        if response.status != 200:
            raise FetchError(f"HTTP {response.status} {response.reason}".strip())
        fetched_at = datetime.now(UTC)
        content_type = (response.getheader("Content-Type") or "").split(";")[0].strip().lower()
        if content_type and not (content_type.startswith(("image/", "video/"))
                                 or content_type == "application/octet-stream"):
            raise FetchError(f"not an image or video (Content-Type {content_type}): not read, and never searched "
                             "for links")
        declared = (response.getheader("Content-Length") or "").strip()
        if declared.isdigit() and int(declared) > self.policy.max_bytes:
            raise FetchError(f"too large: {declared} bytes announced; the limit is {self.policy.max_bytes} "
                             "(FACETRAIL_FETCH_MAX_BYTES)")
        data, complete = self._body(response, self.policy.max_bytes)
        if not complete:
            raise FetchError(f"too large: more than {self.policy.max_bytes} bytes (FACETRAIL_FETCH_MAX_BYTES); "
                             "abandoned")
        return Fetched(url=url, final_url=final_url, data=data, fetched_at=fetched_at, content_type=content_type)

    def _body(self, response: http.client.HTTPResponse, limit: int) -> tuple[bytes, bool]:
        """At most `limit` bytes of the body, streamed, and whether that was all of it; FetchError past the time
        limit (a slow trickle is not waited for)."""
        deadline = self._clock() + self.policy.timeout_s
        chunks: list[bytes] = []
        received = 0
        while chunk := response.read1(min(CHUNK, limit + 1 - received)):
            received += len(chunk)
            if received > limit:
                return b"".join(chunks), False
            if self._clock() > deadline:
                raise FetchError(f"timed out: the response took longer than {self.policy.timeout_s:g} s")
            chunks.append(chunk)
        return b"".join(chunks), True

    def _download_robots(self, robots_url: str) -> RobotsAnswer:
        """The origin's robots.txt, following up to five redirects (each hop's scheme and address checked)."""
        current = robots_url
        try:
            for _hop in range(ROBOTS_REDIRECTS + 1):
                host, port = _host_port(current)
                resolve(host, port, allowed=self.policy.allowed_networks, resolver=self._resolver)
                with self._open(current, accept="text/plain") as response:
                    if response.status in REDIRECTS:
                        current = _location(current, response)
                        continue
                    if not 200 <= response.status < 300:
                        return RobotsAnswer(response.status)
                    body, _complete = self._body(response, ROBOTS_MAX_BYTES)  # RFC 9309: parse the first 500 KiB
                    return RobotsAnswer(response.status, body)
            return RobotsAnswer(None, problem=f"more than {ROBOTS_REDIRECTS} redirects")
        except (FetchError, OSError, http.client.HTTPException) as exc:
            return RobotsAnswer(None, problem=str(exc) or type(exc).__name__)

    @contextmanager
    def _open(self, url: str, *, accept: str) -> Iterator[http.client.HTTPResponse]:
        """One GET of `url` (no redirect followed), its host's turn awaited, connected to a checked address."""
        parts = urlsplit(url)
        host, port = _host_port(url)
        addresses = resolve(host, port, allowed=self.policy.allowed_networks, resolver=self._resolver)
        self._wait_turn(url, host)
        connection = self._connect(parts.scheme, host, port, addresses)
        try:
            path = urlunsplit(("", "", parts.path or "/", parts.query, ""))
            connection.request("GET", path, headers={
                "User-Agent": self.policy.user_agent, "Accept": accept, "Accept-Encoding": "identity",
                "Connection": "close"})
            yield connection.getresponse()
        except TimeoutError:
            raise FetchError(f"timed out (no answer within {self.policy.timeout_s:g} s)") from None
        except ssl.SSLError as exc:
            raise FetchError(f"TLS error: {exc.reason or exc}") from None
        except (OSError, http.client.HTTPException) as exc:
            raise FetchError(f"network error: {exc or type(exc).__name__}") from None
        finally:
            connection.close()
            self._last[host] = self._clock()  # the delay runs from the end of a request to the next one's start

    def _connect(self, scheme: str, host: str, port: int, addresses: list[str]) -> http.client.HTTPConnection:
        problems = []
        for address in addresses:
            connection: http.client.HTTPConnection
            if scheme == "https":
                connection = _PinnedHTTPS(host, port, address, self.policy.timeout_s, self._tls)
            else:
                connection = _PinnedHTTP(host, port, address, self.policy.timeout_s)
            try:
                connection.connect()
                return connection
            except TimeoutError:
                problems.append(f"{address}: timed out")
            except ssl.SSLError as exc:
                problems.append(f"{address}: TLS error: {exc.reason or exc}")
            except OSError as exc:
                problems.append(f"{address}: {exc.strerror or exc}")
            connection.close()
        raise FetchError(f"cannot connect to {host} ({'; '.join(problems)})")

    def _wait_turn(self, url: str, host: str) -> None:
        delay = max(self.policy.delay_s, self._robots.crawl_delay(url))
        last = self._last.get(host)
        if last is not None:
            wait = last + delay - self._clock()
            if wait > 0:
                self._sleep(wait)


class _PinnedHTTP(http.client.HTTPConnection):
    """An HTTP connection to `address`, a checked address of `host` (which the Host header still names)."""

    def __init__(self, host: str, port: int, address: str, timeout: float) -> None:
        super().__init__(host, port, timeout=timeout)
        self.address = address

    def connect(self) -> None:
        self.sock = socket.create_connection((self.address, self.port), self.timeout)


class _PinnedHTTPS(http.client.HTTPSConnection):
    """An HTTPS connection to `address`; the certificate is verified against `host`, sent as SNI."""

    def __init__(self, host: str, port: int, address: str, timeout: float, tls: ssl.SSLContext) -> None:
        super().__init__(host, port, timeout=timeout, context=tls)
        self.address = address
        self.tls = tls

    def connect(self) -> None:
        sock = socket.create_connection((self.address, self.port), self.timeout)
        self.sock = self.tls.wrap_socket(sock, server_hostname=self.host)


def _host_port(url: str) -> tuple[str, int]:
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise FetchError(f"not a valid URL ({exc})") from None
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https"):
        raise FetchError(f"refused: a {scheme or 'relative'} URL (only http and https are fetched)")
    if not parts.hostname:
        raise FetchError("not a valid URL (no host)")
    return parts.hostname, port or (443 if scheme == "https" else 80)


def _location(url: str, response: http.client.HTTPResponse) -> str:
    location = (response.getheader("Location") or "").strip()
    if not location:
        raise FetchError(f"HTTP {response.status} without a Location")
    target = urlsplit(urljoin(url, location))
    return urlunsplit((target.scheme, target.netloc, target.path, target.query, ""))
