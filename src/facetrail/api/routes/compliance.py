"""/v1/compliance: the record of processing and the DPIA (dpo, auditor); /v1/exports/regulator: the zip."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query
from fastapi.responses import JSONResponse, Response

from facetrail.accounts.roles import Action, Actor
from facetrail.api.deps import FacetrailDep
from facetrail.api.guard import GuardedRoute, allowed
from facetrail.compliance import dpia, ropa
from facetrail.compliance.document import Document, Format, render

router = APIRouter(tags=["compliance"], route_class=GuardedRoute)
ComplianceReader = Annotated[Actor, allowed(Action.COMPLIANCE_READ)]
Exporter = Annotated[Actor, allowed(Action.EXPORT_REGULATOR)]
DOCUMENT_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"content": {"application/json": {}, "text/markdown": {}, "text/html": {}},
          "description": "the document, as JSON (default), Markdown or HTML"}}
FormatQuery = Annotated[str, Query(alias="format", description="json, md or html")]


def _answer(data: dict[str, Any], doc: Document, fmt_text: str) -> Response:
    fmt = Format.parse(fmt_text)
    if fmt is Format.JSON:
        return JSONResponse(data)
    media = "text/markdown" if fmt is Format.MARKDOWN else "text/html"
    return Response(render(doc, fmt), media_type=f"{media}; charset=utf-8")


@router.get("/v1/compliance/ropa", response_class=Response, responses=DOCUMENT_RESPONSES)
def record_of_processing(ft: FacetrailDep, actor: ComplianceReader, fmt: FormatQuery = "json") -> Response:
    """The record of processing activities (Art. 30(1)), generated now from the settings and the sources."""
    Format.parse(fmt)  # a bad format is refused before anything is generated or logged
    record = ft.compliance.record_of_processing(actor)
    return _answer(record, ropa.document(record), fmt)


@router.get("/v1/compliance/dpia", response_class=Response, responses=DOCUMENT_RESPONSES)
def impact_assessment(ft: FacetrailDep, actor: ComplianceReader, fmt: FormatQuery = "json") -> Response:
    """A DPIA skeleton (Art. 35) pre-filled from the processing; the assessment is the controller's."""
    Format.parse(fmt)
    assessment = ft.compliance.impact_assessment(actor)
    return _answer(assessment, dpia.document(assessment), fmt)


@router.get("/v1/exports/regulator", response_class=Response,
            responses={200: {"content": {"application/zip": {}}, "description": "the regulator export"}})
def regulator_export(ft: FacetrailDep, actor: Exporter) -> Response:
    """Everything a supervisory authority asks for, in one zip; verify it with `facetrail export verify`."""
    result = ft.compliance.regulator_export(actor)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    return Response(result.data, media_type="application/zip", headers={
        "Content-Disposition": f'attachment; filename="facetrail-regulator-{stamp}.zip"', "Cache-Control": "no-store",
        "X-Manifest-SHA256": result.summary["manifest_sha256"]})
