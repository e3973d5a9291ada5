"""The server's own audit checkpoints: one every `checkpoint_interval_s` while it runs, unless nothing was logged
since the last (erasures add theirs)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from functools import partial

from starlette.concurrency import run_in_threadpool

from facetrail.audit.checkpoints import NO_KEY
from facetrail.runtime import Facetrail

log = logging.getLogger(__name__)


async def _every(ft: Facetrail, interval_s: float) -> None:
    while True:
        await asyncio.sleep(interval_s)
        await run_in_threadpool(partial(ft.checkpoint_after, "schedule", scheduled=True))


@asynccontextmanager
async def checkpoint_schedule(ft: Facetrail) -> AsyncIterator[None]:
    """Run the schedule for as long as the app runs; say once, at start, when no key can sign."""
    interval = ft.settings.checkpoint_interval_s
    if await run_in_threadpool(ft.checkpoints.signer) is None:
        log.warning("%s", NO_KEY)
    task = asyncio.create_task(_every(ft, interval)) if interval > 0 else None
    try:
        yield
    finally:
        if task is not None:
            task.cancel()
            with suppress(asyncio.CancelledError):
                await task
