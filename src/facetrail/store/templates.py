"""How a template is kept in the store: little-endian float32 bytes, sealed under the record's data key."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from numpy.typing import NDArray

from facetrail.crypto.vault import DataKey, Vault

LABEL = "template"


def encode_template(vector: NDArray[np.float32]) -> bytes:
    return np.asarray(vector, dtype="<f4").tobytes()


def decode_template(data: bytes, dim: int) -> NDArray[np.float32]:
    vector = np.frombuffer(data, dtype="<f4")
    if vector.shape != (dim,):
        raise ValueError(f"stored template has {vector.size} values, expected {dim}")
    return vector.astype(np.float32)


def seal_template(vault: Vault, key: DataKey, vector: NDArray[np.float32]) -> bytes:
    return vault.seal(key, LABEL, encode_template(vector))


def open_templates(vault: Vault, sealed: Sequence[bytes], dim: int) -> list[NDArray[np.float32]]:
    """Decrypt and decode stored templates (their data keys fetched in one pass)."""
    return [decode_template(plain, dim) for plain in vault.open_many(LABEL, sealed)]
