"""What people read: tables rather than dicts, nothing cut at 80 columns, one timestamp format, messages that
follow the role, and an audit log that can be filtered."""

from __future__ import annotations

import json
import re
import shutil
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from facetrail.api.app import create_app
from facetrail.cli import output
from facetrail.runtime import Facetrail, local_actor
from facetrail.vision.backend import load_backend
from tests.cli.test_cli import SOURCE, run, run_json
from tests.conftest import SAMPLES

ISO_Z = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{6})?Z$")


@pytest.fixture
def data(samples_store: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "data"
    shutil.copytree(samples_store, copy)
    return copy


@pytest.fixture
def narrow(monkeypatch: pytest.MonkeyPatch) -> None:
    """A terminal of 80 columns, as without one."""
    for console in (output.console, output.err_console):
        monkeypatch.setattr(console, "_width", 80)


def columns(text: str) -> list[str]:
    """Each column of a Rich table, its folded pieces put back together (spaces dropped)."""
    pieces: dict[int, str] = {}
    for line in text.splitlines():
        if line.startswith("│"):
            for i, cell in enumerate(line.strip("│").split("│")):
                pieces[i] = pieces.get(i, "") + cell.replace(" ", "")
    return list(pieces.values())


def test_index_and_keys_status_are_tables(data: Path) -> None:
    for command, fields in ((["index", "status"], ("faces", "generation", "model_id")),
                            (["keys", "status"], ("master_key", "master_id", "data_keys"))):
        code, text = run(data, *command)
        assert code == 0 and "{" not in text and "'" not in text, text
        assert all(re.search(rf"│ {f}\s+│", text) for f in fields), text
        assert isinstance(run_json(data, *command), dict)  # --json unchanged


def test_audit_list_shows_every_detail_at_80_columns(data: Path, narrow: None) -> None:
    del narrow
    args = list(SOURCE)
    args[args.index("--name") + 1] = "Club events 2026: every home match, by the club's photographer, Anna"
    run_json(data, *args)
    code, text = run(data, "audit", "list", "--action", "source.add", "--after", "2")
    assert code == 0 and "…" not in text
    assert max(len(line) for line in text.splitlines()) <= 80
    flat = re.sub(r"[\s│]+", "", text)
    for detail in ('art9_condition="a"', '"Clubevents2026:everyhomematch,bytheclub\'sphotographer,Anna"',
                   "source.add", "local:"):
        assert detail in flat, text


def test_no_table_cuts_a_value_at_80_columns(data: Path, narrow: None) -> None:
    del narrow
    run_json(data, "user", "add", "ivy-the-investigator", "--role", "investigator", "--purpose", "find-my-photos")
    for command, values in ((["user", "list"], ("ivy-the-investigator", "investigator", "find-my-photos")),
                            (["source", "list"], ("Test Controller", "consent")),
                            (["index", "status"], (load_backend().model_id,)),  # the default model's id
                            (["search", str(SAMPLES / "obama2.jpg"), "--purpose", "demo", "--case", "t"],
                             (str(SAMPLES / "obama.jpg").replace(" ", ""),))):
        code, text = run(data, *command)
        assert code == 0 and "…" not in text, text
        assert all(any(v.replace(" ", "") in column for column in columns(text)) for v in values), text


def test_one_timestamp_format_in_cli_and_api(data: Path) -> None:
    run_json(data, "user", "add", "ivy", "--role", "investigator")
    accounts = run_json(data, "user", "list")
    assert isinstance(accounts, list)
    assert all(ISO_Z.match(a[key]) for a in accounts for key in ("created_at", "expires_at")), accounts
    code, text = run(data, "user", "list")
    assert code == 0 and re.search(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", text) and "+00:00" not in text
    sources = run_json(data, "source", "list")
    assert isinstance(sources, list) and ISO_Z.match(sources[0]["created_at"])
    entries = run_json(data, "audit", "list", "--action", "account.add")
    assert isinstance(entries, list) and ISO_Z.match(entries[0]["at"])
    hits = run_json(data, "search", str(SAMPLES / "obama2.jpg"), "--purpose", "demo", "--case", "t")
    assert isinstance(hits, dict) and ISO_Z.match(hits["results"][0]["ingested_at"])
    ft = Facetrail.open(data, workers=1)
    try:
        _, key = ft.accounts.create(local_actor(), name="op", role="operator")
        with TestClient(create_app(ft)) as client:
            listed = client.get("/v1/accounts", headers={"Authorization": f"Bearer {key}"}).json()
            assert all(ISO_Z.match(a["created_at"]) for a in listed), listed
            source = client.get("/v1/sources/1", headers={"Authorization": f"Bearer {key}"}).json()
            assert ISO_Z.match(source["created_at"]), source
    finally:
        ft.close()


@pytest.mark.parametrize("role,says,never", [
    ("dpo", "it cannot search", "search for"),
    ("auditor", "it cannot search", "search for"),
    ("operator", "it cannot search", "search for"),
    ("investigator", "it may search for any purpose", "cannot"),
])
def test_user_add_says_what_the_role_may_do(data: Path, role: str, says: str, never: str) -> None:
    code, text = run(data, "user", "add", f"a-{role}", "--role", role)
    assert code == 0 and says in text and never not in text, text


def test_user_add_names_the_purposes_of_a_scoped_key(data: Path) -> None:
    code, text = run(data, "user", "add", "ivy", "--role", "investigator", "--purpose", "press")
    assert code == 0 and "it may search for press" in text


def test_audit_list_filters(data: Path) -> None:
    photo = str(SAMPLES / "obama2.jpg")
    run_json(data, "search", photo, "--purpose", "demo", "--case", "case-1")
    time.sleep(0.01)
    middle = datetime.now(UTC)
    time.sleep(0.01)
    run_json(data, "search", photo, "--purpose", "demo", "--case", "case-2")
    run_json(data, "user", "add", "ivy", "--role", "auditor")

    def seqs(*args: str) -> list[str]:
        entries = run_json(data, "audit", "list", "--limit", "1000", *args)
        assert isinstance(entries, list)
        return [f"{e['action']}:{json.loads(e['details']).get('case', '')}" for e in entries]

    assert seqs("--action", "search") == ["search:case-1", "search:case-2"]
    assert seqs("--case", "case-2") == ["search:case-2"]
    assert seqs("--purpose", "demo", "--case", "case-1") == ["search:case-1"]
    assert seqs("--purpose", "press") == []
    assert seqs("--since", middle.isoformat()) == ["search:case-2", "account.add:"]
    assert seqs("--until", middle.isoformat().replace("+00:00", "Z"), "--action", "search") == ["search:case-1"]
    me = local_actor().name
    assert seqs("--actor", me, "--action", "account.add") == ["account.add:"]
    assert seqs("--actor", "someone-else") == []
    code, text = run(data, "audit", "list", "--since", "yesterday")
    assert code == 2 and "since" in text
    code, text = run(data, "audit", "list", "--since", "2026-12-02", "--until", "2026-12-01")
    assert code == 2 and "until" in text


def test_audit_filters_in_the_api(data: Path) -> None:
    ft = Facetrail.open(data, workers=1)
    try:
        _, investigator = ft.accounts.create(local_actor(), name="ivy", role="investigator")
        _, auditor = ft.accounts.create(local_actor(), name="aud", role="auditor")
        with TestClient(create_app(ft)) as client:
            for case in ("c-1", "c-2"):
                found = client.post("/v1/search", headers={"Authorization": f"Bearer {investigator}"},
                                    files={"photo": ("q.jpg", (SAMPLES / "obama2.jpg").read_bytes())},
                                    data={"purpose": "demo", "case": case})
                assert found.status_code == 200, found.text
            headers = {"Authorization": f"Bearer {auditor}"}

            def actions(**params: str) -> list[str]:
                answer = client.get("/v1/audit", headers=headers, params={"limit": "1000", **params})
                assert answer.status_code == 200, answer.text
                return [f"{e['actor']}:{e['action']}:{json.loads(e['details']).get('case', '')}"
                        for e in answer.json()]

            assert actions(actor="ivy") == ["ivy:search:c-1", "ivy:search:c-2"]
            assert actions(action="search", case="c-2", purpose="demo") == ["ivy:search:c-2"]
            assert actions(since="2999-01-01T00:00:00Z") == []
            assert actions(until="2000-01-01") == []
            bad = client.get("/v1/audit", headers=headers, params={"since": "soon"})
            assert bad.status_code == 422 and bad.json()["field"] == "since", bad.text
    finally:
        ft.close()
