"""/v1/sources: register, edit and read sources (with their versions); upload images into one (multipart)."""

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
    SourceVersionPublic,
)
from facetrail.api.uploads import upload_items
from facetrail.errors import ShuttingDownError

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
def upload_images(source_id: int, files: Annotated[list[UploadFile], File(description="images or zip archives")],
                  ft: FacetrailDep, actor: Ingester) -> IngestReportPublic:
    """Ingest uploaded images (or zip archives of images) into a source. Per-file errors are reported."""
    items = upload_items(files, ft.input_limits)
    # Uploads are small batches: analysed in this process rather than in a worker pool.
    report = ft.ingest.ingest(actor, source_id, items, workers=1)
    if report.interrupted:
        done = report.images_added + report.images_skipped
        raise ShuttingDownError(f"the server is shutting down: the ingestion stopped after {done} of {report.items} "
                                f"file(s) ({report.images_added} added); upload the same files again to finish")
    return IngestReportPublic.model_validate(report.as_dict())
