"""The data directory, its backups and its master key: `facetrail init`, `backup ...`, `keys ...`."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Annotated

import typer

from facetrail.backup.archive import create_backup
from facetrail.backup.restore import restore_backup
from facetrail.cli.output import console, emit_json, field_table, progress_bar, reported_errors
from facetrail.cli.state import JsonOpt, state
from facetrail.config import Settings, get_settings
from facetrail.datadir import is_data_dir
from facetrail.errors import InvalidValueError
from facetrail.runtime import local_actor, rotate_keys

backup_app = typer.Typer(no_args_is_help=True, help="Backups that cannot bring back an erased person.")
keys_app = typer.Typer(no_args_is_help=True, help="The master key and the data keys it wraps.")


def init(ctx: typer.Context, as_json: JsonOpt = False) -> None:
    """Create a data directory (the only command that does, besides the demo in its own directory)."""
    with reported_errors(as_json):
        data = get_settings(data=state(ctx).data).data
        existed = is_data_dir(data)
        if not existed and data.exists() and any(data.iterdir()):
            raise InvalidValueError("data", f"{data} is not empty and holds no facetrail data directory: "
                                    "choose a new or empty directory")
        settings = state(ctx).open(create=True).settings
        body = {"data": str(data), "created": not existed, "master_key": _key_origin(settings)}
        if as_json:
            emit_json(body)
        elif existed:
            console.print(f"{data} is a facetrail data directory already; nothing changed", highlight=False)
        else:
            console.print(f"facetrail data directory created at {data}; master key: {body['master_key']}",
                          highlight=False)
            if not settings.kms and settings.master_key is None:
                console.print("keep a copy of the master key file apart from the backups: without it nothing "
                              "can be decrypted", highlight=False)


@backup_app.command("create")
def backup_create(ctx: typer.Context, path: Annotated[Path, typer.Argument(help="the archive to write (new file)")],
                  as_json: JsonOpt = False) -> None:
    """Copy the store, blobs and index into one archive while the system runs (ciphertext; no keys)."""
    with reported_errors(as_json):
        ft = state(ctx).open()
        with progress_bar("backing up", not as_json) as progress:
            report = create_backup(ft, local_actor(), path, progress)
        if as_json:
            emit_json(asdict(report))
        else:
            console.print(f"backup written to {report.path}: {report.faces} face(s), {report.images} image(s), "
                          f"{report.blobs} blob(s), {report.bytes} bytes, sha256 {report.sha256}", highlight=False)
            console.print("it holds no key: keep the keys directory (or your KMS) and this file apart.")


@backup_app.command("restore")
def backup_restore(ctx: typer.Context, path: Annotated[Path, typer.Argument(help="a backup archive")],
                   as_json: JsonOpt = False) -> None:
    """Replace the store, blobs and index with a backup's, then re-apply every erasure made since."""
    with reported_errors(as_json):
        settings = get_settings(data=state(ctx).data)
        report = restore_backup(settings, path, local_actor().name)
        if as_json:
            emit_json(report)
            return
        console.print(f"restored the backup of {report['backup_created_at']} ({report['faces_in_backup']} "
                      f"face(s), {report['images_in_backup']} image(s))", highlight=False)
        console.print(f"[bold]erasures re-applied: {report['erasures_reapplied']}[/] "
                      f"({report['faces_erased']} face(s) erased again, {report['images_dropped']} stored "
                      f"image(s) that could not be kept); opt-outs put back: {report['suppressions_restored']}",
                      highlight=False)
        console.print(f"restrictions set as recorded since: {report['restrictions_reapplied']} face(s); accounts "
                      f"disabled again: {report['accounts_disabled']}", highlight=False)
        archived = report.get("audit_archive")
        if isinstance(archived, dict):
            console.print(f"{archived['entries']} newer audit entries kept in {archived['file']}", highlight=False)
        missing = report.get("requests_not_in_backup")
        if isinstance(missing, list) and missing:
            console.print(f"[bold yellow]{len(missing)} rights request(s) received after the backup are not in it: "
                          f"{', '.join(missing)}.[/] Their history is in the audit archive; re-enter them so "
                          "their deadlines are kept.", highlight=False)


@keys_app.command("rotate")
def keys_rotate(ctx: typer.Context,
                new_key_file: Annotated[Path | None, typer.Option(
                    help="where to write the new key when the master key comes from FACETRAIL_MASTER_KEY")] = None,
                as_json: JsonOpt = False) -> None:
    """Re-wrap every data key under a new master key (the encrypted data is not rewritten). Refused while a
    server or another command has the data directory open: it would go on wrapping with the old key."""
    with reported_errors(as_json):
        result = rotate_keys(get_settings(data=state(ctx).data), local_actor(), new_key_file=new_key_file)
        if as_json:
            emit_json(result)
        else:
            console.print(f"{result['rewrapped']} data key(s) re-wrapped under master key {result['new_master_id']} "
                          f"({result['key_file']})", highlight=False)


def _key_origin(settings: Settings) -> str:
    return ("kms" if settings.kms else "environment" if settings.master_key is not None
            else str(settings.master_key_file))


@keys_app.command("status")
def keys_status(ctx: typer.Context, as_json: JsonOpt = False) -> None:
    """Where the master key comes from, its id, and how many data keys and ledger entries the keyring holds."""
    with reported_errors(as_json):
        ft = state(ctx).open()
        keyring = ft.vault.keyring
        body = {"master_key": _key_origin(ft.settings), "master_id": keyring.master.key_id,
                "data_keys": keyring.count(), "ledger_entries": len(keyring.ledger()), "keyring": str(keyring.path)}
        if as_json:
            emit_json(body)
        else:
            console.print(field_table(body))
