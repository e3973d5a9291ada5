"""Sealing records: AES-256-GCM under a record's own data key.

A sealed record is self-describing: `FTE1`, the 16-byte id of its data key, a 12-byte random nonce, then the
ciphertext and tag. The header and a label naming what the record is (template, crop, image, ...) are
authenticated, so a template cannot be passed off as a crop or moved under another key.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import overload

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from facetrail.crypto.keyring import Keyring
from facetrail.errors import KeyUnavailableError

MAGIC = b"FTE1"
ID_BYTES = 16
NONCE_BYTES = 12
TAG_BYTES = 16
HEADER = len(MAGIC) + ID_BYTES
OVERHEAD = HEADER + NONCE_BYTES + TAG_BYTES
"""How much longer a sealed record is than its plaintext."""

Buffer = bytes | bytearray | memoryview


@dataclass(frozen=True)
class DataKey:
    id: str
    key: bytes

    def __repr__(self) -> str:  # never print key material
        return f"DataKey({self.id})"


def is_sealed(data: Buffer) -> bool:
    return data[:len(MAGIC)] == MAGIC and len(data) >= OVERHEAD


def key_id_of(sealed: Buffer) -> str:
    if not is_sealed(sealed):
        raise KeyUnavailableError("not an encrypted record")
    return sealed[len(MAGIC):HEADER].hex()


class Vault:
    def __init__(self, keyring: Keyring) -> None:
        self.keyring = keyring

    def new_keys(self, kind: str, count: int) -> list[DataKey]:
        return [DataKey(key_id, key) for key_id, key in self.keyring.create(kind, count)] if count else []

    def new_key(self, kind: str) -> DataKey:
        return self.new_keys(kind, 1)[0]

    def key(self, key_id: str) -> DataKey:
        found = self.keyring.get([key_id])
        if key_id not in found:
            raise KeyUnavailableError(f"data key {key_id} has been destroyed")
        return DataKey(key_id, found[key_id])

    def seal(self, key: DataKey, label: str, plaintext: bytes) -> bytes:
        header = MAGIC + bytes.fromhex(key.id)
        nonce = secrets.token_bytes(NONCE_BYTES)
        return header + nonce + AESGCM(key.key).encrypt(nonce, plaintext, header + label.encode())

    def open(self, label: str, sealed: bytes) -> bytes:
        return self.open_many(label, [sealed])[0]

    def opener(self, label: str) -> Callable[[bytes], bytes]:
        """Opens records of this label one at a time, each key fetched once for the opener's life (the frames of
        one file): drop it when done, so that no key outlives its destruction in memory."""
        keys: dict[str, bytes] = {}

        def open_one(sealed: bytes) -> bytes:
            return self._open(label, sealed, self._fetched(keys, sealed))
        return open_one

    def opener_into(self, label: str) -> Callable[[Buffer, memoryview], None]:
        """As `opener`, but each record's plaintext is written into `out` (exactly `len(sealed) - OVERHEAD` bytes)
        instead of a new bytes object: a large record (an index snapshot's frame) is decrypted where it is to be
        kept. If the record does not open, `out` holds garbage."""
        keys: dict[str, bytes] = {}

        def open_into(sealed: Buffer, out: memoryview) -> None:
            self._open(label, sealed, self._fetched(keys, sealed), out)
        return open_into

    def _fetched(self, keys: dict[str, bytes], sealed: Buffer) -> dict[str, bytes]:
        """`keys`, with the key `sealed` is under fetched into it if it was not there (and exists)."""
        key_id = key_id_of(sealed)
        if key_id not in keys:
            keys.update(self.keyring.get([key_id]))
        return keys

    def open_many(self, label: str, sealed: Sequence[bytes]) -> list[bytes]:
        """Open records sealed under any keys (fetched in one pass); a destroyed key raises."""
        keys = self.keyring.get({key_id_of(s) for s in sealed})
        return [self._open(label, s, keys) for s in sealed]

    @overload
    @staticmethod
    def _open(label: str, sealed: Buffer, keys: dict[str, bytes]) -> bytes: ...

    @overload
    @staticmethod
    def _open(label: str, sealed: Buffer, keys: dict[str, bytes], out: memoryview) -> None: ...

    @staticmethod
    def _open(label: str, sealed: Buffer, keys: dict[str, bytes], out: memoryview | None = None) -> bytes | None:
        """The plaintext of `sealed`, or None once it is written into `out`."""
        key_id = key_id_of(sealed)
        key = keys.get(key_id)
        if key is None:
            raise KeyUnavailableError(f"the {label}'s data key {key_id} has been destroyed")
        # Views, not slices: a large record (the index snapshot) is not copied before decryption.
        nonce, body = memoryview(sealed)[HEADER:HEADER + NONCE_BYTES], memoryview(sealed)[HEADER + NONCE_BYTES:]
        authenticated = bytes(sealed[:HEADER]) + label.encode()
        try:
            if out is None:
                return AESGCM(key).decrypt(nonce, body, authenticated)
            AESGCM(key).decrypt_into(nonce, body, authenticated, out)
            return None
        except InvalidTag:
            raise KeyUnavailableError(f"{label} data under key {key_id} is damaged, or was sealed as something "
                                      "else") from None
