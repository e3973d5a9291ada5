"""Erasure completeness on PostgreSQL: no clear template or crop byte ever reaches the server (its table files
or its write-ahead log), and what an erasure leaves in them until VACUUM and WAL recycling (dead rows) is
ciphertext under destroyed keys (crypto-shredding, README: PostgreSQL)."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import text

from facetrail.accounts.roles import Actor
from facetrail.crypto.vault import is_sealed
from facetrail.errors import KeyUnavailableError
from facetrail.runtime import Facetrail
from facetrail.store.models import Face
from facetrail.store.templates import LABEL
from tests.conftest import StoreDb
from tests.rights.biden import StoredFace, engine_files, files_holding, find_biden, stored_faces

pytestmark = pytest.mark.postgres_only


def server_files(ft: Facetrail, store_db: StoreDb) -> list[Path]:
    """The server's files that can hold this store's bytes: its database's folder, the shared catalogs and the
    write-ahead log, after a checkpoint wrote every dirty page out."""
    assert store_db.cluster is not None
    store_db.cluster.checkpoint()
    with ft.db.read() as session:
        oid = session.scalar(text("SELECT oid FROM pg_database WHERE datname = current_database()"))
    root = store_db.cluster.data
    return [p for folder in (root / "base" / str(oid), root / "global", root / "pg_wal")
            for p in folder.rglob("*") if p.is_file()]


def holding(files: list[Path], needles: list[bytes]) -> list[int]:
    """Indexes of the needles that some file holds."""
    found: set[int] = set()
    for path in files:
        content = path.read_bytes()
        found.update(i for i, needle in enumerate(needles) if i not in found and needle in content)
    return sorted(found)


def all_faces(ft: Facetrail) -> list[StoredFace]:
    with ft.db.read() as session:
        ids = list(session.scalars(text("SELECT id FROM faces ORDER BY id")))
    return stored_faces(ft, ids)


def test_no_clear_template_or_crop_byte_is_ever_written_to_postgresql(samples_ft: Facetrail,
                                                                      store_db: StoreDb) -> None:
    ft = samples_ft
    faces = all_faces(ft)
    assert len(faces) == 26
    # Every binary column of every table holds sealed payloads only.
    with ft.db.read() as session:
        columns = session.execute(text("SELECT table_name, column_name FROM information_schema.columns WHERE "
                                       "table_schema = 'public' AND data_type = 'bytea'")).all()
        assert ("faces", "template") in columns
        for table, column in columns:
            for (value,) in session.execute(text(f'SELECT "{column}" FROM "{table}" WHERE "{column}" IS NOT NULL')):
                assert is_sealed(bytes(value)), (table, column)
    files = server_files(ft, store_db)
    assert holding(files, [f.template for f in faces] + [f.crop for f in faces]) == []
    # The scan sees what is there: the sealed templates are in the server's files.
    assert holding(files, [f.sealed for f in faces]) == list(range(len(faces)))


def test_what_an_erasure_leaves_in_postgresql_is_ciphertext_under_destroyed_keys(
        samples_ft: Facetrail, actor: Actor, store_db: StoreDb) -> None:
    ft = samples_ft
    faces = stored_faces(ft, find_biden(ft, actor))
    assert len(faces) == 4
    engine = engine_files(ft)  # a vector engine that stores vectors in clear (Milvus) holds them in its files only
    for face in faces:
        clear = files_holding(ft.data, face.template)
        assert bool(clear) == bool(engine) and all(f.startswith(engine) for f in clear), clear
    ft.erasure.erase(actor.name, [f.id for f in faces], request_id="REQ-PG")
    assert [files_holding(ft.data, f.template) for f in faces] == [[] for _ in faces]  # the engine's copy too
    with ft.db.read() as session:
        assert session.query(Face).filter(Face.id.in_([f.id for f in faces])).count() == 0
    files = server_files(ft, store_db)
    assert holding(files, [f.template for f in faces]) == []
    for face in faces:  # dead rows may keep the sealed bytes until VACUUM: nothing can open them any more
        with pytest.raises(KeyUnavailableError):
            ft.vault.open(LABEL, face.sealed)
        assert ft.vault.keyring.existing([face.key_id]) == set()
        assert files_holding(ft.data, face.sealed) == []  # and the data directory never held them
