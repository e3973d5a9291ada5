"""Encryption at rest: nothing biometric lies on disk in clear, nothing opens without the master key, keys
rotate without re-encrypting, and a store written in clear by an earlier version is sealed on open."""

from __future__ import annotations

import base64
import hashlib
import os
import shutil
import sqlite3
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import delete, select, update

from facetrail.accounts.roles import Actor
from facetrail.crypto.keyring import Keyring, WrongMasterKeyError
from facetrail.crypto.master import LocalMasterKey, new_key_bytes
from facetrail.crypto.vault import is_sealed
from facetrail.errors import KeyUnavailableError
from facetrail.index.faiss_index import MAGIC
from facetrail.runtime import Facetrail
from facetrail.store.models import Face, Meta, StoredImage
from facetrail.store.sealing import SEALED
from facetrail.store.templates import encode_template
from tests.conftest import sample_bytes, template_of
from tests.crypto import kms_hook
from tests.index.snapshot_files import file_of, frames_of
from tests.rights.biden import files_holding, raw_blob


def plaintexts(ft: Facetrail) -> list[tuple[str, bytes]]:
    """(what, bytes) for every template, crop and stored image, decrypted."""
    found = []
    with ft.db.read() as session:
        for face in session.scalars(select(Face)):
            vector = encode_template(template_of(ft, face.template))
            found.append((f"template {face.id}", vector))
            found.append((f"template {face.id} (first 32 bytes)", vector[:32]))
            assert face.crop_key is not None
            found.append((f"crop {face.id}", ft.blobs.get(face.crop_key)))
        for image in session.scalars(select(StoredImage)):
            assert image.blob_key is not None
            found.append((f"image {image.original_name}", ft.blobs.get(image.blob_key)[:4096]))
    return found


def search_ids(ft: Facetrail, actor: Actor, photo: str = "obama2.jpg") -> list[int]:
    return [h.face_id for h in ft.search.search(actor, sample_bytes(photo), purpose="demo", case_ref="c").results]


def copy_of(samples_store: Path, tmp_path: Path) -> Path:
    data = tmp_path / "data"
    shutil.copytree(samples_store, data)
    return data


def test_a_raw_scan_of_the_data_directory_finds_nothing_in_clear(samples_ft: Facetrail) -> None:
    samples_ft.gallery.persist()
    secrets = plaintexts(samples_ft)
    assert len(secrets) == 26 * 3 + 22
    every_file = b"".join(p.read_bytes() for p in sorted(samples_ft.data.rglob("*")) if p.is_file())
    assert [what for what, data in secrets if data in every_file] == []
    index = (samples_ft.data / "index" / f"{samples_ft.gallery.model_id}.ftindex").read_bytes()
    frames = frames_of(index)  # the index file is ciphertext as a whole: every frame sealed
    assert len(frames) >= 3 and all(is_sealed(frame) for frame in frames) and MAGIC not in index


def test_without_the_master_key_nothing_can_be_decrypted(samples_store: Path, tmp_path: Path,
                                                          actor: Actor) -> None:
    data = copy_of(samples_store, tmp_path)
    key_file = data / "keys" / "master.key"
    assert key_file.stat().st_mode & 0o777 == 0o600 and (data / "keys").stat().st_mode & 0o777 == 0o700
    saved = key_file.read_bytes()
    key_file.unlink()
    with pytest.raises(KeyUnavailableError, match="master.key is missing"):
        Facetrail.open(data, workers=1)
    assert not key_file.exists()  # a missing key is an error, never silently replaced by a new one

    # Another master key opens nothing: not the keyring, not one wrapped data key.
    stranger = LocalMasterKey(new_key_bytes(), "another key")
    with pytest.raises(WrongMasterKeyError):
        Keyring(data / "keys" / "keyring.db", stranger)
    conn = sqlite3.connect(data / "keys" / "keyring.db")
    key_id, wrapped = conn.execute("SELECT id, wrapped FROM data_keys LIMIT 1").fetchone()
    conn.close()
    with pytest.raises(KeyUnavailableError):
        stranger.unwrap(wrapped, b"facetrail-data-key\0" + key_id.encode())

    key_file.write_bytes(saved)
    os.chmod(key_file, 0o644)
    with pytest.raises(KeyUnavailableError, match="readable by others"):
        Facetrail.open(data, workers=1)
    os.chmod(key_file, 0o600)
    ft = Facetrail.open(data, workers=1)
    assert search_ids(ft, actor)
    ft.close()


def test_a_lost_keyring_is_an_error_not_an_empty_store(samples_store: Path, tmp_path: Path) -> None:
    data = copy_of(samples_store, tmp_path)
    (data / "keys" / "keyring.db").unlink()
    with pytest.raises(KeyUnavailableError, match="holds no keys"):
        Facetrail.open(data, workers=1)


def test_rotation_rewraps_the_data_keys_and_leaves_the_data_as_it_was(samples_store: Path, tmp_path: Path,
                                                                      actor: Actor) -> None:
    from facetrail.crypto.setup import rotate_master_key

    data = copy_of(samples_store, tmp_path)
    ft = Facetrail.open(data, workers=1)
    before = search_ids(ft, actor)
    with ft.db.read() as session:
        sealed = {f.id: f.template for f in session.scalars(select(Face))}
        crops = {f.id: raw_blob(ft, f.crop_key or "") for f in session.scalars(select(Face))}
    old = LocalMasterKey(base64.b64decode((data / "keys" / "master.key").read_text()), "old")
    result = rotate_master_key(ft.settings, ft.vault)
    assert result["rewrapped"] == ft.vault.keyring.count() and result["new_master_id"] != old.key_id
    ft.close()

    ft = Facetrail.open(data, workers=1)
    with ft.db.read() as session:
        assert {f.id: f.template for f in session.scalars(select(Face))} == sealed  # not re-encrypted
        assert {f.id: raw_blob(ft, f.crop_key or "") for f in session.scalars(select(Face))} == crops
    assert search_ids(ft, actor) == before
    ft.close()
    with pytest.raises(WrongMasterKeyError):
        Keyring(data / "keys" / "keyring.db", old)  # the old key opens nothing any more
    assert not (data / "keys" / "master.key.new").exists()


def test_a_rotation_cut_off_before_the_new_key_file_is_in_place_is_finished_on_open(
        samples_store: Path, tmp_path: Path, actor: Actor) -> None:
    from facetrail.crypto.master import read_key_file, write_key_file

    data = copy_of(samples_store, tmp_path)
    ft = Facetrail.open(data, workers=1)
    before = search_ids(ft, actor)
    pending = data / "keys" / "master.key.new"
    write_key_file(pending, new_key_bytes())
    ft.vault.keyring.rewrap(read_key_file(pending))  # ...and the process dies before the rename
    ft.close()
    ft = Facetrail.open(data, workers=1)
    assert search_ids(ft, actor) == before and not pending.exists()
    assert ft.vault.keyring.master.key_id == read_key_file(data / "keys" / "master.key").key_id
    ft.close()


def test_the_master_key_can_come_from_the_environment_or_a_kms_hook(tmp_path: Path, actor: Actor) -> None:
    from tests.conftest import add_source

    env_key = base64.b64encode(new_key_bytes()).decode()
    for name, overrides in (("env", {"master_key": env_key}), ("kms", {"kms": "tests.crypto.kms_hook:factory"})):
        data = tmp_path / name
        ft = Facetrail.open(data, create=True, workers=1, **overrides)
        source = add_source(ft)
        ft.ingest.ingest(actor, source, _items(ft, "obama.jpg", "biden.jpg"))
        assert len(search_ids(ft, actor)) >= 1
        ft.close()
        assert not (data / "keys" / "master.key").exists()  # the key never touched the data directory
        with pytest.raises(KeyUnavailableError):
            Facetrail.open(data, workers=1)  # without it: a new key file would not open this keyring
    assert kms_hook.calls["wrap"] > 0 and kms_hook.calls["unwrap"] > 0


def _items(ft: Facetrail, *names: str) -> list[object]:
    from facetrail.sources.inputs import from_paths
    from tests.conftest import SAMPLES

    return list(from_paths([SAMPLES / n for n in names], ft.input_limits))


def test_records_an_earlier_version_stored_in_clear_are_sealed_on_open(samples_store: Path, tmp_path: Path,
                                                                        actor: Actor) -> None:
    data = copy_of(samples_store, tmp_path)
    ft = Facetrail.open(data, workers=1)
    before = search_ids(ft, actor)
    with ft.db.read() as session:
        faces = list(session.scalars(select(Face).limit(3)))
        image = session.get(StoredImage, faces[0].image_id)
    assert image is not None and image.blob_key is not None
    clear = {f.id: (encode_template(template_of(ft, f.template)), ft.blobs.get(f.crop_key or "")) for f in faces}
    clear_image = ft.blobs.get(image.blob_key)
    ft.gallery.persist()
    # The index file as an earlier version wrote it in clear: each frame's plaintext and its SHA-256.
    plain_frames = [ft.vault.open("index", frame)
                    for frame in frames_of((data / "index" / f"{ft.gallery.model_id}.ftindex").read_bytes())]
    clear_index = file_of([f + hashlib.sha256(f).digest() for f in plain_frames])
    # Write them back as an earlier version kept them: in clear, with no data key.
    with ft.db.write() as session, session.begin():
        for f in faces:
            session.execute(update(Face).where(Face.id == f.id).values(template=clear[f.id][0], key_id=None))
        session.execute(update(StoredImage).where(StoredImage.id == image.id).values(key_id=None))
        session.execute(delete(Meta).where(Meta.key == SEALED))  # which an earlier version never wrote
    for f in faces:
        kind, name = (f.crop_key or "").split("/", 1)
        (ft.blobs.root / kind / name[:2] / name).write_bytes(clear[f.id][1])
    kind, name = image.blob_key.split("/", 1)
    (ft.blobs.root / kind / name[:2] / name).write_bytes(clear_image)
    ft.close()
    index_file = data / "index" / f"{ft.gallery.model_id}.ftindex"
    index_file.write_bytes(clear_index)  # and the index file as it was written in clear

    ft = Facetrail.open(data, workers=1)  # seals them
    with ft.db.read() as session:
        assert session.scalar(select(Face.id).where(Face.key_id.is_(None))) is None
        assert all(is_sealed(f.template) for f in session.scalars(select(Face)))
    for f in faces:
        assert np.array_equal(template_of(ft, session_template(ft, f.id)), np.frombuffer(clear[f.id][0], "<f4"))
        assert ft.blobs.get(f.crop_key or "") == clear[f.id][1]
        assert files_holding(data, clear[f.id][0]) == [] and files_holding(data, clear[f.id][1]) == []
    assert ft.blobs.get(image.blob_key) == clear_image and files_holding(data, clear_image[:4096]) == []
    assert all(is_sealed(frame) for frame in frames_of(index_file.read_bytes()))
    assert all(files_holding(data, frame[:4096]) == [] for frame in plain_frames)
    assert search_ids(ft, actor) == before
    ft.close()


def session_template(ft: Facetrail, face_id: int) -> bytes:
    with ft.db.read() as session:
        face = session.get(Face, face_id)
        assert face is not None
        return face.template


def test_a_sealed_record_is_bound_to_what_it_is(samples_ft: Facetrail) -> None:
    """A crop's ciphertext put where a template belongs (or the other way round) does not open."""
    with samples_ft.db.read() as session:
        face = session.scalars(select(Face)).first()
    assert face is not None and face.crop_key is not None
    crop = raw_blob(samples_ft, face.crop_key)
    with pytest.raises(KeyUnavailableError, match="sealed as something else"):
        samples_ft.vault.open("template", crop)
    with pytest.raises(KeyUnavailableError, match="damaged"):
        samples_ft.vault.open("crops", crop[:-1] + bytes([crop[-1] ^ 1]))


def test_rotation_on_the_command_line_is_refused_while_a_server_holds_the_directory(
        samples_store: Path, tmp_path: Path, actor: Actor) -> None:
    from typer.testing import CliRunner

    from facetrail.cli.main import app

    data = copy_of(samples_store, tmp_path)
    runner = CliRunner()
    server = Facetrail.open(data, workers=1)  # it would go on wrapping new keys with the old master key
    busy = runner.invoke(app, ["--data", str(data), "keys", "rotate"])
    assert busy.exit_code == 1 and "in use" in busy.output
    server.close()
    done = runner.invoke(app, ["--data", str(data), "keys", "rotate", "--json"])
    assert done.exit_code == 0, done.output
    ft = Facetrail.open(data, workers=1)
    try:
        assert search_ids(ft, actor)
        assert "keys.rotate" in [e.action for e in ft.read_audit(actor, limit=1000)]
    finally:
        ft.close()


def test_rotating_a_master_key_from_the_environment(tmp_path: Path, actor: Actor) -> None:
    from typer.testing import CliRunner

    from facetrail.cli.main import app
    from facetrail.crypto.master import read_key_file
    from tests.conftest import add_source

    old = base64.b64encode(new_key_bytes()).decode()
    data = tmp_path / "data"
    ft = Facetrail.open(data, create=True, workers=1, master_key=old)
    ft.ingest.ingest(actor, add_source(ft), _items(ft, "obama.jpg", "obama2.jpg"))
    ft.close()
    new_file = tmp_path / "new.key"
    runner = CliRunner()
    done = runner.invoke(app, ["--data", str(data), "keys", "rotate", "--new-key-file", str(new_file), "--json"],
                         env={"FACETRAIL_MASTER_KEY": old})
    assert done.exit_code == 0, done.output
    written = new_file.read_text()
    again = runner.invoke(app, ["--data", str(data), "keys", "rotate", "--new-key-file", str(new_file)],
                          env={"FACETRAIL_MASTER_KEY": old})  # the old key opens nothing now
    assert again.exit_code == 1 and "not by the one given" in again.output and new_file.read_text() == written
    new = written.strip()
    assert read_key_file(new_file).key_id != LocalMasterKey(base64.b64decode(old), "old").key_id
    with pytest.raises(KeyUnavailableError):
        Facetrail.open(data, workers=1, master_key=old)
    ft = Facetrail.open(data, workers=1, master_key=new)
    try:
        assert search_ids(ft, actor)
        assert "keys.rotate" in [e.action for e in ft.read_audit(actor, limit=1000)]
    finally:
        ft.close()
