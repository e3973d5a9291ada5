"""The listening socket `facetrail serve` takes before opening the data directory (api/server.py)."""

from __future__ import annotations

import asyncio
import socket
import subprocess
import sys

import pytest

from facetrail.api.server import take_port
from facetrail.errors import ConflictError


async def _nodelay_of_accepted_connection(sock: socket.socket) -> int:
    """TCP_NODELAY on the server side of one connection that asyncio accepted on `sock`, as uvicorn serves it."""
    seen: asyncio.Future[int] = asyncio.get_running_loop().create_future()

    class Probe(asyncio.Protocol):
        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            conn = transport.get_extra_info("socket")
            seen.set_result(conn.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))
            transport.close()

    server = await asyncio.get_running_loop().create_server(Probe, sock=sock)
    async with server:
        host, port = sock.getsockname()[:2]
        _reader, writer = await asyncio.open_connection(host, port)
        try:
            return await asyncio.wait_for(seen, timeout=10)
        finally:
            writer.close()


def test_connections_on_the_taken_port_send_without_nagle_delay() -> None:
    """An answer written in two parts (headers, then body) must not wait for the client's delayed ACK (about
    40 ms a request): asyncio turns Nagle's algorithm off only on sockets that say they are TCP."""
    sock = take_port("127.0.0.1", 0)
    assert asyncio.run(_nodelay_of_accepted_connection(sock)) != 0


def test_a_port_in_use_is_refused_with_what_to_do() -> None:
    first = take_port("127.0.0.1", 0)
    try:
        port = first.getsockname()[1]
        with pytest.raises(ConflictError, match=f"cannot listen on 127.0.0.1:{port}.*--port"):
            take_port("127.0.0.1", port)
    finally:
        first.close()


def test_the_port_and_the_index_load_come_before_the_web_application_is_imported() -> None:
    """`serve` takes its port and starts loading the index (api/server.py) before it imports the web application
    (about 0.6 s of FastAPI, routes and templates), so that the load runs beside that import, not after it."""
    probe = ("import sys; import facetrail.cli.main; import facetrail.api.server; "
             "print(sorted(m for m in ('uvicorn', 'fastapi', 'starlette', 'jinja2', 'facetrail.api.app') "
             "if m in sys.modules))")
    proc = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"
