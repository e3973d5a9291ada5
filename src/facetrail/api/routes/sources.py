"""/v1/sources: register, edit and read sources (with their versions); upload images into one (multipart);
declare the URLs of a URL-list source and ingest them."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, File, UploadFile

from facetrail.accounts.roles import Action, Actor
from facetrail.api.deps import FacetrailDep
from facetrail.api.guard import GuardedRoute, allowed
from facetrail.api.schemas import (
    IngestReportPublic,
    SourceCreate,
    SourcePublic,
    SourceUpdate,
    SourceUrlPublic,
    SourceUrlsDeclare,
    SourceVersionPublic,
    UrlDeclarationPublic,
)
from facetrail.api.uploads import upload_items
from facetrail.errors import ShuttingDownError
from facetrail.runtime import Facetrail
from facetrail.sources.inputs import InputItem

router = APIRouter(prefix="/v1/sources", tags=["sources"], route_class=GuardedRoute)
SourceReader = Annotated[Actor, allowed(Action.SOURCE_READ)]
SourceWriter = Annotated[Actor, allowed(Action.SOURCE_WRITE)]
Ingester = Annotated[Actor, allowed(Action.INGEST)]


@router.get("", response_model=list[SourcePublic])
def list_sources(ft: FacetrailDep, actor: SourceReader) -> list[SourcePublic]:
    return [SourcePublic.model_validate(s) for s in ft.sources.list(actor)]


@router.post("", response_model=SourcePublic, status_code=201)
def add_source(body: SourceCreate, ft: FacetrailDep, actor: SourceWriter) -> SourcePublic:
    source = ft.sources.add(actor, **body.model_dump())
    return SourcePublic.model_validate(source)


@router.get("/{source_id}", response_model=SourcePublic)
def get_source(source_id: int, ft: FacetrailDep, actor: SourceReader) -> SourcePublic:
    return SourcePublic.model_validate(ft.sources.get(actor, source_id))


@router.patch("/{source_id}", response_model=SourcePublic)
def update_source(source_id: int, body: SourceUpdate, ft: FacetrailDep, actor: SourceWriter) -> SourcePublic:
    """Edit a source: a change of purposes, legal basis or Art. 9 condition makes a new version (with a reason)."""
    return SourcePublic.model_validate(ft.sources.update(actor, source_id, **body.model_dump(exclude_none=True)))


@router.get("/{source_id}/versions", response_model=list[SourceVersionPublic])
def source_versions(source_id: int, ft: FacetrailDep, actor: SourceReader) -> list[SourceVersionPublic]:
    """The history of the source's legal terms, oldest first."""
    return [SourceVersionPublic.model_validate(v) for v in ft.sources.versions(actor, source_id)]


@router.post("/{source_id}/images", response_model=IngestReportPublic)
def upload_images(source_id: int, files: Annotated[list[UploadFile], File(description="images, videos or zip "
                                                                          "archives")],
                  ft: FacetrailDep, actor: Ingester) -> IngestReportPublic:
    """Ingest uploaded images and videos (or zip archives of them) into a source. Per-file errors are reported."""
    items = upload_items(files, ft.input_limits)
    return _ingested(ft, actor, source_id, items, retry="upload the same files again")


@router.get("/{source_id}/urls", response_model=list[SourceUrlPublic])
def source_urls(source_id: int, ft: FacetrailDep, actor: SourceReader) -> list[SourceUrlPublic]:
    """The URLs the source declares, in the order they were declared."""
    return [SourceUrlPublic.model_validate(u) for u in ft.sources.urls(actor, source_id)]


@router.post("/{source_id}/urls", response_model=UrlDeclarationPublic)
def declare_urls(source_id: int, body: SourceUrlsDeclare, ft: FacetrailDep, actor: SourceWriter
                 ) -> UrlDeclarationPublic:
    """Declare locations the controller is entitled to (audited): the only URLs the source's ingestion fetches."""
    declared = ft.sources.declare_urls(actor, source_id, body.urls)
    return UrlDeclarationPublic(source_id=declared.source_id, added=declared.added, already=declared.already)


@router.post("/{source_id}/urls/ingest", response_model=IngestReportPublic)
def ingest_urls(source_id: int, ft: FacetrailDep, actor: Ingester) -> IngestReportPublic:
    """Fetch and ingest the declared URLs, nothing else (robots.txt honoured, no link followed, private addresses
    refused, rate and size limited); per-URL errors are reported. Runs until the last URL is done."""
    return _ingested(ft, actor, source_id, ft.url_items(actor, source_id), retry="send the same request again")


def _ingested(ft: Facetrail, actor: Actor, source_id: int, items: list[InputItem], *, retry: str
              ) -> IngestReportPublic:
    # API batches are analysed in this process rather than in a worker pool.
    report = ft.ingest.ingest(actor, source_id, items, workers=1)
    if report.interrupted:
        done = report.images_added + report.images_skipped
        raise ShuttingDownError(f"the server is shutting down: the ingestion stopped after {done} of {report.items} "
                                f"item(s) ({report.images_added} added); {retry} to finish")
    return IngestReportPublic.model_validate(report.as_dict())
