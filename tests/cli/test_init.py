"""Only `facetrail init` (and the demo, in its own directory) creates a data directory; `--data` goes anywhere."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from facetrail.cli.main import app
from facetrail.cli.state import hoist_data_option
from facetrail.runtime import Facetrail
from tests.cli.test_cli import SOURCE, init, run, run_json

runner = CliRunner()


@pytest.mark.parametrize("command", [
    ["audit", "verify"], ["audit", "list"], ["source", "list"], SOURCE, ["user", "add", "ivy", "--role", "auditor"],
    ["ingest", "--source", "1", "photos/"], ["search", "q.jpg", "--purpose", "p", "--case", "c"],
    ["index", "status"], ["keys", "status"], ["keys", "rotate"], ["backup", "create", "b.tar"],
    ["backup", "restore", "b.tar"], ["people", "list"], ["request", "list"], ["serve", "--port", "0"],
])
def test_a_mistyped_data_path_fails_and_creates_nothing(tmp_path: Path, command: list[str]) -> None:
    (tmp_path / "b.tar").write_bytes(b"not a backup")
    command = [str(tmp_path / "b.tar") if arg == "b.tar" else arg for arg in command]
    missing = tmp_path / "facetrial-data"  # the typo
    for as_json in (False, True):
        result = runner.invoke(app, ["--data", str(missing), *command, *(["--json"] if as_json else [])])
        assert result.exit_code == 1, result.output
        assert f"no facetrail data directory at {missing}" in result.output
    assert not missing.exists()


def test_an_empty_existing_directory_is_not_a_data_directory(tmp_path: Path) -> None:
    code, output = run(tmp_path, "audit", "verify")
    assert code == 1 and "no facetrail data directory" in output and "intact" not in output
    assert list(tmp_path.iterdir()) == []


def test_init_creates_once_then_says_so(tmp_path: Path) -> None:
    data = init(tmp_path / "new" / "data")
    assert (data / "facetrail.db").exists() and (data / "keys" / "master.key").exists()
    key = (data / "keys" / "master.key").read_bytes()
    again = run_json(data, "init")
    assert isinstance(again, dict) and again["created"] is False
    assert (data / "keys" / "master.key").read_bytes() == key  # never a second master key
    code, output = run(data, "init")
    assert code == 0 and "already" in output
    entries = run_json(data, "audit", "list")
    assert isinstance(entries, list) and [e["action"] for e in entries] == ["data.create"]
    assert run_json(data, "audit", "verify")["ok"] is True  # type: ignore[index]


def test_init_refuses_a_directory_holding_something_else(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("mine")
    code, output = run(tmp_path, "init")
    assert code == 2 and "not empty" in output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]


def test_the_python_api_creates_only_when_asked(tmp_path: Path) -> None:
    from facetrail.datadir import NoDataDirectoryError

    with pytest.raises(NoDataDirectoryError, match="no facetrail data directory at"):
        Facetrail.open(tmp_path / "data")
    assert not (tmp_path / "data").exists()
    Facetrail.open(tmp_path / "data", create=True).close()
    Facetrail.open(tmp_path / "data").close()


def test_data_is_accepted_after_the_command(tmp_path: Path) -> None:
    data = init(tmp_path / "data")
    for args in (["source", "list", "--data", str(data), "--json"], ["source", "list", f"--data={data}", "--json"],
                 ["source", "--data", str(data), "list", "--json"], [*SOURCE, "--data", str(data), "--json"]):
        result = runner.invoke(app, args)
        assert result.exit_code == 0, (args, result.output)
    listed = json.loads(runner.invoke(app, ["source", "list", "--json", "--data", str(data)]).output)
    assert [s["name"] for s in listed] == ["club"]
    # The one after the command wins over the one before it, as a repeated option does.
    other = tmp_path / "other"
    result = runner.invoke(app, ["--data", str(other), "source", "list", "--data", str(data), "--json"])
    assert result.exit_code == 0 and not other.exists()


def test_only_data_before_a_double_dash_is_moved() -> None:
    assert hoist_data_option(["a", "--data", "x", "b", "--data=y", "--", "--data", "z"]) == [
        "--data", "x", "--data=y", "a", "b", "--", "--data", "z"]
    result = runner.invoke(app, ["source", "list", "--data"])
    assert result.exit_code == 2 and "requires an argument" in result.output, result.output
