"""/v1/search: search by photo for a purpose and case; /v1/searches/..: the crops it showed."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, File, Form, UploadFile
from fastapi.responses import Response

from facetrail.accounts.roles import Action, Actor
from facetrail.api.deps import FacetrailDep
from facetrail.api.guard import GuardedRoute, allowed
from facetrail.api.schemas import SearchPublic
from facetrail.api.uploads import read_upload
from facetrail.errors import MediaError

router = APIRouter(tags=["search"], route_class=GuardedRoute)
Searcher = Annotated[Actor, allowed(Action.SEARCH)]


@router.post("/v1/search", response_model=SearchPublic)
def search(
    ft: FacetrailDep,
    actor: Searcher,
    photo: Annotated[UploadFile, File(description="the query photo; processed in memory, never stored")],
    purpose: Annotated[str, Form(description="the declared purpose; only sources registered for it are searched")],
    case: Annotated[str, Form(description="case reference")],
    face: Annotated[int | None, Form(description="which query face (0 = largest); default the largest")] = None,
    top: Annotated[int, Form(description="how many results, 1-100")] = 10,
    min_band: Annotated[str | None, Form(description="lowest band shown: auto (default: keeps strangers out of "
                                         "99% of searches at the number of faces searched), strong, probable, "
                                         "possible or none")] = None,
) -> SearchPublic:
    data, error = read_upload(photo, ft.settings.max_file_bytes)
    if error:
        raise MediaError(error)
    outcome = ft.search.search(actor, data, purpose=purpose, case_ref=case, face=face, top_k=top,
                               min_band=min_band)
    return SearchPublic.model_validate(outcome.as_dict())


@router.get("/v1/searches/{search_id}/faces/{face_id}/crop", response_class=Response,
            responses={200: {"content": {"image/jpeg": {}}}})
def result_crop(search_id: str, face_id: int, ft: FacetrailDep, actor: Searcher) -> Response:
    """The face crop of a result, only for the account whose search returned it."""
    return Response(ft.search.result_crop(actor, search_id, face_id), media_type="image/jpeg",
                    headers={"Cache-Control": "no-store"})


@router.get("/v1/searches/{search_id}/faces/{face_id}/frame", response_class=Response,
            responses={200: {"content": {"image/jpeg": {}}}})
def result_frame(search_id: str, face_id: int, ft: FacetrailDep, actor: Searcher) -> Response:
    """The stored image of a result (for a video, its key frame) with the face outlined, only for the account
    whose search returned it (audited)."""
    return Response(ft.search.result_image(actor, search_id, face_id), media_type="image/jpeg",
                    headers={"Cache-Control": "no-store"})
