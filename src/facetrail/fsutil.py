"""File-system primitives with crash-safe semantics, and owner-only modes for everything facetrail writes: its
directories are created 0700 and its files 0600 whatever the umask, for they hold biometric data, keys, mail."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

PRIVATE_FILE = 0o600
PRIVATE_DIR = 0o700


def private_dir(path: Path) -> None:
    """Create `path` and every missing parent, owner-only (0700); an existing directory is left as it is."""
    missing: list[Path] = []
    while not path.exists():
        missing.append(path)
        path = path.parent
    for directory in reversed(missing):
        try:
            directory.mkdir(mode=PRIVATE_DIR)
        except FileExistsError:
            pass  # made meanwhile by another thread or process


def private_opener(path: str, flags: int) -> int:
    """`open(path, mode, opener=private_opener)`: a file it creates is owner-only (0600)."""
    return os.open(path, flags, PRIVATE_FILE)


def atomic_write(path: Path, data: bytes, before_rename: Callable[[], None] | None = None) -> None:
    """Replace `path` with `data` so that a crash leaves either the old or the new file, whole."""
    with atomic_writer(path, before_rename) as fh:
        fh.write(data)


@contextmanager
def atomic_writer(path: Path, before_rename: Callable[[], None] | None = None) -> Iterator[BinaryIO]:
    """A file to write `path`'s new contents into, piece by piece: on leaving without an error it is fsynced and
    renamed over `path`, so that a crash leaves either the old or the new file, whole; on an error it is
    removed and `path` stays as it was."""
    private_dir(path.parent)
    # Unique per process and thread: two threads writing the same file must not share a temporary name.
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    try:
        with open(tmp, "wb", opener=private_opener) as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        if before_rename is not None:
            before_rename()
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


def write_synced(path: Path, blocks: Iterable[bytes]) -> None:
    """Write a new file from its blocks and make it durable (the caller fsyncs the directories once it has written
    them all)."""
    with open(path, "wb", opener=private_opener) as fh:
        for block in blocks:
            fh.write(block)
        fh.flush()
        os.fsync(fh.fileno())


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
