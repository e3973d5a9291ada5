"""A stand-in for the worker's analysis, importable by spawned worker processes: it hangs on a file that carries
the STALL marker and dies on one that carries DIE, as native code can on a pathological file."""

from __future__ import annotations

import os
import signal
import time

from facetrail.ingest.photo import ImageAnalysis, analyze_in_worker

STALL = b"facetrail-test: stall here"
DIE = b"facetrail-test: die here"


def analyze_or_misbehave(data: bytes) -> ImageAnalysis:
    if STALL in data:
        time.sleep(3600)
    if DIE in data:
        os.kill(os.getpid(), signal.SIGKILL)
    return analyze_in_worker(data)
