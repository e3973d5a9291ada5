"""Commands on the data: sources, ingestion and search."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from facetrail.cli.output import console, emit_json, folding_table, progress_bar, reported_errors
from facetrail.cli.state import JsonOpt, state
from facetrail.errors import MediaError
from facetrail.runtime import local_actor
from facetrail.sources.inputs import from_paths
from facetrail.store.models import Source

source_app = typer.Typer(no_args_is_help=True, help="Register and inspect sources (each with its legal basis).")

SOURCE_FIELDS = ("id", "name", "controller", "purposes", "legal_basis", "art9_condition", "evidence_ref",
                 "jurisdictions", "retention_days", "description", "created_at", "created_by")


def source_dict(source: Source) -> dict[str, Any]:
    return {name: getattr(source, name) for name in SOURCE_FIELDS}


@source_app.command("add")
def source_add(
    ctx: typer.Context,
    name: Annotated[str, typer.Option(help="a unique name")],
    controller: Annotated[str, typer.Option(help="the organisation responsible (the controller)")],
    purpose: Annotated[list[str], typer.Option("--purpose", help="a purpose; repeat for several")],
    basis: Annotated[str, typer.Option("--basis", help="GDPR Art. 6 basis: consent, contract, "
                                       "legal_obligation, vital_interests, public_task, legitimate_interests")],
    art9: Annotated[str, typer.Option("--art9", help="GDPR Art. 9(2) condition, a-j (required)")],
    evidence: Annotated[str, typer.Option("--evidence", help="reference to the evidence, e.g. consent records")],
    jurisdiction: Annotated[list[str], typer.Option("--jurisdiction", help="ISO 3166-1 alpha-2; repeatable")],
    retention_days: Annotated[int, typer.Option("--retention-days", help="how long images are kept")],
    description: Annotated[str, typer.Option(help="how the images were obtained")] = "",
    as_json: JsonOpt = False,
) -> None:
    """Register a source of images with its legal basis (hard rule 1)."""
    with reported_errors(as_json):
        ft = state(ctx).open()
        source = ft.sources.add(local_actor(), name=name, controller=controller, purposes=purpose,
                                legal_basis=basis, art9_condition=art9, evidence_ref=evidence,
                                jurisdictions=jurisdiction, retention_days=retention_days,
                                description=description)
        if as_json:
            emit_json(source_dict(source))
        else:
            console.print(f"source [bold]{source.id}[/] registered: {source.name}")


@source_app.command("list")
def source_list(ctx: typer.Context, as_json: JsonOpt = False) -> None:
    """List the registered sources."""
    with reported_errors(as_json):
        sources = state(ctx).open().sources.list(local_actor())
        if as_json:
            emit_json([source_dict(s) for s in sources])
            return
        table = folding_table("id", "name", "controller", "purposes", "basis", "art. 9", "jurisdictions", "retention")
        for s in sources:
            table.add_row(str(s.id), s.name, s.controller, ", ".join(s.purposes), s.legal_basis,
                          s.art9_condition, ", ".join(s.jurisdictions), f"{s.retention_days} d")
        console.print(table)


@source_app.command("show")
def source_show(ctx: typer.Context, source_id: Annotated[int, typer.Argument(help="source id")],
                as_json: JsonOpt = False) -> None:
    """Show one source in full."""
    with reported_errors(as_json):
        source = state(ctx).open().sources.get(local_actor(), source_id)
        if as_json:
            emit_json(source_dict(source))
            return
        for key, value in source_dict(source).items():
            shown = ", ".join(value) if isinstance(value, list) else value
            console.print(f"[bold]{key:>15}[/]  {shown}", highlight=False)


def ingest(
    ctx: typer.Context,
    paths: Annotated[list[Path], typer.Argument(help="files, folders (recursive) and zip archives")],
    source: Annotated[int, typer.Option("--source", help="id of the registered source")],
    workers: Annotated[int | None, typer.Option(help="vision processes (default: one per core)")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Ingest images into a source. Per-file errors are reported; the batch always goes on."""
    with reported_errors(as_json):
        ft = state(ctx).open()
        items = list(from_paths(paths, ft.input_limits))
        with progress_bar("ingesting", enabled=not as_json) as update:
            report = ft.ingest.ingest(local_actor(), source, items, progress=update, workers=workers)
        if as_json:
            emit_json(report.as_dict())
        else:
            console.print(
                f"{report.images_added} image(s) added with {report.faces_added} face(s) "
                f"({report.images_without_faces} without a face), {report.images_skipped} already present, "
                f"{report.faces_suppressed} face(s) dropped by opt-outs, "
                f"{len(report.errors)} error(s)."
            )
            for error in report.errors:
                console.print(f"[red]error[/] {error.name}: {error.cause}", highlight=False)
        if report.errors and report.images_added == 0 and report.images_skipped == 0:
            raise typer.Exit(1)


def search(
    ctx: typer.Context,
    photo: Annotated[Path, typer.Argument(help="the query photo (read into memory, never stored)")],
    purpose: Annotated[str, typer.Option(help="the declared purpose of this search")],
    case: Annotated[str, typer.Option(help="the case reference")],
    face: Annotated[int | None, typer.Option(help="which face of the photo (0 = largest)")] = None,
    top: Annotated[int, typer.Option(help="how many results (1-100)")] = 10,
    min_band: Annotated[str | None, typer.Option(help="lowest band shown: strong, probable, possible, none")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Search the sources registered for PURPOSE with one face of PHOTO."""
    with reported_errors(as_json):
        ft = state(ctx).open()
        try:
            data = photo.read_bytes()
        except OSError as exc:
            raise MediaError(f"{photo}: {exc.strerror or exc}") from exc
        outcome = ft.search.search(local_actor(), data, purpose=purpose, case_ref=case, face=face, top_k=top,
                                   min_band=min_band)
        if as_json:
            emit_json(outcome.as_dict())
            return
        for q in outcome.query_faces:
            marker = "*" if q.index == outcome.used_face else " "
            console.print(f"{marker} query face {q.index}: box {q.box.as_dict()} size {q.size_px}px", highlight=False)
        for warning in outcome.warnings:
            console.print(f"[yellow]warning:[/] {warning}", highlight=False)
        table = folding_table("rank", "score", "band", "face", "image", "source", "original", "box",
                      title=f"search {outcome.search_id} (bands from {outcome.min_band} up)")
        for h in outcome.results:
            b = h.box
            table.add_row(str(h.rank), f"{h.score:.1f}", h.band.value if h.band else "-", str(h.face_id),
                          str(h.image_id), h.source_name, h.original_name, f"{b.left},{b.top},{b.right},{b.bottom}")
        console.print(table)
        if not outcome.calibrated:
            console.print("[yellow]this model has no calibration: scores are not false-match rates[/]")
