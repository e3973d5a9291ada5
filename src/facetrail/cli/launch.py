"""The `facetrail` command's entry point: the command line imported with the garbage collector paused, and an
ingestion's vision processes started before it.

Importing the command line creates some 220,000 objects that the collector tracks (SQLAlchemy's models, pydantic's
settings, Typer's commands), nearly all of which live as long as the process. Left on, the collector traverses them
again and again while they are created, and once more as the interpreter exits: about a third of a short command's
time (measured: 1.17 s to import the command line and exit, 0.77 s with the collector paused during the imports and
the objects they made frozen). Reference counting still frees frozen objects; the cycle collector skips them, so
the few that were already cyclic garbage stay in memory (about half a MiB). What the command creates afterwards is
collected as usual.

`facetrail ingest` analyses its photos in vision processes, which take about half a second to start and load their
models. They are started first (ingest/workers.py `prestart`), so that they do it while this process imports the
command line on the other core, instead of after it; the ingestion then takes them over. Only the settings and the
ingest command's own `--workers` and `--queue` are read for that, and a guess that turns out wrong (an invalid
option, a command that ends before it ingests) costs a process started for nothing, stopped when the command ends.
"""

from __future__ import annotations

import gc
import sys


def main() -> None:
    started = False
    try:
        gc.disable()
        try:
            started = _start_vision_early(sys.argv[1:])
            from facetrail.cli.main import main as run_command_line
        finally:
            gc.freeze()
            gc.enable()
        run_command_line()
    finally:  # also when the import failed or was interrupted (Ctrl-C)
        if started:
            from facetrail.ingest.workers import discard_prestarted

            discard_prestarted()


def ingest_arguments(args: list[str]) -> list[str] | None:
    """The arguments after the command when the command is `ingest` (`--data DIR` may come before it), else None."""
    i = 0
    while i < len(args) and args[i].startswith("--data"):
        i += 1 if args[i].startswith("--data=") else 2
    return args[i + 1:] if i < len(args) and args[i] == "ingest" else None


def requested_workers(args: list[str]) -> int | None:
    """The ingest command's `--workers N`, when given as a positive number."""
    for i, arg in enumerate(args):
        value = arg.removeprefix("--workers=") if arg.startswith("--workers=") else (
            args[i + 1] if arg == "--workers" and i + 1 < len(args) else None)
        if value is not None:
            return int(value) if value.isdigit() and int(value) > 0 else None
    return None


def _start_vision_early(args: list[str]) -> bool:
    """Start the vision processes of the `facetrail ingest` about to run, when it will analyse in them (not with
    one worker, nor through a queue, nor for --help); whether they were started."""
    rest = ingest_arguments(args)
    if rest is None or any(a in ("--help", "--queue") or a.startswith("--queue=") for a in rest):
        return False
    try:
        from facetrail.config import get_settings
        from facetrail.ingest.analysis import vision_config
        from facetrail.ingest.workers import prestart

        settings = get_settings()
        workers = requested_workers(rest) or settings.worker_count()
        if settings.queue_url or workers <= 1:
            return False
        prestart(vision_config(settings), workers)
        return True
    except Exception:  # an invalid setting, say: the command itself reports it as it reads the settings again
        return False
