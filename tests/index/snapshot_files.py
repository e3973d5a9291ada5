"""An index snapshot file as it lies on disk: FILE_MAGIC, then frames, each an 8-byte length and the sealed frame."""

from __future__ import annotations

import struct

from facetrail.index.faiss_index import FILE_MAGIC


def frames_of(raw: bytes) -> list[bytes]:
    """The sealed frames of a snapshot file, as written (nothing decrypted)."""
    assert raw.startswith(FILE_MAGIC)
    out, position = [], len(FILE_MAGIC)
    while position < len(raw):
        (length,) = struct.unpack("<Q", raw[position:position + 8])
        out.append(raw[position + 8:position + 8 + length])
        position += 8 + length
    return out


def file_of(frames: list[bytes]) -> bytes:
    """A snapshot file holding these frames, in this order."""
    return FILE_MAGIC + b"".join(struct.pack("<Q", len(f)) + f for f in frames)
