"""Serving the API with uvicorn, with a shutdown that does not wait for a long ingestion to end.

Told to stop (SIGTERM, Ctrl-C), uvicorn stops accepting connections and waits for the requests in
progress. An upload's ingestion runs in a request and may take minutes, so the signal also interrupts
it: the batch ends after the image in hand, whatever was committed stays, and the client gets a 503
saying to upload again (a re-run skips what is in the store and does the rest).
"""

from __future__ import annotations

import signal
from types import FrameType

import uvicorn

from facetrail.api.app import create_app
from facetrail.runtime import Facetrail


class _Server(uvicorn.Server):
    def __init__(self, config: uvicorn.Config, ft: Facetrail) -> None:
        super().__init__(config)
        self.ft = ft

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        self.ft.ingest.interrupt()
        super().handle_exit(sig, frame)


class _Stopped(Exception):
    """The signal that stopped the server, raised again by uvicorn once it has shut down."""


def _stopped(_sig: int, _frame: FrameType | None) -> None:
    raise _Stopped


def serve(ft: Facetrail, *, host: str, port: int) -> None:
    """Serve the API until SIGTERM or SIGINT; an ingestion in progress is interrupted cleanly, and this returns
    (so that the caller closes the data directory) rather than dying of the signal."""
    ft.gallery.index()  # load or repair before the first request
    # uvicorn raises the signal it stopped for again, under the handlers it found: these end the serving here.
    previous = {sig: signal.signal(sig, _stopped) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        _Server(uvicorn.Config(create_app(ft), host=host, port=port, log_level="info"), ft).run()
    except _Stopped:
        pass
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
