"""A KMS hook for the tests: it meets the interface a real one would (`key_id`, `wrap`, `unwrap`), holding its
key in this module, as a KMS would hold it in its own hardware, so the data directory never sees it."""

from __future__ import annotations

import secrets

from facetrail.crypto.master import LocalMasterKey

_KEY = secrets.token_bytes(32)
calls = {"wrap": 0, "unwrap": 0}


class TestKms:
    def __init__(self) -> None:
        self._inner = LocalMasterKey(_KEY, "test KMS")
        self.key_id = "kms-" + self._inner.key_id

    def wrap(self, data_key: bytes, aad: bytes) -> bytes:
        calls["wrap"] += 1
        return self._inner.wrap(data_key, aad)

    def unwrap(self, wrapped: bytes, aad: bytes) -> bytes:
        calls["unwrap"] += 1
        return self._inner.unwrap(wrapped, aad)


def factory(_settings: object) -> TestKms:
    return TestKms()
