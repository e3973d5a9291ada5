"""`facetrail people ...`: every command, with and without --json, and its errors."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from tests.cli.test_cli import run, run_json
from tests.conftest import PG_SAMPLES, StoreDb


def test_people_commands(samples_store: Path, tmp_path: Path, store_db: StoreDb) -> None:
    data = tmp_path / "data"
    shutil.copytree(samples_store, data)
    store_db.copy_from(PG_SAMPLES)
    code, output = run(data, "people", "cluster")
    assert code == 0 and "26 face(s) placed" in output
    again = run_json(data, "people", "cluster")
    assert isinstance(again, dict) and (again["faces"], again["people_created"], again["sources"]) == (0, 0, [])
    people = run_json(data, "people", "list", "--source", "1")
    assert isinstance(people, list) and sum(p["faces"] for p in people) == 26
    top = people[0]
    assert top["faces"] == 11 and top["name"] is None and top["face_id"] is not None
    shown = run_json(data, "people", "show", str(top["id"]))
    assert isinstance(shown, dict) and len(shown["face_list"]) == 11
    assert all("obama" in f["original_name"] or "32bit" in f["original_name"] or "two_people" in f["original_name"]
               for f in shown["face_list"])
    code, output = run(data, "people", "show", str(top["id"]))
    assert code == 0 and f"person {top['id']} (unnamed): 11 face(s) in source 1" in output
    assert run_json(data, "people", "name", str(top["id"]), "Barack Obama")["name"] == "Barack Obama"  # type: ignore[index]
    code, output = run(data, "people", "list")
    assert code == 0 and "Barack Obama" in output
    faces = [str(f["face_id"]) for f in shown["face_list"][:2]]
    split = run_json(data, "people", "split", str(top["id"]), *faces)
    assert isinstance(split, dict) and split["faces"] == 2
    code, output = run(data, "people", "merge", str(top["id"]), str(split["id"]))
    assert code == 0 and "now has 11 face(s)" in output
    actions = [e["action"] for e in run_json(data, "audit", "list", "--limit", "1000")  # type: ignore[union-attr]
               if e["action"].startswith("people.")]
    assert actions == ["people.cluster", "people.show", "people.show", "people.name", "people.split",
                       "people.merge"]  # the second clustering run placed nothing, so wrote nothing


def test_people_errors_exit_non_zero_and_name_the_field(samples_store: Path, tmp_path: Path,
                                                         store_db: StoreDb) -> None:
    data = tmp_path / "data"
    shutil.copytree(samples_store, data)
    store_db.copy_from(PG_SAMPLES)
    run_json(data, "people", "cluster")
    code, output = run(data, "people", "show", "999")
    assert code == 1 and "person 999 does not exist" in output
    code, output = run(data, "people", "merge", "1", "1", "--json")
    assert code == 2 and json.loads(output)["field"] == "other_ids"
    code, output = run(data, "people", "split", "1", "999999")
    assert code == 2 and "face_ids" in output
