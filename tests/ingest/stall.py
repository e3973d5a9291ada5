"""A stand-in for the worker's analysis, importable by spawned worker processes: it hangs on a file that carries
the STALL marker and dies on one that carries DIE, as native code can on a pathological file; raises an error that
cannot be pickled on one that carries ODD_ERROR."""

from __future__ import annotations

import os
import signal
import time

from facetrail.ingest.photo import ImageAnalysis, analyze_in_worker

STALL = b"facetrail-test: stall here"
DIE = b"facetrail-test: die here"
ODD_ERROR = b"facetrail-test: raise an error that cannot be pickled"


class OddError(Exception):
    """An error as some libraries define them: its constructor takes other arguments than it keeps, so that it
    cannot be rebuilt from its pickle."""

    def __init__(self, code: int, text: str) -> None:
        super().__init__(f"code {code}: {text}")


def analyze_or_misbehave(data: bytes) -> ImageAnalysis:
    if STALL in data:
        time.sleep(3600)
    if DIE in data:
        os.kill(os.getpid(), signal.SIGKILL)
    if ODD_ERROR in data:
        raise OddError(7, "the library gave up")
    return analyze_in_worker(data)
