"""`facetrail request ...`: the DPO's queue of data-subject requests and the actions on them."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Annotated, Any

import typer

from facetrail.cli.output import console, emit_json, err_console, folding_table, reported_errors, when
from facetrail.cli.state import JsonOpt, state
from facetrail.rights.views import dpo_view, evidence_sheet, evidence_view
from facetrail.runtime import Facetrail, local_actor

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
def show(ctx: typer.Context, request_id: Id, as_json: JsonOpt = False,
         evidence_dir: Annotated[Path | None, typer.Option("--evidence", help="write the identity evidence "
                                                          "(key frames, matched faces, documents, sheet.jpg) "
                                                          "into this folder")] = None) -> None:
    """One request with its whole history (and, with --evidence, what the DPO judges identity on)."""
    with reported_errors(as_json):
        if evidence_dir is not None:
            _write_evidence(ctx, request_id, evidence_dir, as_json)
            if as_json:
                return  # one JSON document: the evidence, with the files written
        _show(ctx, request_id, as_json)


def _write_evidence(ctx: typer.Context, request_id: str, folder: Path, as_json: bool) -> None:
    """The evidence as files side by side: frames, matched faces' crops, documents, one sheet and a JSON."""
    ft = state(ctx).open()
    view = evidence_view(ft.requests, ft.requests.evidence_of(local_actor(), request_id))
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    if view["key_frames"] or view["matches"]:
        (folder / "sheet.jpg").write_bytes(evidence_sheet(view))
        written.append(str(folder / "sheet.jpg"))
    for index, frame in enumerate(view["key_frames"]):
        written.append(_write(folder / f"frame-{index}-{frame['pose']}.jpg", frame.pop("jpeg_base64")))
    for match in view["matches"]:
        crop = match.pop("crop_base64")
        if crop:
            written.append(_write(folder / f"face-{match['face_id']}-{match['band']}.jpg", crop))
    for index, document in enumerate(view["documents"]):
        written.append(_write(folder / f"document-{index}{Path(document['name']).suffix[:10]}",
                              document.pop("data_base64")))
    (folder / "evidence.json").write_text(json.dumps(view, indent=2))
    if as_json:
        emit_json({**view, "files": written})
    else:
        console.print(f"evidence of {request_id} written to {folder}: {len(written)} file(s)", highlight=False)


def _write(path: Path, data_base64: str) -> str:
    path.write_bytes(base64.b64decode(data_base64))
    return str(path)


def _act(ctx: typer.Context, request_id: str, as_json: bool, action: Any) -> None:
    with reported_errors(as_json):
        action(state(ctx).open().requests, local_actor())
        _show(ctx, request_id, as_json)


@request_app.command("verify")
def verify(ctx: typer.Context, request_id: Id, as_json: JsonOpt = False) -> None:
    """Require a manual identity check by the DPO before anything is disclosed."""
    _act(ctx, request_id, as_json, lambda s, a: s.require_manual_check(a, request_id))


@request_app.command("approve")
def approve(ctx: typer.Context, request_id: Id, reason: Annotated[str, typer.Option(help="what the identity "
                                                                                  "was judged on")],
            as_json: JsonOpt = False) -> None:
    """The DPO judged the evidence (`show --evidence`) and approves the requester's identity."""
    _act(ctx, request_id, as_json, lambda s, a: s.approve(a, request_id, reason))


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


@request_app.command("policy")
def policy(ctx: typer.Context, purpose: Annotated[str, typer.Argument(help="the search purpose")],
           withhold: Annotated[bool, typer.Option("--withhold/--disclose", help="withhold or disclose the case "
                                                  "references of searches for this purpose")] = False,
           ground: Annotated[str, typer.Option(help="the legal ground for withholding (e.g. the Art. 23 "
                                              "restriction in the law that applies)")] = "",
           as_json: JsonOpt = False) -> None:
    """Set whether access packages name the case references of searches made for a purpose."""
    with reported_errors(as_json):
        ft = state(ctx).open()
        ft.disclosure.set(local_actor(), purpose, "withhold" if withhold else "disclose", ground)
        _policies(ft, as_json)


@request_app.command("policies")
def policies(ctx: typer.Context, as_json: JsonOpt = False) -> None:
    """The per-purpose disclosure policy of case references in access packages (no entry: disclosed)."""
    with reported_errors(as_json):
        _policies(state(ctx).open(), as_json)


def _policies(ft: Facetrail, as_json: bool) -> None:
    rows = [{"purpose": p.purpose, "case_refs": p.case_refs, "legal_ground": p.legal_ground, "set_by": p.set_by,
             "set_at": when(p.set_at)} for p in ft.disclosure.list(local_actor())]
    if as_json:
        emit_json(rows)
        return
    table = folding_table("purpose", "case references", "legal ground", "set by", "set at")
    for row in rows:
        table.add_row(row["purpose"], row["case_refs"], row["legal_ground"], row["set_by"], row["set_at"])
    console.print(table)
