"""Blob store: face crops and stored images as files under the data directory.

Writes are atomic (temporary file, fsync, rename), so a crash never leaves half a blob under a
real key. Keys are chosen by the caller and are deterministic, so a re-run overwrites rather
than orphans. Layout: <root>/<kind>/<2 hex>/<name>.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from facetrail.fsutil import atomic_write

_KEY = re.compile(r"^[a-z]+/[A-Za-z0-9_.-]+$")


class BlobStore:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.root.mkdir(parents=True, exist_ok=True)

    def _path(self, key: str) -> Path:
        if not _KEY.match(key) or ".." in key:
            raise ValueError(f"invalid blob key {key!r}")
        kind, name = key.split("/", 1)
        return self.root / kind / name[:2] / name

    def put(self, key: str, data: bytes) -> str:
        atomic_write(self._path(key), data)
        return key

    def get(self, key: str) -> bytes:
        return self._path(key).read_bytes()

    def exists(self, key: str) -> bool:
        return self._path(key).exists()

    def delete(self, key: str) -> None:
        try:
            os.unlink(self._path(key))
        except FileNotFoundError:
            pass
