"""/v1/people: faces grouped into identities; cluster, name, merge and split them (operator only)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Body, Query

from facetrail.accounts.roles import Action, Actor
from facetrail.api.deps import FacetrailDep
from facetrail.api.guard import GuardedRoute, allowed
from facetrail.api.schemas import (
    PeopleCluster,
    PeopleClusterReport,
    PersonDetailPublic,
    PersonMerge,
    PersonName,
    PersonPublic,
    PersonSplit,
)

router = APIRouter(prefix="/v1/people", tags=["people"], route_class=GuardedRoute)
PeopleReader = Annotated[Actor, allowed(Action.PEOPLE_READ)]
PeopleWriter = Annotated[Actor, allowed(Action.PEOPLE_WRITE)]


@router.get("", response_model=list[PersonPublic])
def list_people(ft: FacetrailDep, actor: PeopleReader,
                source_id: Annotated[int | None, Query(description="only this source")] = None) -> list[PersonPublic]:
    """People, most faces first."""
    return [PersonPublic.model_validate(p.as_dict()) for p in ft.people.list(actor, source_id=source_id)]


@router.post("/cluster", response_model=PeopleClusterReport)
def cluster(ft: FacetrailDep, actor: PeopleWriter,
            body: Annotated[PeopleCluster | None, Body()] = None) -> PeopleClusterReport:
    """Place every face that has no person yet into a person (existing or new)."""
    report = ft.people.cluster(actor, source_id=body.source_id if body else None)
    return PeopleClusterReport(faces=report.faces, joined=report.joined, people_created=report.people_created,
                               sources=report.sources, threshold=round(report.threshold, 4))


@router.get("/{person_id}", response_model=PersonDetailPublic)
def show_person(person_id: int, ft: FacetrailDep, actor: PeopleReader) -> PersonDetailPublic:
    """One person's faces and the images they are in."""
    return PersonDetailPublic.model_validate(ft.people.show(actor, person_id).as_dict())


@router.post("/{person_id}/name", response_model=PersonPublic)
def name_person(person_id: int, body: PersonName, ft: FacetrailDep, actor: PeopleWriter) -> PersonPublic:
    return PersonPublic.model_validate(ft.people.name(actor, person_id, body.name).as_dict())


@router.post("/{person_id}/merge", response_model=PersonPublic)
def merge_people(person_id: int, body: PersonMerge, ft: FacetrailDep, actor: PeopleWriter) -> PersonPublic:
    """Merge the other people into this one; they are deleted."""
    return PersonPublic.model_validate(ft.people.merge(actor, person_id, body.other_ids).as_dict())


@router.post("/{person_id}/split", response_model=PersonPublic, status_code=201)
def split_person(person_id: int, body: PersonSplit, ft: FacetrailDep, actor: PeopleWriter) -> PersonPublic:
    """Move some of this person's faces to a new person, which is returned."""
    return PersonPublic.model_validate(ft.people.split(actor, person_id, body.face_ids).as_dict())
