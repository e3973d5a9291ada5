"""Where a photo was taken, from its EXIF GPS tags, read without decoding the pixels."""

from __future__ import annotations

import io
import math
import zlib
from dataclasses import dataclass
from typing import Any

from PIL import Image

GPS_IFD = 0x8825
LATITUDE_REF, LATITUDE, LONGITUDE_REF, LONGITUDE = 1, 2, 3, 4
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
PNG_MAX_CHUNKS = 100_000
"""Chunks of a PNG walked for its eXIf chunk, at most: a PNG's pixel data comes in chunks of 8-64 KiB (12,800 of 8 KiB
in a file of 100 MiB, the largest accepted by default); a hostile one of empty chunks would hold millions, 0.4 s a
million to walk."""
PNG_TEXT_EXIF = b"Raw profile type exif\x00"
"""The keyword of the text chunk (tEXt, zTXt, iTXt) in which ImageMagick and ExifTool write a PNG's EXIF."""


@dataclass(frozen=True)
class GeoPoint:
    """A WGS84 position in decimal degrees: latitude -90..90 (north positive), longitude -180..180 (east
    positive)."""

    latitude: float
    longitude: float


def gps_position(data: bytes) -> GeoPoint | None:
    """The position in the image's EXIF GPS tags, or None when there is none, or none that makes sense.

    (0, 0) is taken for absent: cameras without a fix write it, and nobody photographs faces there. The
    bytes are untrusted: anything malformed means "no position", and decoding problems are the image
    decoder's to report."""
    try:
        exif = _png_exif(data) if data.startswith(PNG_SIGNATURE) else None
        if exif is None:
            with Image.open(io.BytesIO(data)) as image:
                exif = image.getexif()
        gps = exif.get_ifd(GPS_IFD)
        latitude = _degrees(gps.get(LATITUDE), gps.get(LATITUDE_REF), "S")
        longitude = _degrees(gps.get(LONGITUDE), gps.get(LONGITUDE_REF), "W")
    except Exception:  # noqa: BLE001  # any parse failure of untrusted metadata is "no position"
        return None
    if latitude is None or longitude is None or not (-90 <= latitude <= 90 and -180 <= longitude <= 180):
        return None
    if latitude == 0 and longitude == 0:
        return None
    return GeoPoint(latitude, longitude)


def _png_exif(data: bytes) -> Image.Exif | None:
    """The EXIF of a PNG's last intact eXIf chunk (Pillow keeps the last; one whose CRC is wrong is skipped, as Pillow
    refuses it), empty without one, found by walking the chunks' headers; None for a PNG without one but with a text
    chunk of EXIF (PNG_TEXT_EXIF), which is left to Pillow. Pillow reads the chunks before the pixel data when it opens
    a PNG, and asked for EXIF it has not met, decodes the whole image to reach the chunks after it: 31 ms and the
    pixels' memory for a 0.9 MB sample, in the ingesting process, which leaves decoding to the vision processes."""
    found: bytes | None = None
    text = False
    at = len(PNG_SIGNATURE)
    for _ in range(PNG_MAX_CHUNKS):
        length, kind = int.from_bytes(data[at:at + 4], "big"), data[at + 4:at + 8]
        start, end = at + 8, at + 8 + length
        if end + 4 > len(data) or kind == b"IEND":  # the end, or a truncated chunk
            break
        if kind == b"eXIf" and zlib.crc32(data[at + 4:end]) == int.from_bytes(data[end:end + 4], "big"):
            found = data[start:end]
        elif kind in (b"tEXt", b"zTXt", b"iTXt") and data.startswith(PNG_TEXT_EXIF, start):
            text = True
        at = end + 4  # after the chunk's CRC
    if found is None:
        return None if text else Image.Exif()
    exif = Image.Exif()
    exif.load(found)
    return exif


def _degrees(value: Any, ref: Any, negative: str) -> float | None:
    """EXIF (degrees, minutes, seconds) rationals and an N/S or E/W reference, as signed decimal degrees."""
    if not isinstance(value, tuple | list) or len(value) != 3:
        return None
    degrees, minutes, seconds = (float(part) for part in value)
    total = degrees + minutes / 60 + seconds / 3600
    if not math.isfinite(total):
        return None
    if isinstance(ref, bytes):
        ref = ref.decode("ascii", "replace")
    return -total if str(ref).strip().upper() == negative else total
