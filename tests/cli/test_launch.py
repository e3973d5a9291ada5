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
sys.argv = ["facetrail", "--help"]
try:
    launch.main()
except SystemExit as exit:
    code = exit.code
class Cycle:
    pass
a, b = Cycle(), Cycle()
a.other, b.other = b, a
del a, b
print(json.dumps({"code": code, "enabled": gc.isenabled(), "frozen": gc.get_freeze_count(),
                  "collected": gc.collect(), "imported": "facetrail.cli.main" in sys.modules}))
"""


def test_the_installed_command_is_the_launcher() -> None:
    (script,) = [e for e in metadata.entry_points(group="console_scripts") if e.name == "facetrail"]
    assert script.value == "facetrail.cli.launch:main"


def test_the_command_line_runs_with_its_imports_frozen_and_the_collector_on() -> None:
    proc = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    seen = json.loads(proc.stdout.splitlines()[-1])
    assert seen["code"] == 0 and seen["imported"]
    assert seen["enabled"]  # the command's own garbage is collected as usual...
    assert seen["collected"] >= 2  # ...a cycle made after the imports among it
    assert seen["frozen"] > 100_000  # the command line's objects: some 220,000


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
