"""Backups: consistent, ciphertext only, and unable to bring back an erased person (hard rules 9 and 12)."""

from __future__ import annotations

import filecmp
import hashlib
import io
import json
import os
import shutil
import sqlite3
import tarfile
import tracemalloc
from pathlib import Path

import pytest
from sqlalchemy import func, select

from facetrail.accounts.roles import Actor
from facetrail.backup.archive import create_backup
from facetrail.backup.restore import restore_backup
from facetrail.config import get_settings
from facetrail.errors import ConflictError, InvalidValueError, KeyUnavailableError, PermissionDeniedError
from facetrail.runtime import Facetrail
from facetrail.sources.inputs import from_paths
from facetrail.store.models import Account, Face, StoredImage, Suppression
from facetrail.vision.calibration import Band
from tests.conftest import LFW, SAMPLES, add_source, sample_bytes
from tests.rights.biden import files_holding, find_biden, stored_faces


@pytest.fixture
def data(samples_store: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "data"
    shutil.copytree(samples_store, copy)
    return copy


def open_ft(data: Path) -> Facetrail:
    return Facetrail.open(data, workers=1)


def counts(ft: Facetrail) -> tuple[int, int]:
    with ft.db.read() as session:
        return (session.scalar(select(func.count()).select_from(Face)) or 0,
                session.scalar(select(func.count()).select_from(StoredImage)) or 0)


def backup(data: Path, dest: Path, actor: Actor) -> None:
    ft = open_ft(data)
    try:
        report = create_backup(ft, actor, dest)
        assert report.faces == 26 and report.blobs_missing == 0
    finally:
        ft.close()


def test_a_restored_old_backup_does_not_bring_back_an_erased_person(data: Path, tmp_path: Path,
                                                                      actor: Actor) -> None:
    archive = tmp_path / "before-erasure.tar"
    backup(data, archive, actor)
    ft = open_ft(data)
    biden = stored_faces(ft, find_biden(ft, actor))
    assert len(biden) == 4
    ft.erasure.erase(actor.name, [f.id for f in biden], request_id="REQ-BIDEN")
    ft.close()

    # The archive still holds his sealed template and crops, but no key to open them.
    with tarfile.open(archive) as tar:
        member = tar.extractfile("facetrail.db")
        assert member is not None
        snapshot = tmp_path / "snapshot.db"
        snapshot.write_bytes(member.read())
    conn = sqlite3.connect(snapshot)
    sealed = dict(conn.execute("SELECT id, template FROM faces").fetchall())
    conn.close()
    assert all(sealed[f.id] == f.sealed for f in biden)

    report = restore_backup(get_settings(data=data), archive, actor.name)
    assert (report["erasures_reapplied"], report["faces_erased"]) == (1, 4)

    ft = open_ft(data)
    try:
        assert find_biden(ft, actor) == []
        for photo in ("biden.jpg", "biden2.jpg"):
            outcome = ft.search.search(actor, sample_bytes(photo), purpose="demo", case_ref="after",
                                       min_band=Band.POSSIBLE.value)
            assert outcome.results == [], photo
        for face in biden:
            with pytest.raises(KeyUnavailableError):
                ft.vault.open("template", face.sealed)  # the copy in the old backup is shredded
            assert files_holding(data, face.sealed) == []
        assert counts(ft) == (26 - 4, 22 - 2)
        assert ft.verify_audit(actor).ok
        restores = [e for e in ft.read_audit(actor, limit=1000) if e.action == "backup.restore"]
        assert len(restores) == 1 and json.loads(restores[0].details)["erasures_reapplied"] == 1
        # The erasure's own audit entries, newer than the backup, are kept beside the restored log.
        archived = json.loads(restores[0].details)["audit_archive"]
        lines = (data / archived["file"]).read_text().splitlines()
        assert "erasure.completed" in [json.loads(line)["action"] for line in lines]
    finally:
        ft.close()


def test_the_operator_is_told_on_the_command_line(data: Path, tmp_path: Path, actor: Actor) -> None:
    from typer.testing import CliRunner

    from facetrail.cli.main import app

    archive = tmp_path / "b.tar"
    runner = CliRunner()
    made = runner.invoke(app, ["--data", str(data), "backup", "create", str(archive), "--json"])
    assert made.exit_code == 0, made.output
    ft = open_ft(data)
    ft.erasure.erase(actor.name, find_biden(ft, actor), request_id="REQ-CLI")
    ft.close()
    restored = runner.invoke(app, ["--data", str(data), "backup", "restore", str(archive)])
    assert restored.exit_code == 0, restored.output
    assert "erasures re-applied: 1" in restored.output and "4 face(s) erased again" in restored.output


def test_restoring_brings_back_exactly_the_backup_and_keeps_newer_audit_entries(data: Path, tmp_path: Path,
                                                                                actor: Actor) -> None:
    archive = tmp_path / "b.tar"
    ft = open_ft(data)
    before = [h.face_id for h in ft.search.search(actor, sample_bytes("obama2.jpg"), purpose="demo",
                                                  case_ref="c").results]
    ft.close()
    backup(data, archive, actor)
    ft = open_ft(data)
    people = sorted(p for p in LFW.iterdir() if p.is_dir())[:3]
    report = ft.ingest.ingest(actor, 1, from_paths(people, ft.input_limits))
    assert report.faces_added > 0
    ft.close()

    result = restore_backup(get_settings(data=data), archive, actor.name)
    assert (result["erasures_reapplied"], result["faces_erased"]) == (0, 0)
    ft = open_ft(data)
    try:
        assert counts(ft) == (26, 22)
        assert [h.face_id for h in ft.search.search(actor, sample_bytes("obama2.jpg"), purpose="demo",
                                                    case_ref="c").results] == before
        assert sorted(ft.gallery.index().ids().tolist()) == sorted(ft.gallery.persisted_ids())
        assert ft.verify_audit(actor).ok
        archived = result["audit_archive"]
        assert isinstance(archived, dict) and archived["entries"] >= 2  # ingest.start and ingest.finish at least
    finally:
        ft.close()


def test_an_opt_out_made_after_the_backup_survives_the_restore(data: Path, tmp_path: Path, actor: Actor) -> None:
    archive = tmp_path / "b.tar"
    backup(data, archive, actor)
    ft = open_ft(data)
    biden = stored_faces(ft, find_biden(ft, actor))
    from facetrail.store.templates import decode_template

    ft.suppressions.add("REQ-OPT", [decode_template(f.template, ft.gallery.dim) for f in biden], ["demo"])
    ft.close()
    report = restore_backup(get_settings(data=data), archive, actor.name)
    assert report["suppressions_restored"] == 4
    ft = open_ft(data)
    try:
        assert len(ft.suppressions) == 4
        again = add_source(ft, name="again")
        ingested = ft.ingest.ingest(actor, again, from_paths([SAMPLES / "biden2.jpg"], ft.input_limits))
        assert ingested.faces_suppressed == 1 and ingested.faces_added == 0
    finally:
        ft.close()


def test_a_withdrawn_opt_out_is_not_brought_back(data: Path, tmp_path: Path, actor: Actor) -> None:
    ft = open_ft(data)
    biden = stored_faces(ft, find_biden(ft, actor))
    from facetrail.store.templates import decode_template

    ft.suppressions.add("REQ-OPT", [decode_template(biden[0].template, ft.gallery.dim)], ["demo"])
    ft.close()
    archive = tmp_path / "b.tar"
    backup(data, archive, actor)
    ft = open_ft(data)
    assert ft.suppressions.remove("REQ-OPT") == 1
    ft.close()
    report = restore_backup(get_settings(data=data), archive, actor.name)
    assert report["suppressions_removed"] == 1
    ft = open_ft(data)
    with ft.db.read() as session:
        assert session.scalar(select(func.count()).select_from(Suppression)) == 0
    ft.close()


def test_restore_is_refused_while_the_data_directory_is_open(data: Path, tmp_path: Path, actor: Actor) -> None:
    archive = tmp_path / "b.tar"
    backup(data, archive, actor)
    server = open_ft(data)  # as a running server holds it
    try:
        with pytest.raises(ConflictError, match="in use"):
            restore_backup(server.settings, archive, actor.name)
    finally:
        server.close()


def test_a_backup_never_overwrites_and_never_lands_in_the_data_directory(data: Path, tmp_path: Path,
                                                                           actor: Actor) -> None:
    ft = open_ft(data)
    try:
        existing = tmp_path / "exists.tar"
        existing.write_bytes(b"keep me")
        with pytest.raises(InvalidValueError, match="exists already"):
            create_backup(ft, actor, existing)
        assert existing.read_bytes() == b"keep me"
        with pytest.raises(InvalidValueError, match="inside the data directory"):
            create_backup(ft, actor, data / "b.tar")
        investigator = Actor(name="ivy", role=actor.role.INVESTIGATOR)
        with pytest.raises(PermissionDeniedError):
            create_backup(ft, investigator, tmp_path / "x.tar")
    finally:
        ft.close()


def _rewrite(archive: Path, out: Path, change: str) -> None:
    """A copy of `archive` damaged in one way."""
    with tarfile.open(archive) as src, tarfile.open(out, "w") as dst:
        for member in src.getmembers():
            payload = src.extractfile(member).read() if member.isfile() else b""  # type: ignore[union-attr]
            if change == "tamper" and member.name.startswith("blobs/crops/"):
                payload = payload[:-1] + bytes([payload[-1] ^ 1])
                change = "done"
            if change == "traversal" and member.name.startswith("blobs/crops/"):
                member.name = "../../escaped.jpg"
                change = "done"
            info = tarfile.TarInfo(member.name)
            info.size = len(payload)
            dst.addfile(info, io.BytesIO(payload))
        if change == "link":
            link = tarfile.TarInfo("blobs/crops/link.jpg")
            link.type = tarfile.SYMTYPE
            link.linkname = "/etc/passwd"
            dst.addfile(link)


@pytest.mark.parametrize("damage", ["not-a-tar", "truncated", "tamper", "traversal", "link", "empty"])
def test_a_damaged_or_hostile_archive_is_refused_and_changes_nothing(data: Path, tmp_path: Path, actor: Actor,
                                                                    damage: str) -> None:
    archive = tmp_path / "b.tar"
    backup(data, archive, actor)
    bad = tmp_path / "bad.tar"
    if damage == "not-a-tar":
        bad.write_bytes(sample_bytes("obama.jpg"))
    elif damage == "truncated":
        bad.write_bytes(archive.read_bytes()[: archive.stat().st_size // 2])
    elif damage == "empty":
        bad.write_bytes(b"")
    else:
        _rewrite(archive, bad, damage)
    ft = open_ft(data)
    settings = ft.settings
    ft.erasure.erase(actor.name, find_biden(ft, actor)[:1], request_id=None)  # something the archive lacks
    expected = counts(ft)
    ft.close()
    with pytest.raises(InvalidValueError, match="backup|entry|missing|damaged"):
        restore_backup(settings, bad, actor.name)
    assert not (tmp_path / "escaped.jpg").exists() and not (data.parent / "escaped.jpg").exists()
    ft = open_ft(data)
    try:
        assert counts(ft) == expected and ft.verify_audit(actor).ok
        assert not (data / ".restore").exists()
    finally:
        ft.close()


def test_rights_requests_received_after_the_backup_are_named(data: Path, tmp_path: Path, actor: Actor) -> None:
    archive = tmp_path / "b.tar"
    backup(data, archive, actor)
    ft = open_ft(data)
    intake = ft.requests.intake(kind="access", email="someone@example.org", details={}, client_ip="203.0.113.9")
    ft.close()
    report = restore_backup(get_settings(data=data), archive, actor.name)
    assert report["requests_not_in_backup"] == [intake.request.id]


def test_a_backup_is_refused_beside_another_keyring(data: Path, tmp_path: Path, actor: Actor) -> None:
    """Restored where its keys are not, every record would look erased and the ledger would erase them all."""
    archive = tmp_path / "b.tar"
    backup(data, archive, actor)
    elsewhere = tmp_path / "elsewhere"
    Facetrail.open(elsewhere, create=True, workers=1).close()  # a fresh install, with a keyring of its own
    with pytest.raises(InvalidValueError, match="made beside keyring"):
        restore_backup(get_settings(data=elsewhere), archive, actor.name)
    ft = open_ft(elsewhere)
    try:
        assert counts(ft) == (0, 0) and not (elsewhere / ".restore").exists()
    finally:
        ft.close()


def test_restrictions_and_disabled_accounts_after_the_backup_survive_the_restore(data: Path, tmp_path: Path,
                                                                                 actor: Actor) -> None:
    ft = open_ft(data)
    biden = find_biden(ft, actor)
    ft.restriction.restrict(actor.name, biden[:1], "REQ-LIFT")  # restricted before the backup, lifted after
    account, _key = ft.accounts.create(actor, name="ivy", role="investigator")
    ft.close()
    archive = tmp_path / "b.tar"
    ft = open_ft(data)
    create_backup(ft, actor, archive)
    ft.restriction.restrict(actor.name, biden[1:], "REQ-18")  # restricted after the backup
    ft.restriction.lift(actor.name, biden[:1], "REQ-LIFT")
    ft.accounts.disable(actor, name="ivy")
    ft.close()

    report = restore_backup(get_settings(data=data), archive, actor.name)
    assert report["restrictions_reapplied"] == len(biden) and report["accounts_disabled"] == 1
    ft = open_ft(data)
    try:
        with ft.db.read() as session:
            restricted = dict(session.execute(select(Face.id, Face.restricted).where(Face.id.in_(biden))).all())
            ivy = session.scalar(select(Account).where(Account.name == "ivy"))
        assert restricted == {biden[0]: False, **dict.fromkeys(biden[1:], True)}
        assert not set(biden[1:]) & set(ft.gallery.index().ids().tolist())  # out of search again
        assert ivy is not None and ivy.disabled_at is not None and account.id == ivy.id
    finally:
        ft.close()


def test_large_files_go_into_and_out_of_the_archive_a_block_at_a_time(tmp_path: Path) -> None:
    """The database and the index files are streamed, never read whole (a 10M-face index file is 10 GB): copying a
    48 MiB file into an archive and back out allocates a few MiB at most, and what comes out is the same bytes."""
    from facetrail.backup.archive import _add_file
    from facetrail.backup.restore import _write_member

    big = tmp_path / "big.ftindex"
    with open(big, "wb") as fh:
        for _ in range(48):
            fh.write(os.urandom(1 << 20))
    sums: dict[str, str] = {}
    tracemalloc.start()
    try:
        with tarfile.open(tmp_path / "a.tar", "w") as tar, open(big, "rb") as fh:
            _add_file(tar, "index/big.ftindex", fh, sums)
        into_archive = tracemalloc.get_traced_memory()[1]
        tracemalloc.reset_peak()
        with tarfile.open(tmp_path / "a.tar", "r:") as tar:
            digest = _write_member(tar, tar.getmember("index/big.ftindex"), tmp_path / "out.ftindex")
        out_of_archive = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert into_archive < 4 << 20 and out_of_archive < 4 << 20, (into_archive, out_of_archive)
    expected = hashlib.sha256(big.read_bytes()).hexdigest()
    assert sums == {"index/big.ftindex": expected} and digest == expected
    assert filecmp.cmp(big, tmp_path / "out.ftindex", shallow=False)
