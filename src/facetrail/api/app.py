"""The FastAPI application: every route but /health needs an API key and the right role."""

from __future__ import annotations

from fastapi import FastAPI

from facetrail import __version__
from facetrail.api import errors
from facetrail.api.routes import accounts, audit, people, portal, requests, search, sources
from facetrail.api.schemas import Health
from facetrail.api.uploads import keep_uploads_in_memory
from facetrail.runtime import Facetrail


def create_app(ft: Facetrail) -> FastAPI:
    keep_uploads_in_memory(ft.settings.max_file_bytes + 1024 * 1024)
    app = FastAPI(
        title="facetrail",
        version=__version__,
        description="Face search that is lawful by design. Authenticate with `Authorization: Bearer <API key>`.",
    )
    app.state.facetrail = ft
    errors.install(app)

    @app.get("/health", response_model=Health, tags=["health"])
    def health() -> Health:
        return Health(status="ok", version=__version__)

    for module in (sources, search, accounts, audit, people, requests, portal):
        app.include_router(module.router)
    return app
