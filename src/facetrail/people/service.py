"""People: faces grouped into identities for the operator, who can name, merge and split them.

Clustering is incremental: a run places only the faces that have no person yet, against the people
already formed (`people.clustering`), so the operator's names, merges and splits are never undone.
Faces are grouped within their source only (a person never spans two collections registered for
possibly different purposes) and within one template space (the model that made the templates).

Every change is written to the audit log in the transaction that makes it, as ids and counts: never
names of files, never templates, and never the name given to a person (the log outlives erasure).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray
from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from facetrail.accounts.roles import Action, Actor, require
from facetrail.audit.log import AuditLog
from facetrail.crypto.vault import Vault
from facetrail.errors import InvalidValueError, KeyUnavailableError, NotFoundError
from facetrail.media.geometry import Box
from facetrail.people.clustering import assign_faces, default_threshold
from facetrail.people.views import PersonDetail, PersonFace, PersonSummary, clean_ids, clean_name, summaries
from facetrail.store.blobs import BlobStore
from facetrail.store.db import Database
from facetrail.store.models import Face, Person, Source, StoredImage, utcnow
from facetrail.store.templates import open_templates

CHUNK = 2000
"""Unassigned faces placed (and committed, in one transaction) at a time."""


@dataclass
class ClusterReport:
    """What a clustering run did, summed over its chunks."""

    threshold: float
    faces: int = 0
    joined: int = 0
    people_created: int = 0
    sources: list[int] = field(default_factory=list)


@dataclass
class _Known:
    """The templates of one source's faces that have a person, with their person ids."""

    templates: NDArray[np.float32]
    people: NDArray[np.int64]

    def extend(self, templates: NDArray[np.float32], people: NDArray[np.int64]) -> None:
        self.templates = np.concatenate([self.templates, templates])
        self.people = np.concatenate([self.people, people])


class PeopleService:
    def __init__(self, db: Database, audit: AuditLog, vault: Vault, blobs: BlobStore, *, model_id: str, dim: int,
                 threshold: float | None = None, chunk: int = CHUNK) -> None:
        """`threshold` None: the model's calibrated distance, looked up on the first run (see clustering)."""
        self.db = db
        self.blobs = blobs
        self.audit = audit
        self.vault = vault
        self.model_id = model_id
        self.dim = dim
        self.chunk = chunk
        self._threshold = threshold

    @property
    def threshold(self) -> float:
        if self._threshold is None:
            self._threshold = default_threshold(self.model_id)
        return self._threshold

    # -- clustering ------------------------------------------------------------------------------
    def cluster(self, actor: Actor, *, source_id: int | None = None) -> ClusterReport:
        """Place every face without a person (of `source_id`, or of every source) into a person."""
        require(actor, Action.PEOPLE_WRITE)
        report = ClusterReport(threshold=self.threshold)
        with self.db.read() as session:
            if source_id is not None and session.get(Source, clean_ids("source_id", [source_id])[0]) is None:
                raise NotFoundError(f"source {source_id} is not registered")
            query = select(Face.source_id).where(Face.person_id.is_(None), Face.model_id == self.model_id)
            if source_id is not None:
                query = query.where(Face.source_id == source_id)
            sources = sorted(set(session.scalars(query.distinct())))
        for source in sources:
            self._cluster_source(actor, source, report)
            report.sources.append(source)
        return report

    def _cluster_source(self, actor: Actor, source_id: int, report: ClusterReport) -> None:
        known = self._known(source_id)
        after = 0
        while True:
            with self.db.read() as session:
                rows = session.execute(
                    select(Face.id, Face.template)
                    .where(Face.source_id == source_id, Face.model_id == self.model_id, Face.person_id.is_(None),
                           Face.id > after)
                    .order_by(Face.id).limit(self.chunk)
                ).all()
            if not rows:
                return
            # Paging by id (not "the next unassigned ones") ends the loop even when a face cannot
            # be placed now; it stays unassigned for the next run.
            after = rows[-1][0]
            ids = np.array([r[0] for r in rows], dtype=np.int64)
            templates = np.stack(open_templates(self.vault, [r[1] for r in rows], self.dim))
            assignment = assign_faces(known.templates, known.people, templates, threshold=self.threshold)
            placed = self._commit_chunk(actor, source_id, ids, assignment.person, assignment.group, report)
            keep = placed >= 0
            known.extend(templates[keep], placed[keep])

    def _commit_chunk(self, actor: Actor, source_id: int, ids: NDArray[np.int64], person: NDArray[np.int64],
                      group: NDArray[np.int64], report: ClusterReport) -> NDArray[np.int64]:
        """Write one chunk's placements; returns the person id each face got (-1: left for later)."""
        placed = np.full(len(ids), -1, dtype=np.int64)
        with self.db.write() as session, session.begin():
            # Another run (the server beside the command line) may have placed some of these faces,
            # or merged away a person, since we read: place only what is still ours to place.
            free = set(session.scalars(select(Face.id).where(Face.id.in_(ids.tolist()), Face.person_id.is_(None))))
            wanted = {int(p) for p in person if p >= 0}
            alive = set(session.scalars(select(Person.id).where(Person.id.in_(wanted)))) if wanted else set()
            new_people: dict[int, int] = {}
            for i, face_id in enumerate(ids.tolist()):
                if face_id not in free:
                    continue
                if person[i] >= 0:
                    placed[i] = person[i] if int(person[i]) in alive else -1
                    continue
                if int(group[i]) not in new_people:
                    created = Person(source_id=source_id, model_id=self.model_id)
                    session.add(created)
                    session.flush()
                    new_people[int(group[i])] = created.id
                placed[i] = new_people[int(group[i])]
            moves = [{"id": int(f), "person_id": int(p)} for f, p in zip(ids, placed, strict=True) if p >= 0]
            if not moves:
                return placed
            session.execute(update(Face), moves)
            joined = {int(p) for p in placed if p >= 0} - set(new_people.values())
            _touch(session, joined)
            counts = {"faces": len(moves), "joined": sum(1 for p in placed if int(p) in joined),
                      "people_created": len(new_people)}
            self.audit.record(session, actor=actor.name, action="people.cluster", details={
                "source_id": source_id, "model_id": self.model_id, "threshold": round(self.threshold, 4), **counts})
        report.faces += counts["faces"]
        report.joined += counts["joined"]
        report.people_created += counts["people_created"]
        return placed

    def _known(self, source_id: int) -> _Known:
        """Templates and person ids of the source's faces that already belong to a person."""
        templates: list[NDArray[np.float32]] = []
        people: list[int] = []
        with self.db.read() as session:
            result = session.execute(
                select(Face.template, Face.person_id)
                .where(Face.source_id == source_id, Face.model_id == self.model_id, Face.person_id.is_not(None))
                .order_by(Face.id)
            ).yield_per(5000)
            sealed: list[bytes] = []
            for template, person_id in result:
                if person_id is not None:  # always, by the query; this tells the type checker
                    sealed.append(template)
                    people.append(person_id)
                if len(sealed) >= 5000:
                    templates += open_templates(self.vault, sealed, self.dim)
                    sealed = []
            templates += open_templates(self.vault, sealed, self.dim)
        stacked = np.stack(templates) if templates else np.zeros((0, self.dim), dtype=np.float32)
        return _Known(stacked, np.array(people, dtype=np.int64))

    # -- reading ---------------------------------------------------------------------------------
    def list(self, actor: Actor, *, source_id: int | None = None) -> list[PersonSummary]:
        """People with their face counts and a representative face, the largest first."""
        require(actor, Action.PEOPLE_READ)
        with self.db.read() as session:
            return summaries(session, source_id=source_id)

    def show(self, actor: Actor, person_id: int) -> PersonDetail:
        """One person and their faces with the images they are in. Recorded: who looked at whom."""
        require(actor, Action.PEOPLE_READ)
        person_id = clean_ids("person_id", [person_id])[0]
        with self.db.read() as session:
            found = summaries(session, person_ids=[person_id])
            if not found:
                raise NotFoundError(f"person {person_id} does not exist")
            rows = session.execute(
                select(Face, StoredImage.original_name).join(StoredImage, Face.image_id == StoredImage.id)
                .where(Face.person_id == person_id).order_by(Face.id)
            ).all()
        faces = [PersonFace(face_id=f.id, image_id=f.image_id, original_name=name, size_px=f.size_px,
                            box=Box(f.box_left, f.box_top, f.box_right, f.box_bottom)) for f, name in rows]
        with self.db.write() as session, session.begin():
            self.audit.record(session, actor=actor.name, action="people.show",
                              details={"person_id": person_id, "faces": len(faces)})
        return PersonDetail(person=found[0], faces=faces)

    def face_crop(self, actor: Actor, face_id: int) -> bytes:
        """The crop of a face that belongs to a person, for the People pages; a restricted face's (Art. 18: kept,
        not used) is not shown."""
        require(actor, Action.PEOPLE_READ)
        with self.db.read() as session:
            face = session.get(Face, face_id)
        gone = NotFoundError(f"face {face_id} is in no person, is restricted, or has been erased")
        if face is None or face.person_id is None or face.restricted or face.crop_key is None:
            raise gone
        try:
            return self.blobs.get(face.crop_key)
        except (FileNotFoundError, KeyUnavailableError):
            raise gone from None  # erased between the lookup and the read

    # -- the operator's corrections --------------------------------------------------------------
    def name(self, actor: Actor, person_id: int, name: str | None) -> PersonSummary:
        """Name a person (None or blank clears the name). The log records that, not the name."""
        require(actor, Action.PEOPLE_WRITE)
        person_id = clean_ids("person_id", [person_id])[0]
        cleaned = clean_name(name)
        with self.db.write() as session, session.begin():
            person = _require_person(session, person_id)
            person.name = cleaned
            person.updated_at = utcnow()
            self.audit.record(session, actor=actor.name, action="people.name",
                              details={"person_id": person_id, "named": cleaned is not None})
            return summaries(session, person_ids=[person_id])[0]

    def merge(self, actor: Actor, into_id: int, other_ids: Sequence[int]) -> PersonSummary:
        """Move every face of `other_ids` into `into_id` and delete those people.

        The merged person keeps its name, or takes the first name among the others if it had none.
        """
        require(actor, Action.PEOPLE_WRITE)
        into_id = clean_ids("person_id", [into_id])[0]
        others = clean_ids("other_ids", other_ids)
        if into_id in others:
            raise InvalidValueError("other_ids", f"cannot merge person {into_id} into itself")
        with self.db.write() as session, session.begin():
            into = _require_person(session, into_id)
            merged = [_require_person(session, other) for other in others]
            for other in merged:
                if (other.source_id, other.model_id) != (into.source_id, into.model_id):
                    raise InvalidValueError("other_ids", f"person {other.id} is in another source or template "
                                            f"space than person {into.id}; people never span sources")
            if into.name is None:
                into.name = next((other.name for other in merged if other.name is not None), None)
            moved = session.scalar(select(func.count()).select_from(Face).where(Face.person_id.in_(others))) or 0
            session.execute(update(Face).where(Face.person_id.in_(others)).values(person_id=into_id))
            for other in merged:
                session.delete(other)
            into.updated_at = utcnow()
            self.audit.record(session, actor=actor.name, action="people.merge", details={
                "person_id": into_id, "merged_ids": others, "faces_moved": moved})
            return summaries(session, person_ids=[into_id])[0]

    def split(self, actor: Actor, person_id: int, face_ids: Sequence[int]) -> PersonSummary:
        """Move `face_ids` (faces of `person_id`, not all of them) to a new, unnamed person."""
        require(actor, Action.PEOPLE_WRITE)
        person_id = clean_ids("person_id", [person_id])[0]
        faces = clean_ids("face_ids", face_ids)
        with self.db.write() as session, session.begin():
            person = _require_person(session, person_id)
            own = set(session.scalars(select(Face.id).where(Face.person_id == person_id)))
            strangers = [f for f in faces if f not in own]
            if strangers:
                raise InvalidValueError("face_ids", f"faces {strangers} are not faces of person {person_id}")
            if len(faces) == len(own):
                raise InvalidValueError("face_ids", "splitting off every face leaves nothing to split; "
                                        "choose some of the faces")
            created = Person(source_id=person.source_id, model_id=person.model_id)
            session.add(created)
            session.flush()
            session.execute(update(Face).where(Face.id.in_(faces)).values(person_id=created.id))
            person.updated_at = utcnow()
            self.audit.record(session, actor=actor.name, action="people.split", details={
                "person_id": person_id, "new_person_id": created.id, "face_ids": faces, "faces_moved": len(faces)})
            return summaries(session, person_ids=[created.id])[0]


def _require_person(session: Session, person_id: int) -> Person:
    person = session.get(Person, person_id)
    if person is None:
        raise NotFoundError(f"person {person_id} does not exist")
    return person


def _touch(session: Session, person_ids: set[int]) -> None:
    if person_ids:
        session.execute(update(Person).where(Person.id.in_(person_ids)).values(updated_at=utcnow()))

