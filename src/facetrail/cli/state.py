"""What every command shares: the data directory and the lazily opened Facetrail."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

import typer
from typer.core import TyperGroup

from facetrail.runtime import Facetrail

JsonOpt = Annotated[bool, typer.Option("--json", help="machine-readable JSON output")]


@dataclass
class AppState:
    data: Path | None
    _ft: Facetrail | None = field(default=None, repr=False)

    def open(self, *, create: bool = False, model_change: bool = False, **overrides: object) -> Facetrail:
        """The data directory, opened once per command; only `create` may make a new one (`model_change`: even
        if its faces are all of another vision model, to count or re-embed them)."""
        if self._ft is None:
            self._ft = Facetrail.open(self.data, create=create, model_change=model_change, **overrides)
        return self._ft

    def close(self) -> None:
        """Save the index and let go of the data directory when the command is done."""
        if self._ft is not None:
            ft, self._ft = self._ft, None
            ft.close()


class DataOptionAnywhere(TyperGroup):
    """The root command, whose `--data PATH` (or `--data=PATH`) may also come after the command
    (`facetrail source list --data X`): it is moved in front before the line is parsed, so that one option
    serves every command. Nothing after `--` is moved."""

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        return super().parse_args(ctx, hoist_data_option(args))


def hoist_data_option(args: list[str]) -> list[str]:
    moved: list[str] = []
    rest: list[str] = []
    i = 0
    while i < len(args):
        arg = args[i]
        if arg == "--":
            rest.extend(args[i:])
            break
        if arg == "--data":
            if i + 1 == len(args):
                raise typer.BadParameter("requires an argument: the data directory", param_hint="'--data'")
            moved += args[i:i + 2]
            i += 2
            continue
        if arg.startswith("--data="):
            moved.append(arg)
        else:
            rest.append(arg)
        i += 1
    return moved + rest


def state(ctx: typer.Context) -> AppState:
    obj = ctx.find_root().obj
    assert isinstance(obj, AppState)
    return obj
