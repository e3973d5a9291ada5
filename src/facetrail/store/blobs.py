"""Blob store: face crops, stored images, selfies and access packages as files under the data directory.

Every blob is sealed (AES-GCM) under a data key the caller chooses: a crop under its face's key, an image
under its own. The blob names its key in its header, so reading needs no bookkeeping; destroying the key
leaves the file, and every copy of it, unreadable. What a blob is (its kind, the first part of its key) is
authenticated with it.

Writes are atomic (temporary file, fsync, rename), so a crash never leaves half a blob under a real key.
Keys are chosen by the caller and are deterministic, so a re-run overwrites rather than orphans. Layout:
<root>/<kind>/<2 hex>/<name>.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from facetrail.crypto.vault import DataKey, Vault, key_id_of
from facetrail.errors import KeyUnavailableError
from facetrail.fsutil import atomic_write, private_dir

_KEY = re.compile(r"^[a-z]+/[A-Za-z0-9_.-]+$")


class BlobStore:
    def __init__(self, root: Path, vault: Vault) -> None:
        self.root = root
        self.vault = vault
        private_dir(self.root)

    def _path(self, key: str) -> Path:
        if not _KEY.match(key) or ".." in key:
            raise ValueError(f"invalid blob key {key!r}")
        kind, name = key.split("/", 1)
        return self.root / kind / name[:2] / name

    def put(self, key: str, data: bytes, data_key: DataKey) -> str:
        atomic_write(self._path(key), self.vault.seal(data_key, _kind(key), data))
        return key

    def get(self, key: str) -> bytes:
        """The blob's plaintext; KeyUnavailableError if its data key was destroyed."""
        return self.vault.open(_kind(key), self._path(key).read_bytes())

    def raw(self, key: str) -> bytes | None:
        """The blob's bytes as stored (sealed), or None when there is no such blob."""
        try:
            return self._path(key).read_bytes()
        except FileNotFoundError:
            return None

    def key_id(self, key: str) -> str:
        """The id of the data key the blob is sealed under now."""
        with open(self._path(key), "rb") as fh:
            return key_id_of(fh.read(64))

    def exists(self, key: str) -> bool:
        return self._path(key).exists()

    def shred(self, key: str) -> None:
        """Destroy the blob's data key (every copy becomes unreadable), then the file. For blobs sealed
        under a key of their own (selfies, packages); a crop shares its face's key."""
        try:
            self.vault.keyring.destroy([self.key_id(key)])
        except FileNotFoundError:
            return
        except KeyUnavailableError:
            pass  # not sealed (written by an earlier version): deleting it is all there is to do
        self.delete(key)

    def delete(self, key: str) -> None:
        try:
            os.unlink(self._path(key))
        except FileNotFoundError:
            pass


def _kind(key: str) -> str:
    return key.split("/", 1)[0]
