"""Commands on the data: sources, ingestion and search."""

from __future__ import annotations

import signal
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer

from facetrail.cli.output import (
    console,
    emit_json,
    field_table,
    folding_table,
    progress_bar,
    reported_errors,
    video_progress,
    when,
)
from facetrail.cli.state import JsonOpt, state
from facetrail.errors import InvalidValueError, MediaError
from facetrail.ingest.report import IngestReport, Outcome
from facetrail.ingest.service import IngestService
from facetrail.runtime import Facetrail, local_actor
from facetrail.search.reach import rate, threshold_line
from facetrail.sources.inputs import InputItem, count_items, from_paths
from facetrail.sources.registry import UrlDeclaration
from facetrail.sources.urls import read_url_list
from facetrail.store.models import Source, SourceVersion

source_app = typer.Typer(no_args_is_help=True, help="Register and inspect sources (each with its legal basis).")

SOURCE_FIELDS = ("id", "name", "version", "controller", "controller_contact", "representative", "purposes",
                 "legal_basis", "art9_condition", "evidence_ref", "jurisdictions", "retention_days", "description",
                 "created_at", "created_by")
VERSION_FIELDS = ("version", "purposes", "legal_basis", "art9_condition", "reason", "created_at", "created_by")


def source_dict(source: Source) -> dict[str, Any]:
    return {name: getattr(source, name) for name in SOURCE_FIELDS}


def version_dict(version: SourceVersion) -> dict[str, Any]:
    return {name: getattr(version, name) for name in VERSION_FIELDS}


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
    controller_contact: Annotated[str, typer.Option(help="how to reach the controller (address, e-mail)")] = "",
    representative: Annotated[str, typer.Option(help="the controller's representative (GDPR Art. 27), if any")] = "",
    urls: Annotated[Path | None, typer.Option("--urls", help="a URL-list source: a text file of http(s) URLs (one "
                                              "a line) or a sitemap, of locations the controller is entitled to "
                                              "(fetched by facetrail ingest-urls)")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Register a source of images with its legal basis (hard rule 1)."""
    with reported_errors(as_json):
        listed = read_url_list(urls) if urls is not None else None  # a bad list registers nothing
        ft = state(ctx).open()
        source = ft.sources.add(local_actor(), name=name, controller=controller, purposes=purpose,
                                legal_basis=basis, art9_condition=art9, evidence_ref=evidence,
                                jurisdictions=jurisdiction, retention_days=retention_days,
                                description=description, controller_contact=controller_contact,
                                representative=representative)
        declared = ft.sources.declare_urls(local_actor(), source.id, listed) if listed is not None else None
        if as_json:
            emit_json(source_dict(source) | ({"urls": declaration_dict(declared)} if declared else {}))
            return
        console.print(f"source [bold]{source.id}[/] registered: {source.name}")
        if declared is not None:
            console.print(f"{declared.added} URL(s) declared", highlight=False)


@source_app.command("urls")
def source_urls(
    ctx: typer.Context,
    source_id: Annotated[int, typer.Argument(help="source id")],
    add: Annotated[Path | None, typer.Option("--add", help="declare more URLs: a text file (one a line) or a "
                                             "sitemap")] = None,
    as_json: JsonOpt = False,
) -> None:
    """List the URLs a source declares (the only ones facetrail ingest-urls fetches), or declare more (--add)."""
    with reported_errors(as_json):
        listed = read_url_list(add) if add is not None else None
        registry = state(ctx).open().sources
        if listed is not None:
            declared = registry.declare_urls(local_actor(), source_id, listed)
            if as_json:
                emit_json(declaration_dict(declared))
            else:
                console.print(f"{declared.added} URL(s) declared ({declared.already} declared already)",
                              highlight=False)
            return
        rows = registry.urls(local_actor(), source_id)
        if as_json:
            emit_json([{"url": u.url, "declared_at": u.declared_at, "declared_by": u.declared_by} for u in rows])
            return
        table = folding_table("url", "declared", "by")
        for u in rows:
            table.add_row(u.url, when(u.declared_at), u.declared_by)
        console.print(table, highlight=False)


def declaration_dict(declared: UrlDeclaration) -> dict[str, int]:
    return {"added": declared.added, "already": declared.already}


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
    """Show one source in full, with the history of its legal terms (its versions)."""
    with reported_errors(as_json):
        sources = state(ctx).open().sources
        source = sources.get(local_actor(), source_id)
        versions = sources.versions(local_actor(), source_id)
        if as_json:
            emit_json({**source_dict(source), "versions": [version_dict(v) for v in versions]})
            return
        console.print(field_table(source_dict(source)), highlight=False)
        table = folding_table("v", "since", "by", "purposes", "basis", "art. 9", "reason", title="versions")
        for v in versions:
            table.add_row(str(v.version), when(v.created_at),
                          v.created_by, ", ".join(v.purposes), v.legal_basis, v.art9_condition, v.reason)
        console.print(table)


@source_app.command("update")
def source_update(
    ctx: typer.Context,
    source_id: Annotated[int, typer.Argument(help="source id")],
    description: Annotated[str | None, typer.Option(help="how the images were obtained")] = None,
    evidence: Annotated[str | None, typer.Option("--evidence", help="reference to the evidence")] = None,
    retention_days: Annotated[int | None, typer.Option("--retention-days", help="how long images are kept")] = None,
    controller_contact: Annotated[str | None, typer.Option(help="how to reach the controller")] = None,
    representative: Annotated[str | None, typer.Option(help="the controller's representative")] = None,
    purpose: Annotated[list[str] | None, typer.Option(
        "--purpose", help="the purposes (all of them; repeat): a new version")] = None,
    basis: Annotated[str | None, typer.Option("--basis", help="GDPR Art. 6 basis: a new version")] = None,
    art9: Annotated[str | None, typer.Option("--art9", help="GDPR Art. 9(2) condition: a new version")] = None,
    reason: Annotated[str | None, typer.Option(help="why the legal terms change (required with a new version)")
                      ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Edit a source. Description, evidence, retention and contacts change in place; a change of purposes,
    legal basis or Art. 9 condition makes a new version (with --reason) and the earlier ones are kept."""
    with reported_errors(as_json):
        registry = state(ctx).open().sources
        before = registry.get(local_actor(), source_id).version
        source = registry.update(local_actor(), source_id, description=description, evidence_ref=evidence,
                                 retention_days=retention_days, controller_contact=controller_contact,
                                 representative=representative, purposes=purpose, legal_basis=basis,
                                 art9_condition=art9, reason=reason)
        if as_json:
            emit_json(source_dict(source))
        elif source.version != before:
            console.print(f"source [bold]{source.id}[/] updated: version {source.version} (was {before})")
        else:
            console.print(f"source [bold]{source.id}[/] updated (version {source.version} unchanged)")


def ingest(
    ctx: typer.Context,
    paths: Annotated[list[Path], typer.Argument(help="files, folders (recursive) and zip archives")],
    source: Annotated[int, typer.Option("--source", help="id of the registered source")],
    workers: Annotated[int | None, typer.Option(help="images analysed at once (default: one per core)")] = None,
    queue: Annotated[str | None, typer.Option(help="Redis URL of a job queue: the photos are analysed by "
                                                   "`facetrail worker` processes (default: the queue_url setting)")
                     ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Ingest images into a source. Per-file errors are reported; the batch always goes on.

    Exit code: 0 every image is in, 3 some images failed (partial), 1 none is in (all failed, or no image
    among the inputs), 2 an invalid value, 4 stopped by SIGTERM after the image in hand (run it again to finish)."""
    with reported_errors(as_json):
        ft = state(ctx).open()
        # Walked twice, once to count them for the progress bar: neither walk holds the items.
        _run_ingest(ft, source, from_paths(paths, ft.input_limits), workers, as_json, queue,
                    total=count_items(paths, ft.input_limits))


def ingest_urls(
    ctx: typer.Context,
    source: Annotated[int, typer.Option("--source", help="id of a source with declared URLs (source add --urls)")],
    workers: Annotated[int | None, typer.Option(help="images analysed at once (default: one per core)")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Fetch and ingest the URLs the source declares, and nothing else: robots.txt honoured, no link followed,
    private addresses refused, rate and size limited. Per-URL errors are reported; exit codes as for ingest."""
    with reported_errors(as_json):
        ft = state(ctx).open()
        _run_ingest(ft, source, ft.url_items(local_actor(), source), workers, as_json)


def _run_ingest(ft: Facetrail, source: int, items: Iterable[InputItem], workers: int | None, as_json: bool,
                queue: str | None = None, *, total: int | None = None) -> None:
    with progress_bar("ingesting", enabled=not as_json) as update, _stop_on_sigterm(ft.ingest), \
            video_progress(ft.ingest, enabled=not as_json):
        report = ft.ingest.ingest(local_actor(), source, items, total=total, progress=update, workers=workers,
                                  queue_url=queue)
    if as_json:
        emit_json(report.as_dict())
    else:
        _print_report(report)
    raise typer.Exit(INGEST_EXIT_CODES[report.outcome])


@contextmanager
def _stop_on_sigterm(service: IngestService) -> Iterator[None]:
    """SIGTERM (`kill PID`) ends the batch after the image in hand, with its report, instead of killing the command
    half-way (which is safe too, but says nothing). Ctrl-C is left as it is: it reaches the vision processes too."""
    previous = signal.signal(signal.SIGTERM, lambda _sig, _frame: service.interrupt())
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


INGEST_EXIT_CODES = {Outcome.COMPLETE: 0, Outcome.PARTIAL: 3, Outcome.FAILED: 1, Outcome.NOTHING: 1,
                     Outcome.INTERRUPTED: 4}
"""`facetrail ingest`'s exit code for each outcome of a batch, so that scripts can tell a partial success."""


def _print_report(report: IngestReport) -> None:
    console.print(
        f"{report.images_added} image(s) added with {report.faces_added} face(s) "
        f"({report.images_without_faces} without a face), {report.images_skipped} already present, "
        f"{report.videos_added} video(s) added ({report.videos_skipped} already present), "
        f"{report.faces_suppressed} face(s) dropped by opt-outs, {len(report.errors)} error(s), "
        f"{len(report.skipped)} file(s) skipped (not images).", highlight=False)
    if report.videos:
        videos = folding_table("video", "s", "decoded", "analysed", "faces", "tracks", "kept", "opted out",
                               title="videos: frames decoded and analysed, templates kept, tracks opted out")
        for v in report.videos:
            videos.add_row(v.name, f"{v.duration_s:.1f}", str(v.frames_decoded), str(v.frames_analysed),
                           str(v.faces_detected), str(v.tracks), str(v.templates_kept), str(v.tracks_suppressed))
        console.print(videos, highlight=False)
    if report.errors or report.skipped:
        table = folding_table("file", "status", "why")
        for error in report.errors:
            table.add_row(error.name, "[red]error[/]", error.cause)
        for skipped in report.skipped:
            table.add_row(skipped.name, "[yellow]skipped[/]", skipped.reason)
        console.print(table, highlight=False)
    match report.outcome:
        case Outcome.NOTHING:
            console.print("[red]nothing ingested:[/] no image among the inputs", highlight=False)
        case Outcome.FAILED:
            console.print("[red]nothing ingested:[/] every image failed", highlight=False)
        case Outcome.PARTIAL:
            console.print("[yellow]partial:[/] some images failed (exit code 3)", highlight=False)
        case Outcome.INTERRUPTED:
            console.print("[yellow]interrupted:[/] run the same command again to finish", highlight=False)
        case Outcome.COMPLETE:
            pass
        case _:
            raise AssertionError(report.outcome)


def search(
    ctx: typer.Context,
    photo: Annotated[Path, typer.Argument(help="the query photo (read into memory, never stored)")],
    purpose: Annotated[str, typer.Option(help="the declared purpose of this search")],
    case: Annotated[str, typer.Option(help="the case reference")],
    face: Annotated[int | None, typer.Option(help="which face of the photo (0 = largest)")] = None,
    top: Annotated[int, typer.Option(help="how many results (1-100)")] = 10,
    min_band: Annotated[str | None, typer.Option(help="lowest band shown: auto (default: from the number of faces "
                                                 "searched), strong, probable, possible, none")] = None,
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
        # The band is the per-comparison rate, FPIR what it means at this gallery size; the exact false-match rate,
        # image id and face box are in --json. A video result names its track and when the person is seen.
        table = folding_table("rank", "score", "band", f"FPIR at {outcome.reach.gallery_size:,}", "face",
                              "source", "found in",
                              title=f"search {outcome.search_id} ({threshold_line(outcome.reach)})")
        for h in outcome.results:
            where = h.original_name if h.video is None else (
                f"{h.video.name}, track {h.video.track_id}: "
                + ", ".join(f"{start:.1f}-{end:.1f} s" for start, end in h.video.ranges))
            table.add_row(str(h.rank), f"{h.score:.1f}", h.band.value if h.band else "-", rate(h.fpir),
                          str(h.face_id), h.source_name, where)
        console.print(table)
        if not outcome.calibrated:
            console.print("[yellow]this model has no calibration: scores are not false-match rates[/]")


def worker(
    redis: Annotated[str | None, typer.Option("--redis", help="Redis URL of the job queue, e.g. "
                                              "rediss://host:6379/0 (default: the queue_url setting)")] = None,
    lease: Annotated[int, typer.Option(min=1, help="seconds this worker may go silent (a crash, a lost machine) "
                                               "before the job it holds is given to another worker")] = 30,
) -> None:
    """Analyse photos for `facetrail ingest --queue` on this machine (decode, detect, embed) until stopped
    (SIGTERM or Ctrl-C: a job in hand is finished first; a worker killed outright has its job done by another).
    It needs no data directory and no keys: only the job queue."""
    from facetrail.config import get_settings
    from facetrail.ingest.queue import Worker, redacted

    with reported_errors(False):
        url = redis or get_settings().queue_url
        if not url:
            raise InvalidValueError("--redis", "no job queue: give --redis URL or set FACETRAIL_QUEUE_URL")
        process = Worker(url, lease_s=lease)
        signal.signal(signal.SIGTERM, lambda _sig, _frame: process.stop())
        console.print(f"worker {process.id} waiting for jobs at {redacted(url)}", highlight=False, soft_wrap=True)
        try:
            process.run()
        except KeyboardInterrupt:
            pass
        console.print(f"worker {process.id} stopped after {process.jobs_done} jobs", highlight=False, soft_wrap=True)
