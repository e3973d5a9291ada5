"""How a template is kept in the store: little-endian float32 bytes."""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray


def encode_template(vector: NDArray[np.float32]) -> bytes:
    return np.asarray(vector, dtype="<f4").tobytes()


def decode_template(data: bytes, dim: int) -> NDArray[np.float32]:
    vector = np.frombuffer(data, dtype="<f4")
    if vector.shape != (dim,):
        raise ValueError(f"stored template has {vector.size} values, expected {dim}")
    return vector.astype(np.float32)
