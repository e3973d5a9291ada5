"""A KMS hook for the tests: it meets the interface a real one would (`key_id`, `wrap`, `unwrap`, and for audit
checkpoints `sign` and `signing_public_key`), holding its keys in this module, as a KMS would hold them in its own
hardware, so the data directory never sees them."""

from __future__ import annotations

import secrets

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from facetrail.crypto.master import LocalMasterKey

_KEY = secrets.token_bytes(32)
_SIGNING_KEY = Ed25519PrivateKey.generate()
calls = {"wrap": 0, "unwrap": 0, "sign": 0}


class TestKms:
    def __init__(self) -> None:
        self._inner = LocalMasterKey(_KEY, "test KMS")
        self.key_id = "kms-" + self._inner.key_id
        self.signing_key_name = "kms-audit"
        self.signing_public_key = _SIGNING_KEY.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)

    def wrap(self, data_key: bytes, aad: bytes) -> bytes:
        calls["wrap"] += 1
        return self._inner.wrap(data_key, aad)

    def unwrap(self, wrapped: bytes, aad: bytes) -> bytes:
        calls["unwrap"] += 1
        return self._inner.unwrap(wrapped, aad)


    def sign(self, message: bytes) -> bytes:
        calls["sign"] += 1
        return _SIGNING_KEY.sign(message)


def factory(_settings: object) -> TestKms:
    return TestKms()
