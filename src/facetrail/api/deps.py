"""Request dependencies: the opened Facetrail and the authenticated actor."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Header, Request

from facetrail.accounts.roles import Actor
from facetrail.errors import AuthenticationError
from facetrail.runtime import Facetrail


def get_facetrail(request: Request) -> Facetrail:
    ft: Facetrail = request.app.state.facetrail
    return ft


FacetrailDep = Annotated[Facetrail, Depends(get_facetrail)]


def get_actor(ft: FacetrailDep, authorization: Annotated[str | None, Header()] = None,
              x_api_key: Annotated[str | None, Header()] = None) -> Actor:
    """The account behind the request's API key (Authorization: Bearer <key>, or X-API-Key)."""
    key = x_api_key
    if authorization and authorization.lower().startswith("bearer "):
        key = authorization[7:].strip()
    if not key:
        raise AuthenticationError("an API key is required (Authorization: Bearer <key>)")
    return ft.accounts.authenticate(key)


ActorDep = Annotated[Actor, Depends(get_actor)]
