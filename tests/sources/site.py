"""A small web site on 127.0.0.1 (a free port) for the URL-list tests, which logs every request it gets."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass
class Page:
    body: bytes = b""
    status: int = 200
    content_type: str = "image/jpeg"
    headers: dict[str, str] = field(default_factory=dict)
    announce_length: bool = True
    delay_s: float = 0.0


@dataclass(frozen=True)
class Request:
    path: str
    user_agent: str
    host: str
    at: float


class Site:
    """Pages by path (anything else is a 404); `requests` lists every request, in order."""

    def __init__(self) -> None:
        self.pages: dict[str, Page] = {}
        self.requests: list[Request] = []
        self.port = 0

    def url(self, path: str, host: str = "127.0.0.1") -> str:
        return f"http://{host}:{self.port}{path}"

    def paths(self) -> list[str]:
        return [r.path for r in self.requests]


def _handler(site: Site) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802  # http.server's naming
            site.requests.append(Request(self.path, self.headers.get("User-Agent", ""), self.headers.get("Host", ""),
                                         time.monotonic()))
            page = site.pages.get(self.path, Page(b"not found", 404, "text/plain"))
            time.sleep(page.delay_s)
            self.send_response(page.status)
            self.send_header("Content-Type", page.content_type)
            for name, value in page.headers.items():
                self.send_header(name, value)
            if page.announce_length:
                self.send_header("Content-Length", str(len(page.body)))
            self.end_headers()
            try:
                self.wfile.write(page.body)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the client stopped reading (a response over its size limit)

        def log_message(self, format: str, *args: object) -> None:  # noqa: A002  # http.server's naming
            pass

    return Handler


@contextmanager
def serving() -> Iterator[Site]:
    site = Site()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(site))
    server.daemon_threads = True
    site.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield site
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
