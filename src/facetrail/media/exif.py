"""Where a photo was taken, from its EXIF GPS tags, read without decoding the pixels."""

from __future__ import annotations

import io
import math
from dataclasses import dataclass
from typing import Any

from PIL import Image

GPS_IFD = 0x8825
LATITUDE_REF, LATITUDE, LONGITUDE_REF, LONGITUDE = 1, 2, 3, 4


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
        with Image.open(io.BytesIO(data)) as image:
            gps = image.getexif().get_ifd(GPS_IFD)
            latitude = _degrees(gps.get(LATITUDE), gps.get(LATITUDE_REF), "S")
            longitude = _degrees(gps.get(LONGITUDE), gps.get(LONGITUDE_REF), "W")
    except Exception:  # noqa: BLE001  # any parse failure of untrusted metadata is "no position"
        return None
    if latitude is None or longitude is None or not (-90 <= latitude <= 90 and -180 <= longitude <= 180):
        return None
    if latitude == 0 and longitude == 0:
        return None
    return GeoPoint(latitude, longitude)


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
