"""The command line: every command's --json, clear errors naming fields, exit codes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from facetrail.cli.main import app
from tests.conftest import SAMPLES

runner = CliRunner()
SOURCE = ["source", "add", "--name", "club", "--controller", "Sports Club", "--purpose", "find-my-photos",
          "--purpose", "press", "--basis", "consent", "--art9", "a", "--evidence", "forms/2026",
          "--jurisdiction", "FR", "--retention-days", "365", "--description", "club events"]


def init(data: Path) -> Path:
    """A new data directory, made the one way there is: `facetrail init`."""
    result = runner.invoke(app, ["init", "--data", str(data), "--json"])
    assert result.exit_code == 0 and json.loads(result.output)["created"] is True, result.output
    return data


@pytest.fixture
def store(tmp_path: Path) -> Path:
    return init(tmp_path / "data")


def run(data: Path, *args: str) -> tuple[int, str]:
    result = runner.invoke(app, ["--data", str(data), *args])
    return result.exit_code, result.output


def run_json(data: Path, *args: str) -> object:
    code, output = run(data, *args, "--json")
    assert code == 0, output
    return json.loads(output)


def test_source_commands(store: Path) -> None:
    added = run_json(store, *SOURCE)
    assert isinstance(added, dict) and added["purposes"] == ["find-my-photos", "press"]
    assert run_json(store, "source", "list")[0]["name"] == "club"  # type: ignore[index]
    assert run_json(store, "source", "show", "1")["art9_condition"] == "a"  # type: ignore[index]
    code, output = run(store, "source", "show", "2")
    assert code == 1 and "not registered" in output


@pytest.mark.parametrize("flag,value,field", [
    ("--art9", "x", "art9_condition"),
    ("--basis", "we-want-to", "legal_basis"),
    ("--jurisdiction", "Europe", "jurisdictions"),
    ("--retention-days", "0", "retention_days"),
])
def test_invalid_source_values_name_the_field(store: Path, flag: str, value: str, field: str) -> None:
    args = list(SOURCE)
    args[args.index(flag) + 1] = value
    code, output = run(store, *args)
    assert code == 2 and field in output
    error = run(store, *args, "--json")[1]
    assert json.loads(error)["field"] == field


def test_ingest_search_and_audit(store: Path) -> None:
    run_json(store, *SOURCE)
    report = run_json(store, "ingest", "--source", "1", "--workers", "1", str(SAMPLES / "obama.jpg"),
                      str(SAMPLES / "biden.jpg"), str(SAMPLES / "labels.tsv"))
    assert isinstance(report, dict) and report["images_added"] == 2 and len(report["errors"]) == 1
    outcome = run_json(store, "search", str(SAMPLES / "obama2.jpg"), "--purpose", "press", "--case", "k-1")
    assert isinstance(outcome, dict) and "obama.jpg" in outcome["results"][0]["original_name"]
    code, output = run(store, "search", str(SAMPLES / "obama2.jpg"), "--purpose", "press", "--case", "k-1")
    assert code == 0 and "obama.jpg" in output
    entries = run_json(store, "audit", "list")
    assert isinstance(entries, list) and [e["action"] for e in entries] == [
        "data.create", "source.add", "ingest.start", "ingest.finish", "search", "search"]
    assert entries[0]["actor"].startswith("local:")
    assert run_json(store, "audit", "verify")["ok"] is True  # type: ignore[index]
    assert run_json(store, "index", "rebuild")["faces"] == 2  # type: ignore[index]
    assert run_json(store, "index", "status")["faces"] == 2  # type: ignore[index]


def test_ingest_into_missing_source_fails_clearly(store: Path) -> None:
    code, output = run(store, "ingest", "--source", "7", str(SAMPLES / "obama.jpg"))
    assert code == 1 and "source 7 is not registered" in output


def test_search_with_missing_photo_names_it(store: Path) -> None:
    run_json(store, *SOURCE)
    code, output = run(store, "search", str(store / "nope.jpg"), "--purpose", "press", "--case", "c")
    assert code == 1 and "nope.jpg" in output


def test_user_commands_print_the_key_once(store: Path) -> None:
    created = run_json(store, "user", "add", "ivy", "--role", "investigator")
    assert isinstance(created, dict) and created["api_key"].startswith("ft_")
    listed = run_json(store, "user", "list")
    assert isinstance(listed, list) and "api_key" not in listed[0]
    code, output = run(store, "user", "add", "ivy2", "--role", "admin")
    assert code == 2 and "role" in output
    assert run_json(store, "user", "disable", "ivy")["disabled"] is True  # type: ignore[index]
    assert (store / "facetrail.db").exists()


def test_data_directory_from_the_environment(tmp_path: Path) -> None:
    init(tmp_path / "env")
    result = runner.invoke(app, ["source", "list", "--json"], env={"FACETRAIL_DATA": str(tmp_path / "env")})
    assert result.exit_code == 0 and json.loads(result.output) == []
