"""Blob store: face crops, stored images, selfies and access packages as files under the data directory.

Every blob is sealed (AES-GCM) under a data key the caller chooses: a crop under its face's key, an image
under its own. The blob names its key in its header, so reading needs no bookkeeping; destroying the key
leaves the file, and every copy of it, unreadable. What a blob is (its kind, the first part of its key) is
authenticated with it.

Keys are chosen by the caller and are deterministic, so a re-run overwrites rather than orphans. Where the sealed
bytes are kept is a BlobStorage's business: files under the data directory by default (DirectoryStorage: writes
are atomic, temporary file, fsync, rename, so a crash never leaves half a blob under a real key; layout
<root>/<kind>/<2 hex>/<name>), or objects in an S3-compatible bucket when `blob_url` names one (store/s3.py). A
storage only ever sees ciphertext.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Protocol

from facetrail.config import Settings
from facetrail.crypto.vault import DataKey, Vault, key_id_of
from facetrail.errors import FacetrailError, KeyUnavailableError
from facetrail.fsutil import atomic_write, private_dir

_KEY = re.compile(r"^[a-z]+/[A-Za-z0-9_.-]+$")
HEADER_BYTES = 64  # enough of a sealed blob to read the id of its data key


class BlobStorage(Protocol):
    """Where sealed blobs are kept, by key `<kind>/<name>` (checked by BlobStore before any call)."""

    def write(self, key: str, data: bytes) -> None:
        """Store `data` under `key` whole or not at all (a crash never leaves part of it), replacing any."""
        ...

    def read(self, key: str, size: int | None = None) -> bytes | None:
        """The blob's bytes (its first `size` bytes when given), or None when there is no such blob."""
        ...

    def exists(self, key: str) -> bool: ...

    def delete(self, key: str) -> None:
        """Remove the blob; no error when there is none."""
        ...


class DirectoryStorage:
    """Blobs as owner-only files under a folder of the data directory: <root>/<kind>/<2 chars>/<name>."""

    def __init__(self, root: Path) -> None:
        self.root = root
        private_dir(self.root)

    @staticmethod
    def layout(root: Path, key: str) -> Path:
        """Where the storage rooted at `root` keeps `key`."""
        kind, name = key.split("/", 1)
        return root / kind / name[:2] / name

    def path(self, key: str) -> Path:
        return self.layout(self.root, key)

    def write(self, key: str, data: bytes) -> None:
        atomic_write(self.path(key), data)

    def read(self, key: str, size: int | None = None) -> bytes | None:
        try:
            with open(self.path(key), "rb") as fh:
                return fh.read() if size is None else fh.read(size)
        except FileNotFoundError:
            return None

    def exists(self, key: str) -> bool:
        return self.path(key).exists()

    def delete(self, key: str) -> None:
        try:
            os.unlink(self.path(key))
        except FileNotFoundError:
            pass


class BlobStore:
    """Sealed blobs: `root` is the data directory's blob folder (where the default storage keeps them), `storage`
    where they are kept (default: DirectoryStorage(root))."""

    def __init__(self, root: Path, vault: Vault, storage: BlobStorage | None = None) -> None:
        self.root = root
        self.vault = vault
        self.storage: BlobStorage = storage if storage is not None else DirectoryStorage(root)

    @staticmethod
    def _check(key: str) -> str:
        if not _KEY.match(key) or ".." in key:
            raise ValueError(f"invalid blob key {key!r}")
        return key

    def put(self, key: str, data: bytes, data_key: DataKey) -> str:
        self.storage.write(self._check(key), self.vault.seal(data_key, _kind(key), data))
        return key

    def get(self, key: str) -> bytes:
        """The blob's plaintext; KeyUnavailableError if its data key was destroyed."""
        sealed = self.storage.read(self._check(key))
        if sealed is None:
            raise FileNotFoundError(f"no blob {key}")
        return self.vault.open(_kind(key), sealed)

    def raw(self, key: str) -> bytes | None:
        """The blob's bytes as stored (sealed), or None when there is no such blob."""
        return self.storage.read(self._check(key))

    def key_id(self, key: str) -> str:
        """The id of the data key the blob is sealed under now (FileNotFoundError when there is no blob)."""
        head = self.storage.read(self._check(key), HEADER_BYTES)
        if head is None:
            raise FileNotFoundError(f"no blob {key}")
        return key_id_of(head)

    def exists(self, key: str) -> bool:
        return self.storage.exists(self._check(key))

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
        self.storage.delete(self._check(key))


def _kind(key: str) -> str:
    return key.split("/", 1)[0]


def blob_storage(settings: Settings) -> BlobStorage | None:
    """The storage `blob_url` names (an S3-compatible bucket, store/s3.py), or None for the data directory's blob
    folder (the default)."""
    if settings.blob_url is None:
        return None
    try:
        from facetrail.store.s3 import S3Storage
    except ImportError as exc:
        raise FacetrailError("blob_url names an S3 bucket, which needs boto3 (pip install 'facetrail[s3]')") from exc
    return S3Storage.from_settings(settings)
