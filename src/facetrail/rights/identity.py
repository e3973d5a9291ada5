"""Identity checks for requesters: one-time e-mail codes, tokens, reading a capture's frames, and finding a
person's faces with the face of a capture that passed the live check.

Codes and tokens are random and only their SHA-256 is stored. The capture's face finds faces at the
calibrated 'strong' band (a stranger matches about once in 10,000 comparisons) over every source, restricted
faces included: what is disclosed or erased must be the requester's own faces, and all of them.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets

import numpy as np
from numpy.typing import NDArray
from sqlalchemy import select

from facetrail.errors import InvalidValueError
from facetrail.index.gallery import Gallery
from facetrail.ingest.analysis import Analyzer
from facetrail.media.image import decode_image
from facetrail.rights.liveness import FrameReading
from facetrail.rights.proof import CaptureFrame
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


def read_frame(analyzer: Analyzer, frame: CaptureFrame, *, max_pixels: int, crop_size: int) -> FrameReading:
    """What one capture frame shows: its largest face's pose, template and crop (processed in memory).
    MediaError when the bytes are no image."""
    image = decode_image(frame.data, max_pixels=max_pixels)
    faces = analyze_faces(analyzer.backend, image.pixels, crop_size=crop_size)
    digest = hashlib.sha256(np.ascontiguousarray(image.pixels).tobytes()).hexdigest()
    if not faces:
        return FrameReading(frame.step, 0, 0.0, None, b"", digest, frame.at_ms)
    face = faces[0]
    return FrameReading(frame.step, len(faces), face.quality.yaw, face.template, face.crop_jpeg, digest, frame.at_ms)


def find_own_faces(db: Database, gallery: Gallery, template: NDArray[np.float32],
                   max_distance: float) -> dict[int, float]:
    """Every stored face within `max_distance` of `template`, with its distance: searchable ones through the
    index, restricted ones (kept out of the index) by direct comparison."""
    found = {h.face_id: h.distance for h in gallery.search(template, SEARCH_DEPTH, None)
             if h.distance <= max_distance}
    with db.read() as session:
        rows = session.execute(select(Face.id, Face.template).where(
            Face.restricted.is_(True), Face.model_id == gallery.model_id)).all()
    if rows:
        stored = open_templates(gallery.vault, [blob for _, blob in rows], gallery.dim)
        for (face_id, _), vector in zip(rows, stored, strict=True):
            distance = float(np.linalg.norm(vector - template))
            if distance <= max_distance:
                found[face_id] = distance
    return dict(sorted(found.items()))
