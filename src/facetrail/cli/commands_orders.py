"""`facetrail order ...`: enforcement orders recorded, carried out and reported on (hard rule 10)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer

from facetrail.cli.output import console, emit_json, folding_table, progress_bar, reported_errors
from facetrail.cli.state import JsonOpt, state
from facetrail.compliance.status import OrderStatus
from facetrail.errors import InvalidValueError
from facetrail.runtime import local_actor

order_app = typer.Typer(no_args_is_help=True, help="Enforcement orders of supervisory authorities.")


@order_app.command("add")
def add(
    ctx: typer.Context,
    authority: Annotated[str, typer.Option(help="the authority that issued it, e.g. CNIL")],
    reference: Annotated[str, typer.Option(help="its reference, e.g. MED-2021-134")],
    received: Annotated[str, typer.Option(help="date received, YYYY-MM-DD")],
    deadline: Annotated[str, typer.Option(help="last day to comply, YYYY-MM-DD")],
    jurisdiction: Annotated[list[str] | None, typer.Option("--jurisdiction", help="ISO 3166-1 alpha-2 code "
                                                           "in scope; repeatable")] = None,
    source: Annotated[list[int] | None, typer.Option("--source", help="source id in scope; repeatable")] = None,
    cease: Annotated[bool, typer.Option("--cease", help="measure: cease collecting the data in scope")] = False,
    erase: Annotated[bool, typer.Option("--erase", help="measure: erase the data in scope")] = False,
    daily_penalty: Annotated[int, typer.Option(help="penalty per day late, whole currency units")] = 0,
    currency: Annotated[str, typer.Option(help="ISO 4217 code")] = "EUR",
    answer_access_first: Annotated[bool, typer.Option("--answer-access-first", help="answer pending access "
                                                      "requests before erasing the faces they concern")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Record an order. Ingestion refuses the data in scope from now on if it orders to cease."""
    with reported_errors(as_json):
        ft = state(ctx).open()
        order = ft.orders.add(local_actor(), authority=authority, reference=reference, received_on=received,
                              jurisdictions=jurisdiction or [], source_ids=source or [], cease=cease, erase=erase,
                              deadline=deadline, daily_penalty=daily_penalty, currency=currency,
                              answer_access_first=answer_access_first)
        status = ft.orders.status(local_actor(), order.id)
        if as_json:
            emit_json(status.as_dict())
            return
        console.print(f"order [bold]{order.id}[/] recorded: {order.authority} {order.reference}; "
                      f"{status.images_remaining} image(s) with {status.faces_remaining} face(s) in scope"
                      + (f"; run `facetrail order run {order.id}` to erase them" if order.erase else ""),
                      highlight=False)


@order_app.command("list")
def list_orders(ctx: typer.Context, as_json: JsonOpt = False) -> None:
    """Every recorded order with its deadline and what it still reaches."""
    with reported_errors(as_json):
        statuses = state(ctx).open().orders.status_all(local_actor())
        if as_json:
            emit_json([s.as_dict() for s in statuses])
            return
        _table(statuses)


@order_app.command("status")
def status(
    ctx: typer.Context,
    order_id: Annotated[int | None, typer.Argument(help="order id (default: every order)")] = None,
    report: Annotated[Path | None, typer.Option(help="also write the compliance report for the authority "
                                                "here: JSON if the name ends in .json, else Markdown")] = None,
    as_of: Annotated[str | None, typer.Option(help="count days and penalty as of this ISO 8601 moment "
                                              "(default: now)")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Per order: items in scope remaining (0 when carried out), deadline, days left or late, penalty."""
    with reported_errors(as_json):
        ft = state(ctx).open()
        if as_of is not None:
            moment = _moment(as_of)
            ft.orders.clock = lambda: moment
        actor = local_actor()
        statuses = [ft.orders.status(actor, order_id)] if order_id is not None else ft.orders.status_all(actor)
        if report is not None:
            made = ft.orders.report(actor, order_id)
            text = json.dumps(made.as_dict(), indent=2) + "\n" if report.suffix == ".json" else made.markdown()
            report.write_text(text, encoding="utf-8")
        if as_json:
            emit_json(statuses[0].as_dict() if order_id is not None else [s.as_dict() for s in statuses])
            return
        _table(statuses)
        for s in statuses:
            if s.images_held:
                console.print(f"order {s.order_id}: {s.images_held} image(s) kept until these access requests "
                              f"are answered: {', '.join(s.held_for_requests)}", highlight=False)
            if s.unverified_access_requests:
                console.print(f"order {s.order_id}: open access requests not verified yet (their faces are not "
                              f"known): {', '.join(s.unverified_access_requests)}", highlight=False)
        if report is not None:
            console.print(f"compliance report written to {report}", highlight=False)


@order_app.command("run")
def run(ctx: typer.Context, order_id: Annotated[int, typer.Argument(help="order id")],
        as_json: JsonOpt = False) -> None:
    """Erase everything the order reaches (complete erasure, in batches). Run it again after an interruption."""
    with reported_errors(as_json):
        ft = state(ctx).open()
        with progress_bar(f"order {order_id}: erasing", enabled=not as_json) as update:
            result = ft.orders.run(local_actor(), order_id, progress=update)
        if as_json:
            emit_json(result.as_dict())
            return
        _table([result])


def _table(statuses: list[OrderStatus]) -> None:
    """Nothing cut at 80 columns: the order's identity, its reach and its clock each share a column."""
    table = folding_table("id", "order", "scope, measures", "remaining", "deadline, clock", "job")
    for s in statuses:
        scope = ", ".join([*s.jurisdictions, *(f"source {i}" for i in s.source_ids)])
        measures = " + ".join(m for m, on in (("cease", s.cease), ("erase", s.erase)) if on)
        clock = (f"{s.days_left} d left" if s.days_left is not None else
                 f"{s.days_late} d late\n{s.penalty_accrued:,} {s.currency}" if s.days_late else "on time")
        table.add_row(str(s.order_id), f"{s.authority}\n{s.reference}", f"{scope}\n{measures}",
                      f"{s.images_remaining} images\n{s.faces_remaining} faces", f"{s.deadline.isoformat()}\n{clock}",
                      s.job_state.value)
    console.print(table, highlight=False)


def _moment(text: str) -> datetime:
    try:
        moment = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise InvalidValueError("as_of", f"{text!r} is not an ISO 8601 date or moment") from None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
