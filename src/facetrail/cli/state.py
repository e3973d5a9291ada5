"""What every command shares: the data directory and the lazily opened Facetrail."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated

import typer

from facetrail.runtime import Facetrail

JsonOpt = Annotated[bool, typer.Option("--json", help="machine-readable JSON output")]


@dataclass
class AppState:
    data: Path | None
    _ft: Facetrail | None = field(default=None, repr=False)

    def open(self, **overrides: object) -> Facetrail:
        if self._ft is None:
            self._ft = Facetrail.open(self.data, **overrides)
        return self._ft

    def close(self) -> None:
        """Save the index and let go of the data directory when the command is done."""
        if self._ft is not None:
            ft, self._ft = self._ft, None
            ft.close()


def state(ctx: typer.Context) -> AppState:
    obj = ctx.find_root().obj
    assert isinstance(obj, AppState)
    return obj
