"""Administrative commands: accounts, the audit log, the index and the server."""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer

from facetrail.accounts.roles import Action, Role, actions_of
from facetrail.accounts.staff import StaffSignIn
from facetrail.audit.query import AuditQuery
from facetrail.cli.commands_audit import audit_app, verify_against
from facetrail.cli.output import console, emit_json, err_console, field_table, folding_table, reported_errors, when
from facetrail.cli.state import JsonOpt, state
from facetrail.runtime import local_actor
from facetrail.store.models import Account
from facetrail.timestamps import iso_z, parse_time

user_app = typer.Typer(no_args_is_help=True, help="Staff accounts and their API keys.")
index_app = typer.Typer(no_args_is_help=True, help="The vector index (derived from the store).")


@user_app.command("add")
def user_add(ctx: typer.Context, name: Annotated[str, typer.Argument()],
             role: Annotated[str, typer.Option(help="operator, investigator, dpo or auditor")],
             purpose: Annotated[list[str] | None, typer.Option(
                 "--purpose", help="the key may search only for this purpose (repeat for several); default any")
             ] = None,
             expires_days: Annotated[int | None, typer.Option(
                 help="the key's life in days, 0 = never; default the key_ttl_days setting (90)")] = None,
             as_json: JsonOpt = False) -> None:
    """Create an account; its API key is printed once and never stored."""
    with reported_errors(as_json):
        ft = state(ctx).open()
        days = ft.settings.key_ttl_days if expires_days is None else expires_days
        account, key = ft.accounts.create(local_actor(), name=name, role=role, purposes=purpose or None,
                                          expires_days=days)
        if as_json:
            emit_json({"id": account.id, "name": account.name, "role": account.role, "purposes": account.purposes,
                       "expires_at": account.expires_at, "api_key": key})
        else:
            console.print(f"account [bold]{account.name}[/] ({account.role}) created; {_abilities(account)}; "
                          f"its key {_expiry(account.expires_at)}. API key (shown once):")
            console.print(key, highlight=False, soft_wrap=True)


def _abilities(account: Account) -> str:
    """What the new account may do, from the roles table: only a role that may search is told for what."""
    actions = actions_of(Role(account.role))
    may = ", ".join(a.value for a in actions if a is not Action.SEARCH)
    if Action.SEARCH not in actions:
        return f"it may: {may}; it cannot search"
    scope = "any purpose" if account.purposes is None else ", ".join(account.purposes)
    return f"it may: {may}; it may search for {scope}"


def _expiry(expires_at: datetime | None) -> str:
    return "never expires" if expires_at is None else f"expires {when(expires_at)}"


@user_app.command("list")
def user_list(ctx: typer.Context, as_json: JsonOpt = False) -> None:
    """List accounts (never their keys), with their keys' purposes and expiry."""
    with reported_errors(as_json):
        accounts = state(ctx).open().accounts.list(local_actor())
        rows = [{"id": a.id, "name": a.name, "role": a.role, "purposes": a.purposes, "created_at": a.created_at,
                 "expires_at": a.expires_at, "disabled_at": a.disabled_at} for a in accounts]
        if as_json:
            emit_json(rows)
            return
        now = datetime.now(UTC)
        table = folding_table("id", "name", "role", "purposes", "created", "expires", "disabled")
        for a in accounts:
            expires = when(a.expires_at, "never")
            if a.expires_at is not None and a.expires_at <= now:
                expires += " (expired)"
            table.add_row(str(a.id), a.name, a.role, "any" if a.purposes is None else ", ".join(a.purposes),
                          when(a.created_at), expires, when(a.disabled_at))
        console.print(table)


@user_app.command("disable")
def user_disable(ctx: typer.Context, name: Annotated[str, typer.Argument()], as_json: JsonOpt = False) -> None:
    """Disable an account: its key stops working at once."""
    with reported_errors(as_json):
        state(ctx).open().accounts.disable(local_actor(), name=name)
        if as_json:
            emit_json({"name": name, "disabled": True})
        else:
            console.print(f"account {name} disabled")


@user_app.command("password")
def user_password(ctx: typer.Context, name: Annotated[str, typer.Argument()],
                  stdin: Annotated[bool, typer.Option("--password-stdin", help="read the password from the first "
                                                      "line of standard input instead of asking")] = False,
                  as_json: JsonOpt = False) -> None:
    """Set an account's password for the web console (/console); its console sessions end."""
    with reported_errors(as_json):
        if stdin:
            password = sys.stdin.readline().rstrip("\n")
        else:
            password = typer.prompt("password", hide_input=True, confirmation_prompt=True)
        ft = state(ctx).open()
        StaffSignIn(ft.db, ft.audit).set_password(local_actor(), name, password)
        if as_json:
            emit_json({"name": name, "password_set": True})
        else:
            console.print(f"console password of {name} set; it signs in at /console")


@audit_app.command("verify")
def audit_verify(ctx: typer.Context, as_json: JsonOpt = False,
                 against: Annotated[Path | None, typer.Option(
                     help="a signed checkpoint file (one or several): also prove the log extends each")] = None,
                 public_key: Annotated[Path | None, typer.Option(
                     "--public-key", help="the log's public key; default: the configured signing key's")] = None,
                 ) -> None:
    """Check the whole hash chain; exit 1 naming the first broken entry. With --against, also check each
    signed checkpoint and that the log's first N entries still have its root."""
    if against is not None:
        return verify_against(ctx, against, public_key, as_json)
    with reported_errors(as_json):
        ft = state(ctx).open()
        result = ft.verify_audit(local_actor())
        warning = ft.checkpoints.chain_only_warning()
        if as_json:
            emit_json({"ok": result.ok, "entries": result.entries, "first_broken_seq": result.first_broken_seq,
                       "reason": result.reason, "warning": warning})
        elif result.ok:
            console.print(f"audit log intact: {result.entries} entries")
        else:
            err_console.print(f"[bold red]audit log broken at entry {result.first_broken_seq}:[/] {result.reason}")
        if not as_json:
            err_console.print(f"[yellow]note:[/] {warning}", highlight=False)
        if not result.ok:
            raise typer.Exit(1)


@audit_app.command("list")
def audit_list(ctx: typer.Context, after: Annotated[int, typer.Option(help="entries after this seq")] = 0,
               limit: Annotated[int, typer.Option(help="at most this many")] = 50,
               actor: Annotated[str | None, typer.Option(help="only this actor (e.g. local:alice, ivy)")] = None,
               action: Annotated[str | None, typer.Option(help="only this action (e.g. search)")] = None,
               purpose: Annotated[str | None, typer.Option(help="only entries for this purpose")] = None,
               case: Annotated[str | None, typer.Option(help="only entries for this case reference")] = None,
               since: Annotated[str | None, typer.Option(help="from this time on (ISO 8601; UTC if no zone)")] = None,
               until: Annotated[str | None, typer.Option(help="before this time (ISO 8601; UTC if no zone)")] = None,
               as_json: JsonOpt = False) -> None:
    """Show audit entries in order, filtered by actor, action, purpose, case and time."""
    with reported_errors(as_json):
        query = AuditQuery(actor=actor, action=action, purpose=purpose, case=case,
                           since=None if since is None else parse_time(since, "since"),
                           until=None if until is None else parse_time(until, "until"))
        entries = state(ctx).open().read_audit(local_actor(), query, after=after, limit=limit)
        if as_json:
            emit_json([{"seq": e.seq, "at": e.at, "actor": e.actor, "action": e.action, "details": e.details,
                        "prev_hash": e.prev_hash, "hash": e.hash} for e in entries])
            return
        # Nothing is cut: when, who and what share a column, and every cell folds at the terminal's width.
        table = folding_table("seq", "at, actor, action", "details")
        for e in entries:
            at = iso_z(datetime.fromisoformat(e.at), precise=True)  # entries of earlier versions end in +00:00
            table.add_row(str(e.seq), f"{at}\n{e.actor}\n[bold]{e.action}[/]", _details(e.details))
        console.print(table, highlight=False)


def _details(text: str) -> str:
    """`key=value` pairs, one per line: narrower than the JSON and wrapped whole."""
    try:
        details = json.loads(text)
    except ValueError:
        return text
    if not isinstance(details, dict):
        return text
    return "\n".join(f"{key}={json.dumps(value, ensure_ascii=False)}" for key, value in details.items())


@index_app.command("rebuild")
def index_rebuild(ctx: typer.Context, as_json: JsonOpt = False) -> None:
    """Rebuild the vector index from the templates in the store."""
    with reported_errors(as_json):
        report = state(ctx).open().rebuild_index(local_actor())
        if as_json:
            emit_json({"faces": report.added, "rebuilt": True})
        else:
            console.print(f"index rebuilt: {report.added} face(s)")


@index_app.command("reembed")
def index_reembed(ctx: typer.Context, as_json: JsonOpt = False) -> None:
    """Give every stored face a template of the configured vision model, then rebuild the index (after a change
    of FACETRAIL_VISION_MODEL). Each image is committed on its own: a run that is stopped resumes where it was."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    with reported_errors(as_json):
        ft = state(ctx).open(model_change=True)
        with Progress(TextColumn("[bold]re-embedding"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                      console=err_console, disable=as_json) as bar:
            task = bar.add_task("images", total=None)
            report = ft.reembed(local_actor(), lambda done, total: bar.update(task, completed=done, total=total))
        body = {"model_id": report.model_id, "images": report.images, "faces": report.faces,
                "already": report.already, "not_found": report.not_found, "unavailable": report.unavailable,
                "failed_images": report.failed_images}
        if as_json:
            emit_json(body)
        else:
            console.print(f"{report.faces} face(s) of {report.images} image(s) re-embedded for {report.model_id} "
                          f"({report.already} already were); index rebuilt")
            if report.left or report.failed_images:
                console.print(f"left under their old model (out of searches): {len(report.not_found)} face(s) "
                              f"not found again, {len(report.unavailable)} without stored image or key, "
                              f"{len(report.failed_images)} image(s) unreadable: "
                              + "; ".join(f"image {i}: {c}" for i, c in report.failed_images.items()))


@index_app.command("status")
def index_status(ctx: typer.Context, as_json: JsonOpt = False) -> None:
    """Open the index (repairing it from the store if needed) and show its size."""
    with reported_errors(as_json):
        ft = state(ctx).open(model_change=True)
        index = ft.gallery.index()
        last = ft.gallery.last_sync
        body = {"faces": len(index), "generation": index.generation, "model_id": ft.gallery.model_id,
                "faces_of_other_models": ft.faces_of_other_models(),
                "repaired": bool(last and (last.rebuilt or last.added or last.removed)),
                "reason": last.reason if last else ""}
        if as_json:
            emit_json(body)
        else:
            console.print(field_table(body))


def serve(ctx: typer.Context,
          host: Annotated[str, typer.Option(help="address to listen on")] = "127.0.0.1",
          port: Annotated[int, typer.Option(help="port")] = 8000,
          as_json: JsonOpt = False) -> None:
    """Serve the REST API (OpenAPI docs at /docs). SIGTERM or Ctrl-C stops it, interrupting an upload's
    ingestion after its current image (what was committed stays; uploading again finishes it)."""
    from facetrail.api.server import serve as serve_api
    from facetrail.api.server import take_port

    with reported_errors(as_json):
        sock = take_port(host, port)
        port = sock.getsockname()[1]
        try:
            ft = state(ctx).open()
        except BaseException:
            sock.close()
            raise
        if as_json:
            emit_json({"url": f"http://{host}:{port}", "docs": f"http://{host}:{port}/docs"})
        else:
            console.print(f"serving on http://{host}:{port} (docs: /docs)", highlight=False)
        serve_api(ft, sock)
