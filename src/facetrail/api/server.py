"""Serving the API with uvicorn: the port taken before anything else is done, a log that holds no secret, and
a shutdown that does not wait for a long ingestion to end.

`take_port` listens at once, so that a port in use is reported before a command changes anything. Told to stop
(SIGTERM, Ctrl-C), uvicorn stops accepting connections and waits for the requests in progress. An upload's
ingestion runs in a request and may take minutes, so the signal also interrupts it: the batch ends after the
image in hand, whatever was committed stays, and the client gets a 503 saying to upload again (a re-run skips
what is in the store and does the rest). The log goes through `facetrail.api.serving.log_config` (secrets
redacted).
"""

from __future__ import annotations

import signal
import socket
import threading
from types import FrameType
from typing import TYPE_CHECKING

from facetrail.errors import ConflictError
from facetrail.runtime import Facetrail

if TYPE_CHECKING:
    import uvicorn


def take_port(host: str, port: int) -> socket.socket:
    """Listen on host:port now, so that a port in use is reported before the command changes anything."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # IPPROTO_TCP named, not left 0: asyncio turns Nagle's algorithm off (TCP_NODELAY) only on connections whose
    # socket says it is TCP, and accepted connections inherit this one's protocol number. With 0, each answer
    # written in two parts (headers, then body) waited for the client's delayed ACK: about 40 ms per request.
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn does: a restart may follow a stop
    try:
        sock.bind((host, port))
        sock.listen(2048)
    except OSError as exc:
        sock.close()
        raise ConflictError(f"cannot listen on {host}:{port}: {exc.strerror or exc} (another server is "
                            "probably running there; stop it or choose another --port)") from None
    return sock


def _server(config: uvicorn.Config, ft: Facetrail) -> uvicorn.Server:
    """uvicorn's server, which also interrupts an ingestion in progress when it is told to stop."""
    import uvicorn

    class Server(uvicorn.Server):
        def handle_exit(self, sig: int, frame: FrameType | None) -> None:
            ft.ingest.interrupt()
            super().handle_exit(sig, frame)

    return Server(config)


class _IndexLoad:
    """`ft.gallery.index()` in a thread of its own; `wait` returns once it is done, or raises what it raised."""

    def __init__(self, ft: Facetrail) -> None:
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, args=(ft,), name="facetrail-index-load", daemon=True)
        self._thread.start()

    def _run(self, ft: Facetrail) -> None:
        try:
            ft.gallery.index()
        except BaseException as exc:  # handed to the serving thread by wait()
            self._error = exc

    def wait(self) -> None:
        self._thread.join()
        if self._error is not None:
            raise self._error


class _Stopped(Exception):
    """The signal that stopped the server, raised again by uvicorn once it has shut down."""


def _stopped(_sig: int, _frame: FrameType | None) -> None:
    raise _Stopped


def serve(ft: Facetrail, sock: socket.socket) -> None:
    """Serve the API on a socket from `take_port` until SIGTERM or SIGINT; an ingestion in progress is
    interrupted cleanly, and this returns (so that the caller closes the data directory) rather than dying of
    the signal. The socket is closed on return."""
    host, port = sock.getsockname()[:2]
    # uvicorn raises the signal it stopped for again, under the handlers it found: these end the serving here. A
    # signal while the server starts (the index loading, the web application imported) ends it the same way, so
    # that the caller closes the data directory (which waits for the load) rather than the process dying of it.
    previous = {sig: signal.signal(sig, _stopped) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        # The index is loaded (or repaired) before the first request is taken, while this thread imports the web
        # application and builds it: at 1M faces the load reads and decrypts about 1 GB, mostly outside the GIL.
        # Nothing of the web application (uvicorn, FastAPI, the routes) is imported before the load has started.
        loading = _IndexLoad(ft)
        import uvicorn

        from facetrail.api.app import create_app
        from facetrail.api.serving import log_config

        app = create_app(ft)
        loading.wait()
        config = uvicorn.Config(app, host=host, port=port, log_level="info", log_config=log_config())
        _server(config, ft).run(sockets=[sock])
    except _Stopped:
        pass
    finally:
        sock.close()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
