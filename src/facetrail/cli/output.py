"""Printing results: Rich for people, JSON for programs, one error format for both."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from facetrail.errors import FacetrailError, InvalidValueError
from facetrail.timestamps import iso_z

console = Console()
err_console = Console(stderr=True)


def emit_json(value: Any) -> None:
    sys.stdout.write(json.dumps(value, indent=2, default=_plain) + "\n")


def _plain(value: object) -> str:
    return iso_z(value) if isinstance(value, datetime) else str(value)


def when(value: datetime | None, empty: str = "") -> str:
    """A time in a table cell: the one format (ISO 8601, UTC, `Z`)."""
    return empty if value is None else iso_z(value)


def folding_table(*headers: str, **options: Any) -> Table:
    """A table whose cells fold at the terminal's width (80 columns without one) and are never cut short."""
    made = Table(*headers, **options)
    for column in made.columns:
        column.overflow = "fold"
    return made


def field_table(fields: dict[str, Any]) -> Table:
    """One object as a two-column table, for the status commands."""
    shown = folding_table("field", "value", show_header=False)
    for name, value in fields.items():
        shown.add_row(name, _cell(value))
    return shown


def _cell(value: object) -> str:
    if isinstance(value, list):
        return ", ".join(map(str, value))
    if isinstance(value, datetime):
        return iso_z(value)
    return "" if value is None else str(value)


@contextmanager
def reported_errors(as_json: bool) -> Iterator[None]:
    """Turn a FacetrailError into a message (or a JSON error object) and exit code 1 (2 for bad input)."""
    try:
        yield
    except FacetrailError as exc:
        code = 2 if isinstance(exc, InvalidValueError) else 1
        if as_json:
            body: dict[str, Any] = {"error": type(exc).__name__, "detail": str(exc)}
            if isinstance(exc, InvalidValueError):
                body["field"] = exc.field
            emit_json(body)
        else:
            # Never folded by Rich: a path or a command in the message must stay whole to be copied.
            err_console.print(f"[bold red]error:[/] {exc}", highlight=False, soft_wrap=True)
        raise typer.Exit(code) from None


@contextmanager
def video_progress(service: Any, enabled: bool) -> Iterator[None]:
    """While `service` (an IngestService) ingests: a Rich line per video, frames decoded of those expected, with
    the faces and tracks found so far."""
    if not enabled:
        yield
        return
    with Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                  TextColumn("{task.fields[found]}"), console=err_console, transient=False) as bar:
        tasks: dict[str, Any] = {}

        def update(p: Any) -> None:
            if p.name not in tasks:
                tasks[p.name] = bar.add_task(f"video {Path(p.name).name}", total=p.frames_total, found="")
            bar.update(tasks[p.name], completed=p.frames_done, total=p.frames_total,
                       found=f"{p.faces} face(s), {p.tracks} track(s)")

        service.video_progress = update
        try:
            yield
        finally:
            service.video_progress = None


@contextmanager
def progress_bar(label: str, enabled: bool) -> Iterator[Callable[[int, int], None]]:
    """A Rich progress bar; yields the callback the services call with (done, total)."""
    if not enabled:
        yield lambda _done, _total: None
        return
    with Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                  TimeRemainingColumn(), console=err_console, transient=False) as bar:
        task = bar.add_task(label, total=None)

        def update(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total or None)  # 0: not known

        yield update
