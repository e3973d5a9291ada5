"""Request dependencies: the opened Facetrail, the authenticated actor and the per-key search budget (the role
checks are in api/guard.py)."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from facetrail.accounts.roles import Actor
from facetrail.accounts.service import KeyRefusedError
from facetrail.api.ratelimit import RateLimiter, TooManyRequestsError
from facetrail.runtime import Facetrail


def get_facetrail(request: Request) -> Facetrail:
    ft: Facetrail = request.app.state.facetrail
    return ft


FacetrailDep = Annotated[Facetrail, Depends(get_facetrail)]


def authenticate(request: Request) -> Actor:
    """The account behind the request's API key (Authorization: Bearer <key>, or X-API-Key), checked once per
    request: the actor is kept on request.state, where a refusal further on (403) also finds its name."""
    known: Actor | None = getattr(request.state, "actor", None)
    if known is not None:
        return known
    key = request.headers.get("x-api-key")
    authorization = request.headers.get("authorization")
    if authorization and authorization.lower().startswith("bearer "):
        key = authorization[7:].strip()
    if not key:
        raise KeyRefusedError("an API key is required (Authorization: Bearer <key>)", reason="missing")
    actor = get_facetrail(request).accounts.authenticate(key)
    request.state.actor = actor
    return actor


def search_budget(request: Request) -> None:
    """Spend one of the key's searches (settings.search_per_minute), or refuse with 429.

    Added to every route of the search router; only a search (POST) is counted: the crops of its results
    are bounded by the searches themselves (a crop is shown only to the account whose search returned it)."""
    if request.method != "POST":
        return
    limiter: RateLimiter = request.app.state.search_limiter
    wait = limiter.hit(authenticate(request).name)
    if wait:
        raise TooManyRequestsError("too many searches with this API key; try again later", retry_after=wait)
