"""`facetrail people`: group faces into identities, then name, merge and split them."""

from __future__ import annotations

from typing import Annotated

import typer

from facetrail.cli.output import console, emit_json, folding_table, reported_errors, when
from facetrail.cli.state import JsonOpt, state
from facetrail.people.views import PersonSummary
from facetrail.runtime import local_actor

people_app = typer.Typer(no_args_is_help=True, help="People: faces grouped into identities (operator).")

SourceOpt = Annotated[int | None, typer.Option("--source", help="only this source [default: every source]")]


def _print_people(people: list[PersonSummary]) -> None:
    table = folding_table("id", "name", "faces", "face", "source", "updated")
    for p in people:
        table.add_row(str(p.id), p.name or "", str(p.faces), str(p.face_id or ""), str(p.source_id),
                      when(p.updated_at))
    console.print(table)


@people_app.command("cluster")
def people_cluster(ctx: typer.Context, source: SourceOpt = None, as_json: JsonOpt = False) -> None:
    """Place every face that has no person yet: it joins a person or starts a new one."""
    with reported_errors(as_json):
        report = state(ctx).open().people.cluster(local_actor(), source_id=source)
        body = {"faces": report.faces, "joined": report.joined, "people_created": report.people_created,
                "sources": report.sources, "threshold": round(report.threshold, 4)}
        if as_json:
            emit_json(body)
        else:
            console.print(f"{report.faces} face(s) placed: {report.joined} joined existing people, "
                          f"{report.people_created} new people (distance threshold {report.threshold:.3f})")


@people_app.command("list")
def people_list(ctx: typer.Context, source: SourceOpt = None, as_json: JsonOpt = False) -> None:
    """List people, most faces first, with a representative face."""
    with reported_errors(as_json):
        people = state(ctx).open().people.list(local_actor(), source_id=source)
        if as_json:
            emit_json([p.as_dict() for p in people])
        else:
            _print_people(people)


@people_app.command("show")
def people_show(ctx: typer.Context, person: Annotated[int, typer.Argument(help="person id")],
                as_json: JsonOpt = False) -> None:
    """Show one person's faces and the images they are in."""
    with reported_errors(as_json):
        detail = state(ctx).open().people.show(local_actor(), person)
        if as_json:
            emit_json(detail.as_dict())
            return
        p = detail.person
        console.print(f"person [bold]{p.id}[/] {p.name or '(unnamed)'}: {p.faces} face(s) in source {p.source_id}",
                      highlight=False)
        table = folding_table("face", "image", "original", "box", "size")
        for f in detail.faces:
            b = f.box
            table.add_row(str(f.face_id), str(f.image_id), f.original_name, f"{b.left},{b.top},{b.right},{b.bottom}",
                          f"{f.size_px}px")
        console.print(table)


@people_app.command("name")
def people_name(ctx: typer.Context, person: Annotated[int, typer.Argument(help="person id")],
                name: Annotated[str, typer.Argument(help="the name to show; an empty string clears it")],
                as_json: JsonOpt = False) -> None:
    """Name a person (the audit log records that a name was set, not the name)."""
    with reported_errors(as_json):
        summary = state(ctx).open().people.name(local_actor(), person, name)
        if as_json:
            emit_json(summary.as_dict())
        else:
            console.print(f"person {summary.id} is now {summary.name or '(unnamed)'}", highlight=False)


@people_app.command("merge")
def people_merge(ctx: typer.Context, into: Annotated[int, typer.Argument(help="the person who stays")],
                 others: Annotated[list[int], typer.Argument(help="people merged into it (then deleted)")],
                 as_json: JsonOpt = False) -> None:
    """Merge people who are the same identity into one."""
    with reported_errors(as_json):
        summary = state(ctx).open().people.merge(local_actor(), into, others)
        if as_json:
            emit_json(summary.as_dict())
        else:
            console.print(f"person {summary.id} now has {summary.faces} face(s)")


@people_app.command("split")
def people_split(ctx: typer.Context, person: Annotated[int, typer.Argument(help="person id")],
                 faces: Annotated[list[int], typer.Argument(help="ids of the faces that go to a new person")],
                 as_json: JsonOpt = False) -> None:
    """Move some faces of a person to a new person."""
    with reported_errors(as_json):
        created = state(ctx).open().people.split(local_actor(), person, faces)
        if as_json:
            emit_json(created.as_dict())
        else:
            console.print(f"new person {created.id} with {created.faces} face(s)")
