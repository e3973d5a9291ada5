"""The metadata store's URL (SQLite in the data directory, or PostgreSQL), its guards on either, and what is
refused on PostgreSQL."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import create_engine
from sqlalchemy.exc import DBAPIError

from facetrail.accounts.roles import Actor
from facetrail.backup.archive import create_backup
from facetrail.backup.restore import restore_backup
from facetrail.config import get_settings
from facetrail.errors import ConflictError, KeyUnavailableError
from facetrail.runtime import Facetrail, local_actor
from facetrail.store.db import Database
from tests.conftest import StoreDb, add_source


def test_the_store_url_defaults_to_the_file_in_the_data_directory(tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("FACETRAIL_DB_URL", raising=False)
    assert get_settings(data=tmp_path).database_url == f"sqlite:///{tmp_path / 'facetrail.db'}"
    monkeypatch.setenv("FACETRAIL_DB_URL", "postgresql://facetrail@db.internal/facetrail")
    assert get_settings(data=tmp_path).database_url == "postgresql://facetrail@db.internal/facetrail"


def test_a_database_facetrail_cannot_run_on_is_refused_by_name() -> None:
    with pytest.raises(ValueError, match="unsupported database URL 'mysql://u:\\*\\*\\*@h/db'.*SQLite or PostgreSQL"):
        Database("mysql://u:secret@h/db")


@pytest.mark.parametrize(("table", "statement"), [
    ("audit_log", "DELETE FROM audit_log"),
    ("source_versions", "UPDATE source_versions SET reason = 'rewritten'"),
])
def test_the_append_only_tables_refuse_edits_on_either_database(ft: Facetrail, store_db: StoreDb, table: str,
                                                                statement: str) -> None:
    add_source(ft)
    engine = create_engine(store_db.url_for(ft.data))
    try:
        with engine.begin() as conn, pytest.raises(DBAPIError, match="append-only|never rewritten"):
            conn.exec_driver_sql(statement)
        with engine.connect() as conn:
            assert conn.exec_driver_sql(f"SELECT count(*) FROM {table}").scalar() >= 1
    finally:
        engine.dispose()


@pytest.mark.postgres_only
def test_backups_of_a_postgresql_store_are_refused_with_the_way_to_make_them(ft: Facetrail, actor: Actor,
                                                                            tmp_path: Path) -> None:
    with pytest.raises(ConflictError, match="PostgreSQL server: back the database up with its own tools \\(pg_dump"):
        create_backup(ft, actor, tmp_path / "b.tar")
    assert not (tmp_path / "b.tar").exists()
    (tmp_path / "old.tar").write_bytes(b"")
    with pytest.raises(ConflictError, match="pg_dump"):
        restore_backup(ft.settings, tmp_path / "old.tar", actor.name)


def test_a_second_data_directory_on_the_same_database_is_refused(ft: Facetrail, store_db: StoreDb,
                                                                 tmp_path: Path) -> None:
    """Its keyring could open none of the store's records: every face would look erased."""
    add_source(ft)
    with pytest.raises(KeyUnavailableError, match="belongs to the data directory of keyring .* database of its own"):
        Facetrail.open(tmp_path / "other", create=True, workers=1, db_url=store_db.url_for(ft.data))
    assert [s.name for s in ft.sources.list(local_actor())] == ["samples"]  # the store is as it was
