"""What the people service returns, the queries that build it, and the checks on what it is given."""

from __future__ import annotations

import unicodedata
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from facetrail.errors import InvalidValueError
from facetrail.media.geometry import Box
from facetrail.store.models import Face, Person
from facetrail.timestamps import iso_z

MAX_NAME = 200
MAX_IDS = 10_000


@dataclass(frozen=True)
class PersonSummary:
    """A person as the People page lists them. `face_id` is the representative face (the largest)."""

    id: int
    source_id: int
    name: str | None
    faces: int
    face_id: int | None
    created_at: datetime
    updated_at: datetime

    def as_dict(self) -> dict[str, Any]:
        return {"id": self.id, "source_id": self.source_id, "name": self.name, "faces": self.faces,
                "face_id": self.face_id, "created_at": iso_z(self.created_at),
                "updated_at": iso_z(self.updated_at)}


@dataclass(frozen=True)
class PersonFace:
    """One face of a person and the image it is in."""

    face_id: int
    image_id: int
    original_name: str
    size_px: int
    box: Box

    def as_dict(self) -> dict[str, Any]:
        return {"face_id": self.face_id, "image_id": self.image_id, "original_name": self.original_name,
                "size_px": self.size_px, "box": self.box.as_dict()}


@dataclass(frozen=True)
class PersonDetail:
    person: PersonSummary
    faces: list[PersonFace]

    def as_dict(self) -> dict[str, Any]:
        return {**self.person.as_dict(), "face_list": [f.as_dict() for f in self.faces]}


def summaries(session: Session, *, source_id: int | None = None,
              person_ids: Collection[int] | None = None) -> list[PersonSummary]:
    """People (all, of one source, or these ids) with face counts, most faces first, then by id."""
    counts = (select(Face.person_id, func.count(Face.id).label("faces"))
              .where(Face.person_id.is_not(None)).group_by(Face.person_id).subquery())
    # The largest face stands for the person: the one most likely to be recognisable in a thumbnail.
    ranked = (select(Face.person_id, Face.id.label("face_id"),
                     func.row_number().over(partition_by=Face.person_id,
                                            order_by=(Face.size_px.desc(), Face.id)).label("rank"))
              .where(Face.person_id.is_not(None)).subquery())
    faces = func.coalesce(counts.c.faces, 0)
    query = (select(Person, faces, ranked.c.face_id)
             .outerjoin(counts, counts.c.person_id == Person.id)
             .outerjoin(ranked, (ranked.c.person_id == Person.id) & (ranked.c.rank == 1))
             .order_by(faces.desc(), Person.id))
    if source_id is not None:
        query = query.where(Person.source_id == source_id)
    if person_ids is not None:
        query = query.where(Person.id.in_(list(person_ids)))
    return [PersonSummary(id=p.id, source_id=p.source_id, name=p.name, faces=n, face_id=face_id,
                          created_at=p.created_at, updated_at=p.updated_at)
            for p, n, face_id in session.execute(query).all()]


def clean_ids(field: str, values: Sequence[int]) -> list[int]:
    """Whole, positive, distinct ids, in the order given."""
    ids = list(values)
    if not ids:
        raise InvalidValueError(field, "at least one id is required")
    if len(ids) > MAX_IDS:
        raise InvalidValueError(field, f"at most {MAX_IDS} ids at a time")
    for value in ids:
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise InvalidValueError(field, f"{value!r} is not an id")
    if len(set(ids)) != len(ids):
        raise InvalidValueError(field, "an id is given twice")
    return ids


def clean_name(name: str | None) -> str | None:
    """A display name: trimmed, 1-200 characters, no control characters; blank or None clears it."""
    if name is None:
        return None
    if not isinstance(name, str):
        raise InvalidValueError("name", "must be text")
    cleaned = name.strip()
    if not cleaned:
        return None
    if len(cleaned) > MAX_NAME:
        raise InvalidValueError("name", f"at most {MAX_NAME} characters")
    if any(unicodedata.category(ch) == "Cc" for ch in cleaned):
        raise InvalidValueError("name", "must not hold control characters")
    return cleaned
