"""The `facetrail` command's entry point: the command line imported with the garbage collector paused, its objects
frozen, the collector on again for the command itself, whatever happens."""

from __future__ import annotations

import gc
import json
import subprocess
import sys
from importlib import metadata

import pytest

from facetrail.cli import launch

PROBE = """
import gc, json, sys
from facetrail.cli import launch
starts = []  # from here on, the freeze count at the start of each collection
gc.callbacks.append(lambda phase, info: starts.append(gc.get_freeze_count()) if phase == "start" else None)
sys.argv = ["facetrail", "--help"]
try:
    launch.main()
except SystemExit as exit:
    code = exit.code
made_before = len(starts)
garbage = [[i] for i in range(100_000)]  # enough new objects for the collector to run by itself
print(json.dumps({"code": code, "enabled": gc.isenabled(), "frozen": gc.get_freeze_count(),
                  "during_imports": sum(1 for frozen in starts if frozen == 0),
                  "after": len(starts) - made_before, "imported": "facetrail.cli.main" in sys.modules}))
"""


def test_the_installed_command_is_the_launcher() -> None:
    (script,) = [e for e in metadata.entry_points(group="console_scripts") if e.name == "facetrail"]
    assert script.value == "facetrail.cli.launch:main"


def test_the_command_line_runs_with_its_imports_frozen_and_the_collector_on() -> None:
    proc = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    seen = json.loads(proc.stdout.splitlines()[-1])
    assert seen["code"] == 0 and seen["imported"]
    assert seen["during_imports"] == 0  # the collector never ran while the command line was imported
    assert seen["frozen"] > 100_000  # the command line's objects: some 220,000, frozen then
    assert seen["enabled"] and seen["after"] > 0  # and it runs by itself again for the command


def test_python_m_runs_the_same_command_line() -> None:
    proc = subprocess.run([sys.executable, "-m", "facetrail.cli", "--help"], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0 and "ingest" in proc.stdout, proc.stderr


def test_the_collector_is_on_again_when_the_command_line_fails_to_import(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "facetrail.cli.main", None)  # importing it raises ImportError
    try:
        with pytest.raises(ImportError):
            launch.main()
        assert gc.isenabled()
    finally:
        gc.unfreeze()
        gc.enable()
