"""`facetrail request ...`: the DPO's queue of data-subject requests and the actions on them."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from facetrail.cli.output import console, emit_json, err_console, folding_table, reported_errors
from facetrail.cli.state import JsonOpt, state
from facetrail.rights.views import dpo_view
from facetrail.runtime import local_actor

request_app = typer.Typer(no_args_is_help=True, help="Data-subject requests (the DPO's queue).")
Id = Annotated[str, typer.Argument(help="request reference")]


def _show(ctx: typer.Context, request_id: str, as_json: bool) -> None:
    ft = state(ctx).open()
    view = dpo_view(ft.requests, ft.requests.get(local_actor(), request_id), with_events=True)
    if as_json:
        emit_json(view)
        return
    for key, value in view.items():
        if key != "events":
            console.print(f"[bold]{key:>22}[/]  {value}", highlight=False)
    for event in view["events"]:
        console.print(f"  {event['at']}  {event['from'] or '-'} -> {event['to']}  {event['actor']}: {event['note']}",
                      highlight=False)


@request_app.command("list")
def list_requests(ctx: typer.Context, include_closed: Annotated[bool, typer.Option("--all")] = False,
                  as_json: JsonOpt = False) -> None:
    """Open requests: overdue first, then those due within 7 days, then the rest."""
    with reported_errors(as_json):
        ft = state(ctx).open()
        views = [dpo_view(ft.requests, r) for r in ft.requests.queue(local_actor(), open_only=not include_closed)]
        if as_json:
            emit_json(views)
            return
        table = folding_table("id", "kind", "status", "received", "due", "days left")
        for v in views:
            days = v["days_left"]
            colour = "red" if days < 0 else "yellow" if days <= 7 else "default"
            table.add_row(v["id"], v["kind"], v["status"], v["received_at"][:10], v["due_at"][:10],
                          f"[{colour}]{days}[/]")
        console.print(table)


@request_app.command("show")
def show(ctx: typer.Context, request_id: Id, as_json: JsonOpt = False) -> None:
    """One request with its whole history."""
    with reported_errors(as_json):
        _show(ctx, request_id, as_json)


def _act(ctx: typer.Context, request_id: str, as_json: bool, action: Any) -> None:
    with reported_errors(as_json):
        action(state(ctx).open().requests, local_actor())
        _show(ctx, request_id, as_json)


@request_app.command("verify")
def verify(ctx: typer.Context, request_id: Id, as_json: JsonOpt = False) -> None:
    """Require a manual identity check by the DPO before anything is disclosed."""
    _act(ctx, request_id, as_json, lambda s, a: s.require_manual_check(a, request_id))


@request_app.command("approve")
def approve(ctx: typer.Context, request_id: Id, as_json: JsonOpt = False) -> None:
    """The manual identity check passed."""
    _act(ctx, request_id, as_json, lambda s, a: s.approve(a, request_id))


@request_app.command("reject")
def reject(ctx: typer.Context, request_id: Id, justification: Annotated[str, typer.Option()],
           as_json: JsonOpt = False) -> None:
    """The manual identity check failed: refuse (the requester learns nothing about any faces)."""
    _act(ctx, request_id, as_json, lambda s, a: s.reject(a, request_id, justification))


@request_app.command("extend")
def extend(ctx: typer.Context, request_id: Id, reasons: Annotated[str, typer.Option()],
           months: Annotated[int, typer.Option()] = 1, as_json: JsonOpt = False) -> None:
    """Extend by 1-2 months; the reasons are sent to the requester (only within the first month)."""
    _act(ctx, request_id, as_json, lambda s, a: s.extend(a, request_id, months=months, reasons=reasons))


@request_app.command("refuse")
def refuse(ctx: typer.Context, request_id: Id, justification: Annotated[str, typer.Option()],
           unfounded: Annotated[bool, typer.Option(help="manifestly unfounded or excessive")] = False,
           as_json: JsonOpt = False) -> None:
    """Refuse with a written justification; the requester is told of the right to complain."""
    _act(ctx, request_id, as_json, lambda s, a: s.refuse(a, request_id, justification, unfounded=unfounded))


@request_app.command("decide")
def decide(ctx: typer.Context, request_id: Id, reason: Annotated[str, typer.Option()],
           uphold: Annotated[bool, typer.Option("--uphold/--override")] = True, as_json: JsonOpt = False) -> None:
    """Decide an objection: upheld leads to erasure; overriding it needs a logged reason."""
    _act(ctx, request_id, as_json, lambda s, a: s.decide_objection(a, request_id, uphold=uphold, reason=reason))


@request_app.command("fulfil")
def fulfil(ctx: typer.Context, request_id: Id, note: Annotated[str, typer.Option()] = "",
           as_json: JsonOpt = False) -> None:
    """Answer a verified request now."""
    _act(ctx, request_id, as_json, lambda s, a: s.fulfil(a, request_id, note))


@request_app.command("overdue")
def overdue(ctx: typer.Context, as_json: JsonOpt = False) -> None:
    """List overdue requests; exit 1 when there is any."""
    with reported_errors(as_json):
        ft = state(ctx).open()
        late = [dpo_view(ft.requests, r) for r in ft.requests.overdue(local_actor())]
        if as_json:
            emit_json(late)
        elif late:
            for v in late:
                err_console.print(f"[red]overdue[/] {v['id']} ({v['kind']}), due {v['due_at'][:10]}")
        else:
            console.print("no request is overdue")
        if late:
            raise typer.Exit(1)
