"""Audit checkpoints: the signing key, signed checkpoints, verification against them, inclusion proofs."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from facetrail.audit.checkpoints import AgainstResult, against_report, append, check_inclusion, push, verify_checkpoint
from facetrail.audit.note import Verifier
from facetrail.audit.signing import DEFAULT_NAME, read_verifier, write_key_pair
from facetrail.cli.output import console, emit_json, err_console, reported_errors
from facetrail.cli.state import JsonOpt, state
from facetrail.config import get_settings
from facetrail.errors import InvalidValueError, KeyUnavailableError
from facetrail.runtime import local_actor

# Defined here, where most audit commands are; `audit verify` and `audit list` are added in commands_admin.py.
audit_app = typer.Typer(no_args_is_help=True, help="The hash-chained audit log.")

PublicKeyOpt = Annotated[Path | None, typer.Option(
    "--public-key", help="the log's public key file (from `audit keygen`); default: the configured signing key's")]


@audit_app.command("keygen")
def audit_keygen(ctx: typer.Context,
                 key_file: Annotated[Path, typer.Argument(help="where to write the signing key (outside the data "
                                                          "directory); its public key goes to KEY_FILE.pub")],
                 name: Annotated[str, typer.Option(help="the log's name, the origin line of its checkpoints")] =
                 DEFAULT_NAME, as_json: JsonOpt = False) -> None:
    """Create the checkpoint signing key pair and print the public key for verifiers."""
    with reported_errors(as_json):
        data = get_settings(data=state(ctx).data).data
        public_path, public = write_key_pair(key_file, data, name)
        if as_json:
            emit_json({"key_file": str(key_file), "public_key_file": str(public_path), "public_key": public})
            return
        console.print(f"signing key written to {key_file} (0600). Point FACETRAIL_AUDIT_SIGNING_KEY_FILE at it; "
                      f"give the public key ({public_path}) to whoever verifies:", highlight=False)
        console.print(public, highlight=False, soft_wrap=True)


@audit_app.command("checkpoint")
def audit_checkpoint(ctx: typer.Context,
                     append_to: Annotated[Path | None, typer.Option(
                         "--append", help="also append the checkpoint to this file")] = None,
                     push_command: Annotated[str | None, typer.Option(
                         "--push-command", help="also pipe it to this command, e.g. 'logger -t facetrail'")] = None,
                     as_json: JsonOpt = False) -> None:
    """Sign a checkpoint of the audit log (its size and Merkle root) for someone outside to keep."""
    with reported_errors(as_json):
        checkpoint = state(ctx).open().checkpoint_audit(local_actor())
        if append_to is not None:
            try:
                append(checkpoint, append_to)
            except OSError as exc:
                raise InvalidValueError("append", f"{append_to}: {exc.strerror or exc}") from None
        if push_command:
            push(checkpoint, push_command)
        if as_json:
            emit_json(checkpoint.as_dict())
        else:
            typer.echo(checkpoint.text, nl=False)


def _verifier(ctx: typer.Context, public_key: Path | None) -> Verifier:
    if public_key is not None:
        return read_verifier(public_key)
    verifier = state(ctx).open().checkpoints.verifier()
    if verifier is None:
        raise KeyUnavailableError("no public key: pass --public-key (the log's .pub file), or configure the "
                                  "signing key (FACETRAIL_AUDIT_SIGNING_KEY_FILE)")
    return verifier


def _read(path: Path, field: str) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise InvalidValueError(field, f"{path}: {getattr(exc, 'strerror', None) or exc}") from None


def verify_against(ctx: typer.Context, against: Path, public_key: Path | None, as_json: bool) -> None:
    """`audit verify --against`: the signature, the chain, and that the log extends each checkpoint."""
    with reported_errors(as_json):
        verifier = _verifier(ctx, public_key)
        result = state(ctx).open().verify_audit_against(local_actor(), _read(against, "against"), verifier,
                                                        origin=str(against))
        if as_json:
            emit_json(against_report(result))
        else:
            _print_against(result)
        if not result.ok:
            raise typer.Exit(1)


def _print_against(result: AgainstResult) -> None:
    chain = result.chain
    if chain.ok:
        console.print(f"hash chain intact: {chain.entries} entries, Merkle root {chain.root.hex()}", highlight=False)
    else:
        err_console.print(f"[bold red]hash chain broken at entry {chain.first_broken_seq}:[/] {chain.reason}",
                          highlight=False)
    for check in result.checks:
        label = f"checkpoint of {check.checkpoint.size} entries ({check.checkpoint.time})"
        if check.ok:
            console.print(f"[green]{label}: {check.reason}[/]; consistency proof "
                          f"{[p.hex() for p in check.consistency]}", highlight=False)
        else:
            err_console.print(f"[bold red]{label}: {check.reason}[/]", highlight=False)


@audit_app.command("prove")
def audit_prove(ctx: typer.Context, seq: Annotated[int, typer.Argument(help="the entry's seq")],
                size: Annotated[int | None, typer.Option(
                    help="tree size; default: the newest checkpoint kept in the data directory")] = None,
                as_json: JsonOpt = False) -> None:
    """An inclusion proof (RFC 9162 audit path) for one entry, with the checkpoint it leads to. Without
    --json it is printed as JSON too: it is meant to be saved and checked with `audit check-inclusion`."""
    with reported_errors(as_json):
        emit_json(state(ctx).open().prove_audit_entry(local_actor(), seq, size=size).as_dict())


@audit_app.command("check-inclusion")
def audit_check_inclusion(
        proof_file: Annotated[Path, typer.Argument(help="a proof written by `audit prove` (JSON)")],
        against: Annotated[Path, typer.Option(help="the signed checkpoint the proof leads to")],
        public_key: Annotated[Path, typer.Option("--public-key", help="the log's public key file")],
        as_json: JsonOpt = False) -> None:
    """Check an inclusion proof offline: the checkpoint's signature, then the entry's hash up to its root."""
    with reported_errors(as_json):
        checkpoints = verify_checkpoint(_read(against, "against"), read_verifier(public_key), str(against))
        try:
            proof = json.loads(_read(proof_file, "proof"))
        except json.JSONDecodeError as exc:
            raise InvalidValueError("proof", f"{proof_file}: not JSON ({exc})") from None
        if not isinstance(proof, dict):
            raise InvalidValueError("proof", f"{proof_file}: not an inclusion proof")
        matching = [c for c in checkpoints if c.size == proof.get("tree_size")] or checkpoints[-1:]
        problem = check_inclusion(proof, matching[0])
        if as_json:
            emit_json({"ok": problem is None, "seq": proof.get("seq"), "tree_size": proof.get("tree_size"),
                       "reason": problem or "included"})
        elif problem is None:
            console.print(f"entry {proof['seq']} is in the signed tree of {matching[0].size} entries", highlight=False)
        else:
            err_console.print(f"[bold red]inclusion proof fails:[/] {problem}", highlight=False)
        if problem is not None:
            raise typer.Exit(1)
