"""Serving the API from the command line (`serve`, `demo`): the port is taken before anything else is done."""

from __future__ import annotations

import socket

from facetrail.errors import ConflictError
from facetrail.runtime import Facetrail


def take_port(host: str, port: int) -> socket.socket:
    """Listen on host:port now, so that a port in use is reported before the command changes anything."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn does: a restart may follow a stop
    try:
        sock.bind((host, port))
        sock.listen(2048)
    except OSError as exc:
        sock.close()
        raise ConflictError(f"cannot listen on {host}:{port}: {exc.strerror or exc} (another server is "
                            "probably running there; stop it or choose another --port)") from None
    return sock


def serve_api(ft: Facetrail, sock: socket.socket) -> None:
    """Run the API on a socket from `take_port` until interrupted."""
    import uvicorn

    from facetrail.api.app import create_app

    host, port = sock.getsockname()[:2]
    ft.gallery.index()  # load or repair before the first request
    server = uvicorn.Server(uvicorn.Config(create_app(ft), host=host, port=port, log_level="info"))
    try:
        server.run(sockets=[sock])
    finally:
        sock.close()
