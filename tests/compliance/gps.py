"""Photos with a GPS position in their EXIF, made in the test from a real sample photo with Pillow (no
sample carries one)."""

from __future__ import annotations

import io
import zlib
from pathlib import Path

from PIL import Image
from PIL.TiffImagePlugin import IFDRational

from tests.conftest import SAMPLES

PARIS = (48.8566, 2.3522)
BERLIN = (52.5200, 13.4050)


def _dms(value: float) -> tuple[IFDRational, IFDRational, IFDRational]:
    value = abs(value)
    degrees = int(value)
    minutes = int((value - degrees) * 60)
    seconds = ((value - degrees) * 60 - minutes) * 60
    return IFDRational(degrees, 1), IFDRational(minutes, 1), IFDRational(round(seconds * 10_000), 10_000)


def with_gps(sample: str | Path, position: tuple[float, float], kind: str = "JPEG") -> bytes:
    """The photo (a sample's name, or a path) re-encoded (as a JPEG, or `kind`) with EXIF GPS tags for `position`
    (latitude, longitude)."""
    latitude, longitude = position
    with Image.open(SAMPLES / sample if isinstance(sample, str) else sample) as image:
        exif = image.getexif()
        exif[0x8825] = {1: "N" if latitude >= 0 else "S", 2: _dms(latitude),
                        3: "E" if longitude >= 0 else "W", 4: _dms(longitude)}
        out = io.BytesIO()
        image.convert("RGB").save(out, kind, exif=exif.tobytes(), **({"quality": 95} if kind == "JPEG" else {}))
    return out.getvalue()


def png_chunk(kind: bytes, data: bytes) -> bytes:
    """A PNG chunk: its length, type, data and CRC."""
    return len(data).to_bytes(4, "big") + kind + data + zlib.crc32(kind + data).to_bytes(4, "big")


def png_chunks(data: bytes) -> list[bytes]:
    """A PNG's chunks, each whole (length, type, data, CRC), after its 8-byte signature."""
    chunks, at = [], 8
    while at < len(data):
        end = at + 12 + int.from_bytes(data[at:at + 4], "big")
        chunks.append(data[at:end])
        at = end
    return chunks
