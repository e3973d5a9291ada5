"""Restriction of processing (GDPR Art. 18): the faces are kept, but no search reaches them until it is lifted.

Setting `Face.restricted` and bumping the index generation happen in one transaction, so from its commit on
every search leaves the faces out (search follows the generation, and drops restricted hits it resolves);
the index then drops their vectors, since the gallery indexes unrestricted faces only. Lifting reverses it.
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from typing import Any

from sqlalchemy import select, update

from facetrail.audit.log import AuditLog
from facetrail.index.gallery import Gallery
from facetrail.rights.erasure import clean_face_ids
from facetrail.rights.tracks import whole_tracks
from facetrail.store.db import Database, bump_generation
from facetrail.store.models import Face

CHUNK = 500


class RestrictionService:
    def __init__(self, db: Database, gallery: Gallery, audit: AuditLog) -> None:
        self.db = db
        self.gallery = gallery
        self.audit = audit

    def restrict(self, actor_name: str, face_ids: Sequence[int], request_id: str | None) -> dict[str, Any]:
        """Keep these faces out of every search; returns the ids changed and those not in the store."""
        return self._set(actor_name, face_ids, request_id, restricted=True)

    def lift(self, actor_name: str, face_ids: Sequence[int], request_id: str | None) -> dict[str, Any]:
        """End the restriction of these faces: searches reach them again."""
        return self._set(actor_name, face_ids, request_id, restricted=False)

    def _set(self, actor_name: str, face_ids: Sequence[int], request_id: str | None, *,
             restricted: bool) -> dict[str, Any]:
        wanted = clean_face_ids(face_ids)
        with self.db.write() as session, session.begin():
            wanted = whole_tracks(session, wanted)  # a face of a video track stands for the whole track
            found: list[int] = []
            changed: list[int] = []
            for start in range(0, len(wanted), CHUNK):
                chunk = wanted[start:start + CHUNK]
                rows = [(face_id, current) for face_id, current in session.execute(
                    select(Face.id, Face.restricted).where(Face.id.in_(chunk)))]
                found += [face_id for face_id, _ in rows]
                changed += [face_id for face_id, current in rows if current != restricted]
            keys: list[str] = []
            for start in range(0, len(changed), CHUNK):
                chunk = changed[start:start + CHUNK]
                keys += [k for k in session.scalars(select(Face.key_id).where(Face.id.in_(chunk))) if k]
                session.execute(update(Face).where(Face.id.in_(chunk)).values(restricted=restricted))
            if changed:
                bump_generation(session)
                # In the ledger too (by the faces' data keys, which ids cannot be confused with), so that
                # restoring an older backup neither lifts a restriction nor brings back a lifted one.
                self.gallery.vault.keyring.record({
                    "uid": secrets.token_hex(16), "kind": "restriction", "restricted": restricted,
                    "request_id": request_id, "key_ids": keys})
            action = "restriction.applied" if restricted else "restriction.lifted"
            result = {"request_id": request_id, "face_ids": sorted(changed),
                      "unchanged": len(found) - len(changed), "not_found": len(wanted) - len(found)}
            self.audit.record(session, actor=actor_name, action=action, details=result)
        if changed:
            # Not needed for correctness (searches follow the generation first), but it takes restricted
            # vectors out of the index file now rather than at the next search.
            self.gallery.index()
        return result
