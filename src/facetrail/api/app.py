"""The FastAPI application: every route but /health needs an API key and the right role.

Around the routes, outermost first: the security headers (every response, refusals included), the
per-address rate limit (before anything else is done with a request, 401s included), and the request
size limit; then the routes, whose search router spends the key's search budget.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import Depends, FastAPI
from fastapi_offline import FastAPIOffline
from starlette.concurrency import run_in_threadpool

from facetrail import __version__
from facetrail.api import errors
from facetrail.api.denials import DenialLog
from facetrail.api.deps import search_budget
from facetrail.api.limits import MIB, BodySizeLimit
from facetrail.api.ratelimit import PerAddressLimit, RateLimiter
from facetrail.api.routes import (
    accounts,
    audit,
    breaches,
    compliance,
    console,
    orders,
    people,
    portal,
    requests,
    retention,
    search,
    sources,
)
from facetrail.api.schedule import checkpoint_schedule
from facetrail.api.schemas import ERROR_RESPONSES, Health
from facetrail.api.uploads import keep_uploads_in_memory
from facetrail.compliance.schedule import RetentionSchedule
from facetrail.runtime import Facetrail
from facetrail.web.security import SecurityHeaders


def create_app(ft: Facetrail) -> FastAPI:
    settings = ft.settings
    max_body = settings.max_file_bytes + MIB
    keep_uploads_in_memory(max_body)
    denials = DenialLog(ft.db, ft.audit)

    schedule = RetentionSchedule(ft.retention, settings.retention_interval_s)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        async with checkpoint_schedule(ft):
            schedule.start()
            yield
            await schedule.stop()
        await run_in_threadpool(denials.flush, everything=True)  # the repeat counts not written yet

    # The docs (/docs) load Swagger UI from files shipped in the fastapi-offline package, under /docs/assets, never
    # from a CDN: facetrail often runs where there is no network. No /redoc: ReDoc loads its logo from its CDN.
    app = FastAPIOffline(
        static_url="/docs/assets",
        redoc_url=None,
        swagger_ui_parameters={"validatorUrl": None},  # Swagger UI's default validator badge is a remote image
        title="facetrail",
        version=__version__,
        description="Face search that is lawful by design. Authenticate with `Authorization: Bearer <API key>`.",
        lifespan=lifespan,
        responses=ERROR_RESPONSES,  # every error body is documented, so clients (and the fuzz test) can rely on it
    )
    app.state.facetrail = ft
    app.state.denials = denials
    app.state.search_limiter = RateLimiter(settings.search_per_minute)
    app.state.address_limiter = RateLimiter(settings.requests_per_minute_per_ip)
    errors.install(app)

    @app.get("/health", response_model=Health, tags=["health"])
    def health() -> Health:
        return Health(status="ok", version=__version__)

    for module in (sources, search, accounts, audit, people, requests, orders, retention, compliance, breaches,
                   portal, console):
        app.include_router(module.router, dependencies=[Depends(search_budget)] if module is search else None)

    # add_middleware wraps: the last added is the outermost.
    app.add_middleware(BodySizeLimit, max_bytes=max_body)
    app.add_middleware(PerAddressLimit, limiter=app.state.address_limiter,
                       trusted_proxies=settings.trusted_proxies)
    app.add_middleware(SecurityHeaders)
    return app
