"""Who has the data directory open (locks), and putting a restored copy (backup/restore.py) in place of the
live files, in steps that a crash cannot leave half-done.

A restore extracts the archive into `<data>/.restore/new`, writes a journal, then moves each live item
(database and its -wal/-shm, blobs, index, audit head) to `<data>/.restore/old` and the restored one in its
place. Each move is a rename, checked before it is made, so running the swap again after a crash finishes it.
The journal is marked `swapped` once everything is in place; only then is the old copy removed and the data
directory opened, which re-applies the erasure ledger and removes the journal (see rights/reapply.py).
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from facetrail.datadir import describe, holders
from facetrail.errors import ConflictError
from facetrail.fsutil import atomic_write, fsync_dir, private_dir, private_opener

STAGING = ".restore"
JOURNAL = "journal.json"
# The restored copy brings these; a live -wal or -shm must never be left beside a restored database.
ITEMS = ("facetrail.db-wal", "facetrail.db-shm", "facetrail.db", "blobs", "index", "audit.head")
LOCK = "facetrail.lock"
FINISH_LOCK = "restore.lock"


def journal_path(data: Path) -> Path:
    return data / STAGING / JOURNAL


def read_journal(data: Path) -> dict[str, Any] | None:
    try:
        journal: dict[str, Any] = json.loads(journal_path(data).read_text())
        return journal
    except FileNotFoundError:
        return None


def write_journal(data: Path, journal: dict[str, Any]) -> None:
    atomic_write(journal_path(data), json.dumps(journal, sort_keys=True).encode())


def finish_swap(data: Path) -> dict[str, Any] | None:
    """Complete an interrupted swap, if there is one; returns the pending restore's journal (or None)."""
    journal = read_journal(data)
    if journal is None:
        return None
    if journal["state"] == "swapping":
        new, old = data / STAGING / "new", data / STAGING / "old"
        private_dir(old)
        brought = set(journal["items"])
        for name in ITEMS:
            live, staged, aside = data / name, new / name, old / name
            # Set the live item aside (once) when the backup brings its replacement, or brings none: a live
            # -wal beside a restored database would be replayed into it.
            if (staged.exists() or name not in brought) and live.exists() and not aside.exists():
                os.replace(live, aside)
            if staged.exists() and not live.exists():
                os.replace(staged, live)
        fsync_dir(data)
        journal["state"] = "swapped"
        write_journal(data, journal)
    shutil.rmtree(data / STAGING / "old", ignore_errors=True)
    shutil.rmtree(data / STAGING / "new", ignore_errors=True)
    return journal


def done(data: Path) -> None:
    journal_path(data).unlink(missing_ok=True)
    shutil.rmtree(data / STAGING, ignore_errors=True)


@contextmanager
def finishing(data: Path) -> Iterator[None]:
    """Held while a process finishes a pending restore (swap, ledger, audit), so that two processes opening the
    directory at once do not both do it: the second waits, then finds it done."""
    with open(data / FINISH_LOCK, "a+", opener=private_opener) as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        yield


@contextmanager
def in_use(data: Path) -> Iterator[None]:
    """Held (shared) by every process that has the data directory open."""
    with _lock(data, fcntl.LOCK_SH, lambda: "a restore is replacing this data directory; try again when it is done"):
        yield


@contextmanager
def exclusive(data: Path, doing: str = "restoring") -> Iterator[None]:
    """Held by a restore (and a key rotation, the demo's set-up): no other process may have the data directory
    open meanwhile. The refusal names the processes that hold it."""
    def busy() -> str:
        pids = holders(data / LOCK)
        who = ", ".join(describe(pid) for pid in pids) if pids else "another process (a server, an ingestion?)"
        return f"{data} is in use by {who}: stop it before {doing}"

    with _lock(data, fcntl.LOCK_EX, busy):
        yield


@contextmanager
def _lock(data: Path, kind: int, busy: Callable[[], str]) -> Iterator[None]:
    private_dir(data)
    fh = open(data / LOCK, "a+", opener=private_opener)  # noqa: SIM115  # held for the life of the context
    try:
        try:
            fcntl.flock(fh, kind | fcntl.LOCK_NB)
        except BlockingIOError:
            raise ConflictError(busy()) from None
        yield
    finally:
        fh.close()
