"""Role checks that run before anything is read from a request's body.

A staff route names the actions it serves in its actor parameter, `actor: Annotated[Actor, allowed(Action.X)]`.
FastAPI would read and validate the body before it runs any dependency (a malformed JSON or form body answers
422 at once), so `GuardedRoute` runs the route's role checks first: a caller with no valid key gets 401 and one
whose role may not use the route 403, whatever the body holds. The services check the role again for what the
body asks (an operator may create accounts, but not a DPO's).
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Annotated, Any

from fastapi import Depends, Header, Request, Response
from fastapi.routing import APIRoute
from starlette.concurrency import run_in_threadpool

from facetrail.accounts.roles import Action, Actor, require_any
from facetrail.api.deps import authenticate


class RoleGuard:
    """A dependency: the authenticated actor, if its role may do one of `actions`; else 401 or 403."""

    def __init__(self, *actions: Action) -> None:
        if not actions:
            raise ValueError("a role guard needs at least one action")
        self.actions = actions

    def check(self, request: Request) -> Actor:
        actor = authenticate(request)
        require_any(actor, *self.actions)
        return actor

    # The key headers are parameters only so that the OpenAPI schema documents them: `authenticate` reads them.
    def __call__(self, request: Request, authorization: Annotated[str | None, Header()] = None,  # noqa: ARG002
                 x_api_key: Annotated[str | None, Header()] = None) -> Actor:  # noqa: ARG002
        return self.check(request)


def allowed(*actions: Action) -> Any:
    """`actor: Annotated[Actor, allowed(Action.SOURCE_READ)]`: the route serves the roles that may do `actions`."""
    return Depends(RoleGuard(*actions))


class GuardedRoute(APIRoute):
    """A staff route: its role guards run before the body is read. A route without one is a mistake."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()
        guards = [d.call for d in self.dependant.dependencies if isinstance(d.call, RoleGuard)]
        if not guards:
            raise RuntimeError(f"the staff route {self.path} declares no role (api/guard.py)")

        async def guarded(request: Request) -> Response:
            for guard in guards:
                await run_in_threadpool(guard.check, request)
            return await handler(request)

        return guarded

