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
    code, output = run(store, "ingest", "--source", "1", "--workers", "1", str(SAMPLES / "obama.jpg"),
                       str(SAMPLES / "biden.jpg"), str(SAMPLES / "labels.tsv"), "--json")
    report = json.loads(output)
    assert code == 3, output  # a partial success: two images in, one file failed
    assert report["images_added"] == 2 and len(report["errors"]) == 1 and report["outcome"] == "partial"
    outcome = run_json(store, "search", str(SAMPLES / "obama2.jpg"), "--purpose", "press", "--case", "k-1")
    assert isinstance(outcome, dict) and "obama.jpg" in outcome["results"][0]["original_name"]
    code, output = run(store, "search", str(SAMPLES / "obama2.jpg"), "--purpose", "press", "--case", "k-1")
    assert code == 0 and "obama.jpg" in output
    # Two faces searched: the table says what each result and the threshold mean at that size.
    assert "FPIR at 2" in output and "automatic threshold, 2 faces searched" in output
    assert outcome["reach"]["gallery_size"] == 2 and outcome["results"][0]["fpir"] <= 0.0101
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
    assert (tmp_path / "env" / "facetrail.db").exists()


def test_ingest_exit_codes_tell_complete_partial_and_failed(store: Path) -> None:
    run_json(store, *SOURCE)
    good, bad = SAMPLES / "obama_small.jpg", store.parent / "broken.jpg"
    bad.write_bytes(b"\xff\xd8\xff not a jpeg")
    ingest = ("ingest", "--source", "1", "--workers", "1")
    assert run(store, *ingest, str(bad))[0] == 1
    code, output = run(store, *ingest, str(good), str(bad))
    assert code == 3 and "partial" in output and "broken.jpg" in output
    assert run(store, *ingest, str(good))[0] == 0  # already present: complete


def test_folder_of_broken_videos_gives_one_error_each_and_fails(store: Path) -> None:
    """A folder holding no sound image or video must not report "0 image(s), 0 error(s)" and succeed."""
    run_json(store, *SOURCE)
    folder = store.parent / "clips"
    (folder / "day2").mkdir(parents=True)
    (folder / "match.MP4").write_bytes(b"\x00\x00\x00\x18ftypmp42")
    (folder / "day2" / "interview.mov").write_bytes(b"\x00\x00\x00\x14ftypqt  ")
    (folder / "day2" / "notes.txt").write_text("who was there")
    code, output = run(store, "ingest", "--source", "1", "--workers", "1", str(folder))
    assert code == 1, output
    assert "1 file(s) skipped" in output and "2 error(s)" in output and "every image failed" in output
    for name in ("match.MP4", "interview.mov", "notes.txt"):
        assert name in output
    code, output = run(store, "ingest", "--source", "1", "--workers", "1", str(folder), "--json")
    report = json.loads(output)
    assert code == 1 and report["outcome"] == "failed"
    # The videos are tried (a header alone is no video: one clear error each), the text file is skipped.
    assert sorted(e["name"] for e in report["errors"]) == [str(folder / "day2" / "interview.mov"),
                                                           str(folder / "match.MP4")]
    assert all(e["cause"].startswith("truncated or corrupt video") for e in report["errors"])
    assert report["skipped"] == [
        {"name": str(folder / "day2" / "notes.txt"), "reason": "not an image or video file type (.txt)"},
    ]


def test_search_for_a_purpose_without_a_source_fails_naming_the_purposes(store: Path) -> None:
    run_json(store, *SOURCE)
    code, output = run(store, "search", str(SAMPLES / "obama2.jpg"), "--purpose", "find-my-photo", "--case", "c")
    assert code == 2
    assert "no source is registered for the purpose 'find-my-photo'" in output
    assert "you may search: find-my-photos, press" in output


def test_source_update_and_its_version_history(store: Path) -> None:
    run_json(store, *SOURCE)
    edited = run_json(store, "source", "update", "1", "--retention-days", "90", "--controller-contact",
                      "privacy@club.example")
    assert isinstance(edited, dict) and (edited["retention_days"], edited["version"]) == (90, 1)
    code, output = run(store, "source", "update", "1", "--purpose", "find-my-photos")
    assert code == 2 and "reason" in output
    code, output = run(store, "source", "update", "1", "--purpose", "find-my-photos", "--reason",
                       "the press partnership ended")
    assert code == 0 and "version 2 (was 1)" in output
    shown = run_json(store, "source", "show", "1")
    assert isinstance(shown, dict) and shown["purposes"] == ["find-my-photos"]
    assert [(v["version"], v["purposes"], v["reason"]) for v in shown["versions"]] == [
        (1, ["find-my-photos", "press"], "registered"), (2, ["find-my-photos"], "the press partnership ended")]
    code, output = run(store, "source", "show", "1")
    assert code == 0 and "the press partnership ended" in output and "privacy@club.example" in output
    actions = [e["action"] for e in run_json(store, "audit", "list")]  # type: ignore[union-attr]
    assert actions == ["data.create", "source.add", "source.update", "source.update"]
