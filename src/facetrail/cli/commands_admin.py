"""Administrative commands: accounts, the index and the server (the audit log: commands_audit.py)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

import typer

from facetrail.accounts.roles import Action, Role, actions_of
from facetrail.cli.output import console, emit_json, field_table, folding_table, reported_errors, when
from facetrail.cli.state import JsonOpt, state
from facetrail.runtime import local_actor
from facetrail.store.models import Account

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


@index_app.command("rebuild")
def index_rebuild(ctx: typer.Context, as_json: JsonOpt = False) -> None:
    """Rebuild the vector index from the templates in the store."""
    with reported_errors(as_json):
        report = state(ctx).open().rebuild_index(local_actor())
        if as_json:
            emit_json({"faces": report.added, "rebuilt": True})
        else:
            console.print(f"index rebuilt: {report.added} face(s)")


@index_app.command("status")
def index_status(ctx: typer.Context, as_json: JsonOpt = False) -> None:
    """Open the index (repairing it from the store if needed) and show its size."""
    with reported_errors(as_json):
        ft = state(ctx).open()
        index = ft.gallery.index()
        last = ft.gallery.last_sync
        body = {"faces": len(index), "generation": index.generation, "model_id": ft.gallery.model_id,
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
