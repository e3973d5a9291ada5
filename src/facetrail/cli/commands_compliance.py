"""`facetrail compliance ...` and `facetrail export ...`: the record of processing, the DPIA and the regulator
export (and its offline verification)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from facetrail.audit.signing import read_verifier
from facetrail.cli.output import console, emit_json, err_console, reported_errors
from facetrail.cli.state import JsonOpt, state
from facetrail.compliance import dpia, ropa
from facetrail.compliance.document import Document, Format, render
from facetrail.compliance.exportcheck import verify_export
from facetrail.errors import InvalidValueError
from facetrail.fsutil import atomic_write
from facetrail.runtime import local_actor

compliance_app = typer.Typer(no_args_is_help=True, help="Generated records: processing (Art. 30), DPIA (Art. 35).")
export_app = typer.Typer(no_args_is_help=True, help="The regulator export and its offline verification.")
FormatOpt = Annotated[str, typer.Option("--format", help="md, html or json")]
OutputOpt = Annotated[Path | None, typer.Option("--output", "-o", help="write to this file instead of stdout")]


def _emit(data: dict[str, object], doc: Document, fmt_text: str, as_json: bool, output: Path | None) -> None:
    fmt = Format.JSON if as_json else Format.parse(fmt_text)
    if fmt is Format.JSON:
        if output is None:
            emit_json(data)
            return
        text = json.dumps(data, indent=2)
    else:
        text = render(doc, fmt)
    if output is None:
        console.print(text, markup=False, highlight=False, soft_wrap=True)
    else:
        atomic_write(output, text.encode())
        err_console.print(f"written to {output}", highlight=False)


@compliance_app.command("ropa")
def record_of_processing(ctx: typer.Context, fmt: FormatOpt = "md", output: OutputOpt = None,
                         as_json: JsonOpt = False) -> None:
    """The record of processing activities, generated now from the settings and the sources."""
    with reported_errors(as_json):
        record = state(ctx).open().compliance.record_of_processing(local_actor())
        _emit(record, ropa.document(record), fmt, as_json, output)


@compliance_app.command("dpia")
def impact_assessment(ctx: typer.Context, fmt: FormatOpt = "md", output: OutputOpt = None,
                      as_json: JsonOpt = False) -> None:
    """A DPIA skeleton pre-filled with the processing, its volumes and the model's measured accuracy."""
    with reported_errors(as_json):
        assessment = state(ctx).open().compliance.impact_assessment(local_actor())
        _emit(assessment, dpia.document(assessment), fmt, as_json, output)


@export_app.command("regulator")
def regulator(ctx: typer.Context, out: Annotated[Path, typer.Argument(help="the zip to write")],
              as_json: JsonOpt = False) -> None:
    """Everything a supervisory authority asks for, in one zip (no template, crop or image in it)."""
    with reported_errors(as_json):
        if out.is_dir():
            raise InvalidValueError("out", f"{out} is a directory; name the zip file to write")
        result = state(ctx).open().compliance.regulator_export(local_actor())
        atomic_write(out, result.data)
        summary = {"file": str(out), **result.summary}
        if as_json:
            emit_json(summary)
        else:
            console.print(f"regulator export written to [bold]{out}[/]: {summary['sources']} sources, "
                          f"{summary['rights_requests']} rights requests, {summary['breaches']} breaches, "
                          f"{summary['audit_entries']} audit entries; manifest SHA-256 {summary['manifest_sha256']}",
                          highlight=False)
        if not result.summary["audit_ok"]:
            err_console.print("[bold red]the audit log does not verify[/]: the export records where it breaks")
            raise typer.Exit(1)


@export_app.command("verify")
def verify(zip_path: Annotated[Path, typer.Argument(help="a regulator export")],
           extends: Annotated[Path | None, typer.Option(help="an earlier export this one must extend")] = None,
           public_key: Annotated[Path | None, typer.Option(
               "--public-key", help="the audit log's public key (.pub from `audit keygen`), handed over by the "
                                    "controller beforehand: the checkpoint's signature is then checked")] = None,
           as_json: JsonOpt = False) -> None:
    """Re-verify an export offline: manifest, audit chain, head, the signed checkpoint's Merkle root (and its
    signature, given the public key); exit 1 when anything does not hold."""
    with reported_errors(as_json):
        for label, path in (("zip", zip_path), ("extends", extends), ("public_key", public_key)):
            if path is not None and not path.is_file():
                raise InvalidValueError(label, f"{path} is not a file")
        check = verify_export(zip_path.read_bytes(), previous=extends.read_bytes() if extends else None,
                              verifier=read_verifier(public_key) if public_key else None)
        if as_json:
            emit_json(check.as_dict())
        elif check.ok:
            checkpoint = ("no signed checkpoint" if check.checkpoint is None else
                          f"checkpoint of {check.checkpoint['size']} entries: root matches, signature "
                          f"{check.checkpoint['signature']}")
            console.print(f"[green]verified[/]: {check.entries} audit entries, last {check.last_entry}; {checkpoint}"
                          + (", extends the earlier export" if check.extends else ""), highlight=False)
        else:
            for problem in check.problems:
                err_console.print(f"[bold red]FAILED[/] {problem}", highlight=False)
        if not check.ok:
            raise typer.Exit(1)
