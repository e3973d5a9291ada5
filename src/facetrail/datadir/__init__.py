"""What makes a directory a facetrail data directory, and which processes hold one open.

Only an explicit creation (`facetrail init`, `Facetrail.open(path, create=True)`, the demo on its own
directory) makes a data directory: a mistyped path must fail, not become a new, empty store with a new master
key. A directory is a data directory when it holds the metadata store or the keyring (the keyring is never
moved by a restore, so a restore cut off between its renames still counts).
"""

from __future__ import annotations

import os
from pathlib import Path

from facetrail.errors import NotFoundError

DATABASE = "facetrail.db"
KEYRING = Path("keys") / "keyring.db"


class NoDataDirectoryError(NotFoundError):
    """The path given as the data directory holds no facetrail data directory."""

    def __init__(self, path: Path) -> None:
        super().__init__(f"no facetrail data directory at {path} (create one with `facetrail init --data {path}`)")
        self.path = path


def is_data_dir(path: Path) -> bool:
    return (path / DATABASE).is_file() or (path / KEYRING).is_file()


def require_data_dir(path: Path) -> None:
    if not is_data_dir(path):
        raise NoDataDirectoryError(path)


def holders(lock_file: Path) -> list[int]:
    """Ids of the other processes holding a lock (flock) on `lock_file`, as the kernel lists them
    (Linux's /proc/locks; an empty list where it cannot be read)."""
    try:
        stat = lock_file.stat()
        table = Path("/proc/locks").read_text()
    except OSError:
        return []
    wanted = (os.major(stat.st_dev), os.minor(stat.st_dev), stat.st_ino)
    found: set[int] = set()
    for line in table.splitlines():
        fields = line.split()
        # "1: FLOCK  ADVISORY  READ  1234 fd:01:5678 0 EOF"; lines with "->" are waiters, not holders.
        if len(fields) < 6 or fields[1] != "FLOCK" or "->" in fields:
            continue
        try:
            major, minor, inode = fields[5].split(":")
            key = (int(major, 16), int(minor, 16), int(inode))
            pid = int(fields[4])
        except ValueError:
            continue
        if key == wanted and pid != os.getpid():
            found.add(pid)
    return sorted(found)


def describe(pid: int) -> str:
    """`pid 1234 (facetrail serve --port 8000)`: the process's command line where it can be read."""
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return f"pid {pid}"
    words = [os.path.basename(a.decode(errors="replace")) if i == 0 else a.decode(errors="replace")
             for i, a in enumerate(argv) if a]
    command = " ".join(words)
    return f"pid {pid} ({command[:120]})" if command else f"pid {pid}"
