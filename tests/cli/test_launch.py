"""The `facetrail` command's entry point: the command line imported with the garbage collector paused, its objects
frozen, the collector on again for the command itself, whatever happens; `facetrail ingest`'s vision processes
started before that import and taken over by the ingestion, or stopped when none comes."""

from __future__ import annotations

import gc
import json
import os
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest

from facetrail.cli import launch
from tests.conftest import SAMPLES

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


@pytest.mark.parametrize(("args", "rest"), [
    (["ingest", "--source", "1", "a.jpg"], ["--source", "1", "a.jpg"]),
    (["--data", "d", "ingest", "a.jpg"], ["a.jpg"]),
    (["--data=d", "ingest"], []),
    (["search", "ingest"], None),  # a search for a photo named "ingest"
    (["ingest-urls", "--source", "1"], None),
    (["--data", "ingest"], None),  # "ingest" is the data directory here
    ([], None),
])
def test_the_ingest_command_is_recognised_before_the_command_line_is_imported(args: list[str],
                                                                               rest: list[str] | None) -> None:
    assert launch.ingest_arguments(args) == rest


@pytest.mark.parametrize(("args", "workers"), [
    (["--workers", "3", "a.jpg"], 3), (["--workers=4"], 4), (["a.jpg"], None), (["--workers", "x"], 0),
    (["--workers", "0"], 0), (["--workers"], 0), (["--workers=-1"], -1),
    (["--workers", "2", "--workers", "1"], 1),  # the last one counts, as for the command line
])
def test_the_ingest_commands_workers_are_read_as_the_command_line_reads_them(args: list[str],
                                                                              workers: int | None) -> None:
    assert launch.requested_workers(args) == workers


INGEST_PROBE = """
import json, os, signal, sys
from facetrail.ingest import workers
seen = {}
prestart, take = workers.prestart, workers._take_prestarted

def recording_prestart(config, count):
    seen["command_line_imported"] = "facetrail.cli.main" in sys.modules
    prestart(config, count)
    seen["pids"] = sorted(workers._Prestarted.pool._processes)
    if os.environ.get("PROBE_SIGTERM"):  # as if the command were stopped while it starts
        os.kill(os.getpid(), signal.SIGTERM)

def recording_take(*shape):
    pool = take(*shape)
    seen["taken"] = pool is not None
    return pool

workers.prestart, workers._take_prestarted = recording_prestart, recording_take
from facetrail.cli import launch
sys.argv = ["facetrail", *sys.argv[1:]]
try:
    launch.main()
except SystemExit as exit:
    seen["code"] = exit.code
seen["alive_after"] = [p for p in seen.get("pids", []) if os.path.exists(f"/proc/{p}")]
seen["faiss_imported"] = "faiss" in sys.modules
print(json.dumps(seen))
"""


def _probe(*args: str, env: dict[str, str]) -> dict[str, object]:
    proc = subprocess.run([sys.executable, "-c", INGEST_PROBE, *args], capture_output=True, text=True,
                          timeout=300, env=env)
    seen = json.loads(proc.stdout.splitlines()[-1]) if proc.stdout else {}
    return {**seen, "stderr": proc.stderr}


def test_ingest_starts_its_vision_process_before_the_command_line_and_uses_it(tmp_path: Path) -> None:
    env = {**os.environ, "FACETRAIL_DATA": str(tmp_path / "data"), "FACETRAIL_WORKERS": "2"}
    env.pop("FACETRAIL_QUEUE_URL", None)
    subprocess.run([sys.executable, "-m", "facetrail.cli", "init"], env=env, check=True, capture_output=True)
    source = subprocess.run([sys.executable, "-m", "facetrail.cli", "source", "add", "--name", "s", "--controller",
                             "c", "--purpose", "investigation", "--basis", "public_task", "--art9", "g", "--evidence",
                             "e", "--jurisdiction", "US", "--retention-days", "30", "--json"],
                            env=env, check=True, capture_output=True, text=True)
    source_id = str(json.loads(source.stdout)["id"])
    photos = [str(SAMPLES / "obama.jpg"), str(SAMPLES / "two_people.jpg")]
    seen = _probe("ingest", "--source", source_id, *photos, "--json", env=env)
    assert seen["code"] == 0, seen
    assert seen["command_line_imported"] is False  # started before the import
    assert seen["taken"] is True  # and the ingestion analysed in it
    assert len(seen["pids"]) == 1 and seen["alive_after"] == []  # type: ignore[arg-type]
    # Adding to a small (exact) gallery never calls FAISS, so the command does not pay for its import.
    assert seen["faiss_imported"] is False

    # A command that ends before it ingests (no such source) stops what it started.
    seen = _probe("ingest", "--source", "999", *photos, env=env)
    assert seen["code"] not in (0, None) and "taken" not in seen
    assert len(seen["pids"]) == 1 and seen["alive_after"] == []  # type: ignore[arg-type]

    # One worker analyses in the command's own process, and the last --workers counts: nothing is started ahead.
    seen = _probe("ingest", "--source", source_id, "--workers", "2", "--workers", "1", *photos, env=env)
    assert seen["code"] == 0 and "pids" not in seen and "taken" not in seen

    # Nor for more analyses at once than there are cores: each would load its models whether needed or not.
    seen = _probe("ingest", "--source", source_id, "--workers", str((os.cpu_count() or 1) + 1), *photos, env=env)
    assert seen["code"] == 0 and "pids" not in seen

    # SIGTERM while the command starts: it ends as SIGTERM ends a command (128 + 15), its processes stopped, and
    # without the resource tracker's warning of semaphores left behind.
    seen = _probe("ingest", "--source", source_id, *photos, env={**env, "PROBE_SIGTERM": "1"})
    assert seen["code"] == 143 and seen["command_line_imported"] is False, seen
    assert len(seen["pids"]) == 1 and seen["alive_after"] == []  # type: ignore[arg-type]
    assert "leaked" not in str(seen["stderr"])
