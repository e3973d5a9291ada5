"""The master key: where it lives and how it wraps data keys.

Three places, one interface (`MasterKey`):

- a key file (the default, `<data>/keys/master.key`, mode 0600): 32 random bytes, base64; created with a
  new data directory and never afterwards, so a missing file is an error rather than a silent new key;
- the environment (`FACETRAIL_MASTER_KEY`, base64 of 32 bytes), for secret managers that inject variables;
- a KMS hook (`FACETRAIL_KMS=module:factory`): the factory is called with the settings and returns an
  object with `key_id`, `wrap()` and `unwrap()`, so the master key itself never enters this process.

A master key's id is derived from the key (a hash), so a data key records which master wrapped it and a
wrong key is told apart from a damaged keyring.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import importlib
import os
import secrets
from pathlib import Path
from typing import Protocol

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from facetrail.errors import InvalidValueError, KeyUnavailableError
from facetrail.fsutil import fsync_dir

KEY_BYTES = 32
NONCE_BYTES = 12


class MasterKey(Protocol):
    """Wraps and unwraps data keys; `aad` binds a wrapped key to its id."""

    @property
    def key_id(self) -> str: ...

    def wrap(self, data_key: bytes, aad: bytes) -> bytes: ...

    def unwrap(self, wrapped: bytes, aad: bytes) -> bytes: ...


class LocalMasterKey:
    """A master key held in this process (from a key file or the environment): AES-256-GCM key wrapping."""

    def __init__(self, key: bytes, origin: str) -> None:
        if len(key) != KEY_BYTES:
            raise KeyUnavailableError(f"{origin}: a master key is {KEY_BYTES} bytes, this one is {len(key)}")
        self._aead = AESGCM(key)
        self.origin = origin
        self.key_id = hashlib.sha256(b"facetrail-master-key\0" + key).hexdigest()[:16]

    def wrap(self, data_key: bytes, aad: bytes) -> bytes:
        nonce = secrets.token_bytes(NONCE_BYTES)
        return nonce + self._aead.encrypt(nonce, data_key, aad)

    def unwrap(self, wrapped: bytes, aad: bytes) -> bytes:
        try:
            return self._aead.decrypt(wrapped[:NONCE_BYTES], wrapped[NONCE_BYTES:], aad)
        except InvalidTag:
            raise KeyUnavailableError(f"a data key does not open with the master key from {self.origin}") from None


def new_key_bytes() -> bytes:
    return secrets.token_bytes(KEY_BYTES)


def decode_key_text(text: str, origin: str) -> bytes:
    try:
        return base64.b64decode(text.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise KeyUnavailableError(f"{origin}: not a base64 master key") from None


def read_key_file(path: Path) -> LocalMasterKey:
    try:
        mode = path.stat().st_mode & 0o777
        text = path.read_text()
    except FileNotFoundError:
        raise KeyUnavailableError(f"the master key file {path} is missing: nothing encrypted can be read "
                                  "(put the key file back, or set FACETRAIL_MASTER_KEY)") from None
    except OSError as exc:
        raise KeyUnavailableError(f"{path}: {exc.strerror or exc}") from None
    if mode & 0o077:
        raise KeyUnavailableError(f"{path} is readable by others (mode {mode:o}): chmod 600 it")
    return LocalMasterKey(decode_key_text(text, str(path)), str(path))


def write_key_file(path: Path, key: bytes) -> None:
    """Write a key file readable by its owner only; an existing file is never overwritten."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.write(fd, base64.b64encode(key) + b"\n")
        os.fsync(fd)
    finally:
        os.close(fd)
    fsync_dir(path.parent)


def from_environment(text: str) -> LocalMasterKey:
    return LocalMasterKey(decode_key_text(text, "FACETRAIL_MASTER_KEY"), "FACETRAIL_MASTER_KEY")


def from_hook(spec: str, settings: object) -> MasterKey:
    """Load a KMS hook named `module:factory` and call the factory with the settings."""
    module_name, _, attr = spec.partition(":")
    if not module_name or not attr:
        raise InvalidValueError("kms", "name the hook as module:factory")
    try:
        factory = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as exc:
        raise InvalidValueError("kms", f"cannot load {spec}: {exc}") from None
    key: MasterKey = factory(settings)
    return key
