"""`facetrail retention run` and `facetrail source retire`: storage limitation (hard rule 11)."""

from __future__ import annotations

from typing import Annotated

import typer

from facetrail.cli.output import console, emit_json, folding_table, progress_bar, reported_errors, when
from facetrail.cli.state import JsonOpt, state
from facetrail.compliance.retirement import Retirement
from facetrail.errors import InvalidValueError
from facetrail.runtime import local_actor

retention_app = typer.Typer(no_args_is_help=True, help="Enforce each source's retention period.")


@retention_app.command("run")
def run(ctx: typer.Context,
        dry_run: Annotated[bool, typer.Option("--dry-run", help="list what would be erased; erase nothing")] = False,
        as_json: JsonOpt = False) -> None:
    """Erase, completely, every image (and its faces) kept past its source's retention period."""
    with reported_errors(as_json):
        ft = state(ctx).open()
        with progress_bar("retention: erasing", enabled=not (as_json or dry_run)) as update:
            report = ft.retention.run(local_actor(), dry_run=dry_run, progress=update)
        if as_json:
            emit_json(report.as_dict())
            return
        table = folding_table("image", "source", "original", "ingested, expired", "faces",
                              title="would be erased" if dry_run else "erased")
        for image in report.images:
            table.add_row(str(image.image_id), f"{image.source_id} {image.source_name}", image.original_name,
                          f"{when(image.ingested_at)}\n{when(image.expired_at)}", str(image.faces))
        if report.images:
            console.print(table)
        verb = "would be erased" if dry_run else f"erased ({report.images_erased} image(s), " \
                                                 f"{report.faces_erased} face(s))"
        console.print(f"{len(report.images)} image(s) with {report.faces} face(s) past retention {verb}.",
                      highlight=False)


def retire(
    ctx: typer.Context,
    source_id: Annotated[int, typer.Argument(help="source id")],
    erase: Annotated[bool, typer.Option("--erase", help="erase its images now (complete erasure)")] = False,
    keep_until_retention: Annotated[bool, typer.Option("--keep-until-retention", help="keep its images until "
                                                       "their retention ends (the retention run erases them)")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Retire a source: it takes no new images. Its data is erased now, or kept until its retention ends."""
    with reported_errors(as_json):
        if erase == keep_until_retention:
            raise InvalidValueError("retirement", "choose one of --erase or --keep-until-retention")
        mode = Retirement.ERASE if erase else Retirement.KEEP_UNTIL_RETENTION
        ft = state(ctx).open()
        with progress_bar(f"source {source_id}: erasing", enabled=not as_json and erase) as update:
            report = ft.retirement.retire(local_actor(), source_id, mode.value, progress=update)
        if as_json:
            emit_json(report.as_dict())
            return
        console.print(f"source {report.source_id} retired on {when(report.retired_at)}: it takes no new images; "
                      + (f"{report.images_erased} image(s) with {report.faces_erased} face(s) erased"
                         if report.retirement == Retirement.ERASE else
                         f"{report.images_kept} image(s) kept until {when(report.kept_until)} at the latest"),
                      highlight=False)


