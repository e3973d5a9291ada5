"""Everything facetrail writes is owner-only: after a full flow (ingestion, search, portal requests, erasure,
backup and restore), every directory under the data directory is 0700 and every file 0600, whatever the umask;
the backup archive too. The outbox keeps mail only while its request is open. And an ingestion writes nothing
outside the data directory."""

from __future__ import annotations

import email
import json
import os
import stat
import subprocess
import sys
from collections.abc import Iterator
from email.policy import default
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from facetrail.accounts.roles import Actor, Role
from facetrail.api import create_app
from facetrail.backup.archive import create_backup
from facetrail.backup.restore import restore_backup
from facetrail.config import get_settings
from facetrail.runtime import Facetrail, local_actor
from facetrail.sources.inputs import from_upload
from tests.conftest import ROOT, SAMPLES, add_source, files_under, home_env, sample_bytes
from tests.rights.captures import BUSH, hold_bush
from tests.web.conftest import Portal, read_code


@pytest.fixture
def shared_umask() -> Iterator[None]:
    """The most common umask (022), which would leave files world-readable: the modes must not depend on it."""
    previous = os.umask(0o022)
    yield
    os.umask(previous)


def loose_modes(root: Path) -> list[str]:
    """Every path under `root` (itself included) whose mode is not 0700 (directory) or 0600 (file)."""
    found = []
    for path in [root, *root.rglob("*")]:
        mode = stat.S_IMODE(path.lstat().st_mode)
        wanted = 0o700 if path.is_dir() else 0o600
        if stat.S_ISLNK(path.lstat().st_mode) or mode != wanted:
            found.append(f"{path.relative_to(root.parent)}: {mode:o}")
    return found


def outbox_subjects(data: Path) -> list[str]:
    subjects = []
    for path in sorted((data / "outbox").glob("*.eml")):
        subjects.append(str(email.message_from_bytes(path.read_bytes(), policy=default)["Subject"]))
    return subjects


def test_a_full_flow_writes_only_owner_only_files(tmp_path: Path, shared_umask: None) -> None:  # noqa: ARG001
    data = tmp_path / "data"
    ft = Facetrail.open(data, create=True, workers=1)
    try:
        source = add_source(ft)
        files = {name: sample_bytes(name) for name in ("obama.jpg", "obama2.jpg", "biden.jpg", "two_people.jpg")}
        items = [item for name, content in files.items() for item in from_upload(name, content, ft.input_limits)]
        assert not ft.ingest.ingest(local_actor(), source, items).errors
        _, key = ft.accounts.create(local_actor(), name="ivy", role="investigator")
        hold_bush(ft)
        with TestClient(create_app(ft)) as client:
            found = client.post("/v1/search", headers={"Authorization": f"Bearer {key}"},
                                files={"photo": ("q.jpg", sample_bytes("obama_small.jpg"), "image/jpeg")},
                                data={"purpose": "demo", "case": "case-1"})
            assert found.status_code == 200 and found.json()["results"], found.text
            portal = Portal(client, ft)
            access_id, access_token = portal.new_request("access", "george@example.org")
            portal.send_code(access_id, access_token, read_code(data, "george@example.org"))
            portal.send_capture(access_id, access_token, BUSH)  # key frames and template: sealed evidence
            ft.requests.approve(Actor("dora", Role.DPO), access_id, "the key frames match the held faces")
            answer = client.get(f"/portal/api/requests/{access_id}", params={"token": access_token}).json()
            assert answer["status"] == "completed" and answer["answer"]["download"], answer
            erasure_id, erasure_token = portal.new_request("erasure", "bush@example.org")
            portal.send_code(erasure_id, erasure_token, read_code(data, "bush@example.org"))
            portal.send_capture(erasure_id, erasure_token, BUSH)
            open_id, _ = portal.new_request("confirm", "someone@example.org")  # left open: its code mail stays
        # Mail about a closed request is gone but for its closing notice; an open request's code is kept.
        subjects = outbox_subjects(data)
        assert f"Your request {access_id}: confirmation code" not in subjects
        assert f"Your request {access_id}: answered" in subjects
        assert f"Your request {open_id}: confirmation code" in subjects
        backups = tmp_path / "backups"
        backups.mkdir()
        create_backup(ft, local_actor(), backups / "b.tar")
    finally:
        ft.close()
    assert stat.S_IMODE((backups / "b.tar").stat().st_mode) == 0o600
    restore_backup(get_settings(data=data), backups / "b.tar", local_actor().name)
    Facetrail.open(data, workers=1).close()
    names = {p.name for p in data.rglob("*")}
    assert {"facetrail.db", "outbox", "blobs"} <= names and any(n.endswith(".eml") for n in names)
    assert loose_modes(data) == []


def test_a_database_file_is_created_owner_only_with_its_journal(tmp_path: Path, shared_umask: None) -> None:  # noqa: ARG001
    ft = Facetrail.open(tmp_path / "data", create=True, workers=1)
    try:
        add_source(ft)  # a write: the -wal and -shm files exist while the database is open
        present = {p.name for p in (tmp_path / "data").iterdir()}
        assert {"facetrail.db-wal", "facetrail.db-shm"} <= present
        assert loose_modes(tmp_path / "data") == []
    finally:
        ft.close()


def test_an_ingestion_from_the_command_line_writes_nothing_outside_the_data_directory(tmp_path: Path) -> None:
    """The command and its vision process, run as a user runs them: their home directory stays empty (the inference
    runtimes would keep a device identifier and usage reports there, vision/runtimes.py)."""
    home, data = tmp_path / "home", tmp_path / "data"
    home.mkdir()

    def facetrail(*args: str) -> str:
        proc = subprocess.run([sys.executable, "-m", "facetrail.cli", "--data", str(data), *args, "--json"],
                              capture_output=True, text=True, env=home_env(home), cwd=ROOT, timeout=300)
        assert proc.returncode == 0, proc.stderr[-3000:]
        return proc.stdout

    facetrail("init")
    facetrail("source", "add", "--name", "club", "--controller", "Sports Club", "--purpose", "press", "--basis",
              "consent", "--art9", "a", "--evidence", "forms/2026", "--jurisdiction", "FR", "--retention-days", "365")
    report = json.loads(facetrail("ingest", "--source", "1", str(SAMPLES / "obama.jpg"), str(SAMPLES / "biden.jpg")))
    assert report["faces_added"] == 2
    assert files_under(home) == []
