"""What a breach touched, and who is in it: the images, faces and requesters in a breach's scope.

A scope names sources (none = every source), a time range of ingestion (images ingested from `start` up to
`end`) and whether the rights requests received in that range were exposed. facetrail holds faces, not
names: it can list the faces and images concerned, the names an operator gave to people (clustering), and the
e-mail addresses of requesters whose own faces, or whose requests, are in scope. Everyone else can only be
counted, and told through a public communication (Art. 34(3)(c)) or by the controller who knows them.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from facetrail.errors import InvalidValueError
from facetrail.store.models import Face, Person, RightsRequest, StoredImage
from facetrail.timestamps import iso_z_or_none

CANNOT_NAME = ("facetrail holds faces, not names: the people whose faces are listed cannot be named or contacted "
               "from facetrail's data, except requesters (their e-mail address) and people an operator named; "
               "reach the others through the source's controller or a public communication (Art. 34(3)(c)).")


@dataclass(frozen=True)
class BreachScope:
    source_ids: tuple[int, ...] = ()
    start: datetime | None = None
    end: datetime | None = None
    requests: bool = False

    @classmethod
    def of(cls, source_ids: Iterable[int] = (), start: datetime | None = None, end: datetime | None = None,
           requests: bool = False) -> BreachScope:
        ids = []
        for value in source_ids:
            if isinstance(value, bool) or not isinstance(value, int):
                raise InvalidValueError("scope", f"{value!r} is not a source id")
            ids.append(value)
        if start is not None and end is not None and start > end:
            raise InvalidValueError("scope", "the range starts after it ends")
        return cls(tuple(sorted(set(ids))), start, end, requests)

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> BreachScope:
        def moment(value: str | None) -> datetime | None:
            return None if value is None else datetime.fromisoformat(value).astimezone(UTC)

        return cls(tuple(raw.get("source_ids", ())), moment(raw.get("from")), moment(raw.get("to")),
                   bool(raw.get("requests", False)))

    def as_json(self) -> dict[str, Any]:
        return {"source_ids": list(self.source_ids), "from": iso_z_or_none(self.start), "to": iso_z_or_none(self.end),
                "requests": self.requests}


@dataclass(frozen=True)
class Affected:
    image_ids: tuple[int, ...]
    face_ids: tuple[int, ...]
    by_source: dict[int, dict[str, int]]
    people: int  # distinct clusters among the faces
    unclustered_faces: int
    named_people: tuple[tuple[int, str], ...]
    requesters: tuple[tuple[str, str, str], ...]  # (request id, e-mail, why)

    def as_dict(self) -> dict[str, Any]:
        return {
            "images": len(self.image_ids), "faces": len(self.face_ids), "image_ids": list(self.image_ids),
            "face_ids": list(self.face_ids), "by_source": {str(k): v for k, v in self.by_source.items()},
            "estimated_people": {"clusters": self.people, "faces_not_clustered": self.unclustered_faces,
                                 "note": "at least the clusters; each face not clustered may be one more person"},
            "named_people": [{"person_id": pid, "name": name} for pid, name in self.named_people],
            "requesters": [{"request_id": rid, "email": email, "why": why} for rid, email, why in self.requesters],
            "can_name": "requesters by e-mail address, people named by an operator",
            "cannot_name": CANNOT_NAME,
        }


def in_scope(session: Session, scope: BreachScope) -> Affected:
    query = select(StoredImage.id, StoredImage.source_id)
    if scope.source_ids:
        query = query.where(StoredImage.source_id.in_(scope.source_ids))
    if scope.start is not None:
        query = query.where(StoredImage.ingested_at >= scope.start)
    if scope.end is not None:
        query = query.where(StoredImage.ingested_at <= scope.end)
    images: dict[int, int] = {}
    for image_id, source_id in session.execute(query.order_by(StoredImage.id)):
        images[image_id] = source_id
    faces = [(face_id, source_id, person) for face_id, source_id, person in session.execute(
        select(Face.id, Face.source_id, Face.person_id).where(Face.image_id.in_(list(images))).order_by(Face.id))]
    by_source: dict[int, dict[str, int]] = {}
    for source_id in images.values():
        by_source.setdefault(source_id, {"images": 0, "faces": 0})["images"] += 1
    for _face, source_id, _person in faces:
        by_source[source_id]["faces"] += 1
    face_ids = {face_id for face_id, _s, _p in faces}
    people = {person for _f, _s, person in faces if person is not None}
    named = session.execute(select(Person.id, Person.name).where(Person.id.in_(list(people)),
                                                                 Person.name.is_not(None)).order_by(Person.id))
    return Affected(image_ids=tuple(images), face_ids=tuple(sorted(face_ids)), by_source=by_source,
                    people=len(people), unclustered_faces=sum(1 for _f, _s, p in faces if p is None),
                    named_people=tuple((pid, str(name)) for pid, name in named),
                    requesters=tuple(_requesters(session, scope, face_ids)))


def _requesters(session: Session, scope: BreachScope, face_ids: set[int]) -> list[tuple[str, str, str]]:
    found: dict[str, tuple[str, str, str]] = {}
    for request in session.scalars(select(RightsRequest).order_by(RightsRequest.received_at)):
        if face_ids.intersection(request.matched_face_ids or []):
            found[request.id] = (request.id, request.email, "their faces are in scope")
        elif scope.requests and (scope.start is None or request.received_at >= scope.start) and \
                (scope.end is None or request.received_at <= scope.end):
            found[request.id] = (request.id, request.email, "their request is in scope")
    return list(found.values())
