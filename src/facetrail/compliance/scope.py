"""What data an order reaches, and which of it must wait for open access requests.

Scope is computed from the store each time, never stored: "items remaining" is what is still there.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from facetrail.rights.workflow import CLOSED, RequestKind
from facetrail.store.models import Face, ImageJurisdiction, RightsRequest, StoredImage

CHUNK = 500
# Requests whose answer discloses the data: erasing it first would make the answer partial.
ACCESS_KINDS = frozenset({RequestKind.ACCESS, RequestKind.CONFIRM, RequestKind.PORTABILITY})


@dataclass(frozen=True)
class AccessHolds:
    """Open access requests: the faces they were matched to, and those not matched yet (identity pending:
    whose faces they concern cannot be known before it is verified)."""

    face_ids: frozenset[int]
    request_ids: tuple[str, ...]
    unmatched_request_ids: tuple[str, ...]


def images_in_scope(session: Session, jurisdictions: Iterable[str], source_ids: Iterable[int]) -> list[int]:
    """Ids of the stored images of these jurisdictions (any basis) or of these sources, ascending."""
    codes, sources = sorted(set(jurisdictions)), sorted(set(source_ids))
    found: set[int] = set()
    if codes:
        found.update(session.scalars(select(ImageJurisdiction.image_id).where(ImageJurisdiction.code.in_(codes))))
    if sources:
        found.update(session.scalars(select(StoredImage.id).where(StoredImage.source_id.in_(sources))))
    return sorted(found)


def count_faces(session: Session, image_ids: Sequence[int]) -> int:
    return sum(int(session.scalar(select(func.count()).select_from(Face).where(Face.image_id.in_(chunk))) or 0)
               for chunk in chunks(image_ids, CHUNK))


def access_holds(session: Session) -> AccessHolds:
    faces: set[int] = set()
    matched, unmatched = [], []
    for request_id, matched_faces in session.execute(
            select(RightsRequest.id, RightsRequest.matched_face_ids).where(
                RightsRequest.kind.in_([k.value for k in ACCESS_KINDS]),
                RightsRequest.status.not_in([s.value for s in CLOSED])).order_by(RightsRequest.received_at)):
        if matched_faces:
            faces.update(int(i) for i in matched_faces)
            matched.append(request_id)
        else:
            unmatched.append(request_id)
    return AccessHolds(frozenset(faces), tuple(matched), tuple(unmatched))


def images_holding(session: Session, face_ids: Iterable[int]) -> set[int]:
    """Ids of the images that hold any of these faces."""
    found: set[int] = set()
    for chunk in chunks(sorted(face_ids), CHUNK):
        found.update(session.scalars(select(Face.image_id).where(Face.id.in_(chunk))))
    return found


def chunks(ids: Sequence[int], size: int) -> Iterator[list[int]]:
    for start in range(0, len(ids), size):
        yield list(ids[start:start + size])
