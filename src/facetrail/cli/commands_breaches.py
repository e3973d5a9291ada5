"""`facetrail breach ...`: the breach register (Art. 33/34) with its 72-hour clock."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

import typer

from facetrail.cli.output import console, emit_json, folding_table, reported_errors
from facetrail.cli.state import JsonOpt, state
from facetrail.compliance.breach_scope import BreachScope
from facetrail.compliance.breaches import parse_time
from facetrail.compliance.views import breach_view
from facetrail.runtime import local_actor

breach_app = typer.Typer(no_args_is_help=True, help="The breach register (GDPR Art. 33/34), with the 72-hour clock.")
Id = Annotated[int, typer.Argument(help="breach number")]
Text = Annotated[str | None, typer.Option()]
Many = Annotated[list[str] | None, typer.Option()]
Count = Annotated[int | None, typer.Option()]
When = Annotated[str | None, typer.Option(help="ISO 8601 time, e.g. 2026-11-30T14:00Z (UTC if no zone)")]
Sources = Annotated[list[int] | None, typer.Option("--source", help="scope: a source id (repeat); none = all")]
Requests = Annotated[bool, typer.Option("--requests", help="scope: the rights requests received in the range too")]


def _scope(source: list[int] | None, since: str | None, until: str | None, requests: bool) -> BreachScope | None:
    if not source and since is None and until is None and not requests:
        return None
    return BreachScope.of(source or (), parse_time("from", since), parse_time("to", until), requests)


def _print(view: dict[str, Any], as_json: bool) -> None:
    if as_json:
        emit_json(view)
        return
    clock = view["clock"]
    colour = "red" if clock["state"] in ("overdue", "notified late") else "green"
    console.print(f"[bold]breach {view['id']}[/]: {view['title']}", highlight=False)
    console.print(f"  72-hour clock: aware {clock['aware_at']}, due {clock['due_at']}, [{colour}]{clock['state']}[/] "
                  f"({clock['hours_left']} h)", highlight=False)
    for key in ("nature", "data_categories", "subject_categories", "approx_subjects", "approx_records",
                "consequences", "measures", "occurred_at", "scope", "authority", "subjects", "notification_note",
                "closed_at"):
        console.print(f"  [bold]{key:>19}[/]  {view[key]}", highlight=False)
    for update in view.get("history", []):
        console.print(f"  {update['at']}  {update['actor']}: {update['note']}  {sorted(update['changes'])}",
                      highlight=False)


@breach_app.command("add")
def add(ctx: typer.Context, title: Annotated[str, typer.Option()], nature: Annotated[str, typer.Option()],
        data_category: Annotated[list[str], typer.Option(help="category of personal data (repeat)")],
        subject_category: Annotated[list[str], typer.Option(help="category of people (repeat)")],
        consequences: Annotated[str, typer.Option(help="likely consequences")],
        measures: Annotated[str, typer.Option(help="measures taken or proposed")],
        aware_at: When = None, occurred_at: When = None, subjects: Count = None, records: Count = None,
        source: Sources = None, since: Annotated[str | None, typer.Option("--from")] = None,
        until: Annotated[str | None, typer.Option("--to")] = None, requests: Requests = False,
        as_json: JsonOpt = False) -> None:
    """Record a breach; the 72-hour clock runs from the time of awareness (default: now)."""
    with reported_errors(as_json):
        service = state(ctx).open().breaches
        breach = service.add(local_actor(), title=title, nature=nature, data_categories=data_category,
                             subject_categories=subject_category, consequences=consequences, measures=measures,
                             aware_at=aware_at or service.now(), occurred_at=occurred_at, approx_subjects=subjects,
                             approx_records=records, scope=_scope(source, since, until, requests))
        _print(breach_view(breach, service.now()), as_json)


@breach_app.command("update")
def update(ctx: typer.Context, breach_id: Id, note: Annotated[str, typer.Option(help="what this update is")],
           title: Text = None, nature: Text = None, data_category: Many = None, subject_category: Many = None,
           consequences: Text = None, measures: Text = None, aware_at: When = None, occurred_at: When = None,
           subjects: Count = None, records: Count = None,
           authority: Annotated[str | None, typer.Option(help="pending, notified or not_required")] = None,
           authority_notified_at: When = None, authority_reference: Text = None, delay_reasons: Text = None,
           people: Annotated[str | None, typer.Option(help="the people: pending, notified or not_required")] = None,
           people_notified_at: When = None, notification_note: Text = None,
           source: Sources = None, since: Annotated[str | None, typer.Option("--from")] = None,
           until: Annotated[str | None, typer.Option("--to")] = None, requests: Requests = False,
           close: Annotated[bool, typer.Option("--close")] = False, as_json: JsonOpt = False) -> None:
    """A phase of the record: change what is given, keep the rest; the history keeps every phase."""
    given: dict[str, Any] = {
        "title": title, "nature": nature, "data_categories": data_category, "subject_categories": subject_category,
        "consequences": consequences, "measures": measures, "aware_at": aware_at, "occurred_at": occurred_at,
        "approx_subjects": subjects, "approx_records": records, "authority_status": authority,
        "authority_notified_at": authority_notified_at, "authority_reference": authority_reference,
        "delay_reasons": delay_reasons, "subjects_status": people, "subjects_notified_at": people_notified_at,
        "notification_note": notification_note}
    with reported_errors(as_json):
        service = state(ctx).open().breaches
        breach = service.update(local_actor(), breach_id, note=note, scope=_scope(source, since, until, requests),
                                close=close, **{k: v for k, v in given.items() if v is not None})
        _print(breach_view(breach, service.now()), as_json)


@breach_app.command("list")
def list_breaches(ctx: typer.Context, as_json: JsonOpt = False) -> None:
    """Every breach with its clock: overdue notifications stand out."""
    with reported_errors(as_json):
        service = state(ctx).open().breaches
        now: datetime = service.now()
        views = [breach_view(b, now, with_history=False) for b in service.list(local_actor())]
        if as_json:
            emit_json(views)
            return
        table = folding_table("id", "title", "aware, notify by", "clock", "authority, people", "closed")
        for v in views:
            clock = v["clock"]
            colour = "red" if clock["state"] in ("overdue", "notified late") else "default"
            table.add_row(str(v["id"]), v["title"], f"{v['aware_at']}\n{clock['due_at']}",
                          f"[{colour}]{clock['state']} ({clock['hours_left']} h)[/]",
                          f"{v['authority']['status']}\n{v['subjects']['status']}", v["closed_at"] or "")
        console.print(table, highlight=False)


@breach_app.command("show")
def show(ctx: typer.Context, breach_id: Id, as_json: JsonOpt = False) -> None:
    """One breach with its whole history."""
    with reported_errors(as_json):
        service = state(ctx).open().breaches
        _print(breach_view(service.get(local_actor(), breach_id), service.now()), as_json)


@breach_app.command("affected")
def affected(ctx: typer.Context, breach_id: Id, as_json: JsonOpt = False) -> None:
    """The images, faces and requesters in the breach's scope, and what facetrail cannot name."""
    with reported_errors(as_json):
        result = state(ctx).open().breaches.affected(local_actor(), breach_id).as_dict()
        if as_json:
            emit_json(result)
            return
        people = result["estimated_people"]
        console.print(f"{result['images']} images and {result['faces']} faces in scope; {people['clusters']} people "
                      f"clusters, {people['faces_not_clustered']} faces not clustered", highlight=False)
        for source_id, counts in result["by_source"].items():
            console.print(f"  source {source_id}: {counts['images']} images, {counts['faces']} faces", highlight=False)
        for person in result["named_people"]:
            console.print(f"  named by an operator: {person['name']} (person {person['person_id']})", highlight=False)
        for requester in result["requesters"]:
            console.print(f"  requester {requester['email']} (request {requester['request_id']}): {requester['why']}",
                          highlight=False)
        console.print(result["cannot_name"], highlight=False)
