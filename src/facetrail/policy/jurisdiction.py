"""Which jurisdictions an image's faces belong to, and how that was decided.

The rule: the jurisdictions its source was registered for (the population the controller declared,
basis `source-declared`) and, when the image carries EXIF GPS tags, the country where it was taken
(basis `exif-gps`, reverse-geocoded offline). Both count: an order for France reaches a photo taken in
France in a source declared for Germany, and every photo of a source declared for France.

What it cannot be: the person's residence or nationality, which facetrail cannot know from a photo.
A photo whose metadata was stripped or forged says nothing, or something false, about where it was taken.
URL sources, which would add the host's country-code domain, do not exist yet.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum

from facetrail.media.exif import gps_position
from facetrail.policy.geocode import OfflineGeocoder


class Basis(StrEnum):
    SOURCE_DECLARED = "source-declared"
    EXIF_GPS = "exif-gps"


@dataclass(frozen=True)
class Jurisdiction:
    code: str  # ISO 3166-1 alpha-2
    basis: Basis


class JurisdictionResolver:
    def __init__(self, geocoder: OfflineGeocoder) -> None:
        self.geocoder = geocoder

    def of_image(self, declared: Sequence[str], data: bytes) -> tuple[Jurisdiction, ...]:
        """The source's declared jurisdictions, then the country of the image's GPS position if it has one."""
        found = [Jurisdiction(code, Basis.SOURCE_DECLARED) for code in declared]
        position = gps_position(data)
        country = self.geocoder.country(position) if position is not None else None
        if country is not None:
            found.append(Jurisdiction(country, Basis.EXIF_GPS))
        return tuple(found)
