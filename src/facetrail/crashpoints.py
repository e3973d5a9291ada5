"""Named points where the crash tests kill the process, as a power cut would.

Setting FACETRAIL_CRASH_AT=<name> makes the process SIGKILL itself when it reaches `crash_point(<name>)`:
no clean-up, no flush. Unset (always, outside the tests), a crash point costs one dictionary lookup.
"""

from __future__ import annotations

import os
import signal

CRASH_ENV = "FACETRAIL_CRASH_AT"


def crash_point(name: str) -> None:
    if os.environ.get(CRASH_ENV) == name:
        os.kill(os.getpid(), signal.SIGKILL)
