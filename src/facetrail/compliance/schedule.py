"""The server's retention schedule: a background task that enforces retention at start and then every
`interval` seconds, in a worker thread, and that stops between two erasures when the server shuts down."""

from __future__ import annotations

import asyncio
import logging
import threading

from facetrail.accounts.roles import Actor, Role
from facetrail.compliance.retention import RetentionService
from facetrail.errors import FacetrailError

log = logging.getLogger(__name__)
SCHEDULE_ACTOR = Actor(name="system:retention", role=Role.OPERATOR, local=True)


class RetentionSchedule:
    def __init__(self, service: RetentionService, interval_s: float) -> None:
        self.service = service
        self.interval_s = interval_s
        self._stopping = threading.Event()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self.interval_s > 0:
            self._task = asyncio.create_task(self._loop())

    async def stop(self) -> None:
        """Let the run in progress finish its current erasure, then end the loop."""
        self._stopping.set()
        if self._task is not None:
            await self._task

    async def _loop(self) -> None:
        while not self._stopping.is_set():
            try:
                report = await asyncio.to_thread(self.service.run, SCHEDULE_ACTOR,
                                                 should_stop=self._stopping.is_set, audit_if_nothing=False)
                if report.images:
                    log.info("retention: %d expired image(s), %d erased", len(report.images),
                             report.images_erased)
            except FacetrailError as exc:  # e.g. the write-ahead log kept busy: the next round retries
                log.warning("retention run failed: %s", exc)
            await asyncio.to_thread(self._stopping.wait, self.interval_s)
