"""Identity checks for requesters: one-time e-mail codes, tokens, and finding a person's faces by selfie.

Codes and tokens are random and only their SHA-256 is stored. The selfie finds faces at the calibrated
'strong' band (a stranger matches about once in 10,000 comparisons) over every source, restricted faces
included: what is disclosed or erased must be the requester's own faces, and all of them.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets

import numpy as np
from numpy.typing import NDArray
from sqlalchemy import select

from facetrail.errors import InvalidValueError, NoFaceError
from facetrail.index.gallery import Gallery
from facetrail.ingest.analysis import Analyzer
from facetrail.media.image import decode_image
from facetrail.store.db import Database
from facetrail.store.models import Face
from facetrail.store.templates import open_templates
from facetrail.vision.pipeline import analyze_faces

EMAIL = re.compile(r"^[^@\s<>\"]{1,64}@[A-Za-z0-9.-]{1,253}\.[A-Za-z]{2,63}$")
SEARCH_DEPTH = 5000


def digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def same_secret(stored_hash: str | None, offered: str | None) -> bool:
    """Constant-time check of an offered secret against a stored hash."""
    return hmac.compare_digest(stored_hash or "0" * 64, digest(offered or ""))


def new_code() -> str:
    return f"{secrets.randbelow(1_000_000):06d}"


def new_token() -> str:
    return secrets.token_urlsafe(24)


def normalise_email(email: str) -> str:
    value = (email or "").strip()
    if not EMAIL.match(value):
        raise InvalidValueError("email", "is not an e-mail address")
    local, domain = value.rsplit("@", 1)
    return f"{local}@{domain.lower()}"


def selfie_template(analyzer: Analyzer, photo: bytes, max_pixels: int) -> NDArray[np.float32]:
    """The template of the largest face in the selfie (processed in memory)."""
    image = decode_image(photo, max_pixels=max_pixels)
    faces = analyze_faces(analyzer.backend, image.pixels, with_crops=False)
    if not faces:
        raise NoFaceError("no face found in the selfie")
    return faces[0].template


def find_own_faces(db: Database, gallery: Gallery, template: NDArray[np.float32], max_distance: float) -> list[int]:
    """Ids of every stored face within `max_distance` of `template`: searchable ones through the index,
    restricted ones (kept out of the index) by direct comparison."""
    found = {h.face_id for h in gallery.search(template, SEARCH_DEPTH, None) if h.distance <= max_distance}
    with db.read() as session:
        rows = session.execute(select(Face.id, Face.template).where(
            Face.restricted.is_(True), Face.model_id == gallery.model_id)).all()
    if rows:
        stored = open_templates(gallery.vault, [blob for _, blob in rows], gallery.dim)
        found.update(face_id for (face_id, _), vector in zip(rows, stored, strict=True)
                     if float(np.linalg.norm(vector - template)) <= max_distance)
    return sorted(found)
