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
ingest command's own `--workers` and `--queue` are read for that. It is done for as many analyses at once as there
are cores (the default) or fewer, not for more: each is a process or a thread with models of its own, loaded ahead
whether the batch needs it or not. A guess that turns out wrong (a command that ends before it ingests) costs
processes started for nothing, stopped when the command ends, also by SIGTERM meanwhile.
"""

from __future__ import annotations

import gc
import os
import signal
import sys
from types import FrameType


def main() -> None:
    try:
        gc.disable()
        try:
            _start_vision_early(sys.argv[1:])
            from facetrail.cli.main import main as run_command_line
        finally:
            gc.freeze()
            gc.enable()
        run_command_line()
    finally:  # also when the import failed or was interrupted (Ctrl-C), even inside the prestart
        workers = sys.modules.get("facetrail.ingest.workers")
        if workers is not None:
            workers.discard_prestarted()


def ingest_arguments(args: list[str]) -> list[str] | None:
    """The arguments after the command when the command is `ingest` (`--data DIR` may come before it), else None."""
    i = 0
    while i < len(args) and args[i].startswith("--data"):
        i += 1 if args[i].startswith("--data=") else 2
    return args[i + 1:] if i < len(args) and args[i] == "ingest" else None


def requested_workers(args: list[str]) -> int | None:
    """The ingest command's `--workers` as the command line will read it (the last one given); None when it is not
    given, 0 when it is not a number (the command refuses it)."""
    value = None
    for i, arg in enumerate(args):
        if arg.startswith("--workers="):
            value = arg.removeprefix("--workers=")
        elif arg == "--workers":
            value = args[i + 1] if i + 1 < len(args) else ""
    if value is None:
        return None
    try:
        return int(value)
    except ValueError:
        return 0


def _start_vision_early(args: list[str]) -> None:
    """Start the vision processes of the `facetrail ingest` about to run, when it will analyse in them (not with
    one worker, nor through a queue, nor for --help), as many analyses at once as there are cores or fewer."""
    rest = ingest_arguments(args)
    if rest is None or any(a in ("--help", "--queue") or a.startswith("--queue=") for a in rest):
        return
    try:
        from facetrail.config import get_settings
        from facetrail.ingest.analysis import vision_config
        from facetrail.ingest.workers import prestart

        settings = get_settings()
        requested = requested_workers(rest)
        workers = settings.worker_count() if requested is None else requested
        if settings.queue_url or not 1 < workers <= (os.cpu_count() or 1):
            return
        if signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
            signal.signal(signal.SIGTERM, _exit_on_sigterm)  # the ingestion's own handler replaces it meanwhile
        prestart(vision_config(settings), workers)
    except Exception:  # noqa: S110 - an invalid setting, say: the command reports it as it reads the settings again
        pass


def _exit_on_sigterm(signum: int, _frame: FrameType | None) -> None:
    """SIGTERM before the ingestion's own handler is set: end the command through `main`'s clean-up, so that the
    prestarted processes are stopped (killed with it, they would exit too, but the multiprocessing resource tracker
    would warn of the semaphores it was left with)."""
    raise SystemExit(128 + signum)
