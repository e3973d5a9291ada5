"""The store: migrations match the models, a current store opens without Alembic, and the SQLite pragmas
erasure depends on are set."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory

from facetrail.store.db import SCHEMA_HEAD, Database, schema_revisions
from facetrail.store.models import Base
from tests.conftest import ROOT, alembic_config, migrated_to

OPEN = """
import json, sys
from facetrail.store.db import Database
db = Database(sys.argv[1])
db.migrate()
print(json.dumps({"alembic": "alembic" in sys.modules}))
"""


def test_migrations_create_exactly_the_models(tmp_path: Path) -> None:
    db = Database(f"sqlite:///{tmp_path / 'x.db'}")
    db.migrate()
    with db.engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    assert diff == []
    db.migrate()  # idempotent


def test_the_schema_head_is_the_newest_migration() -> None:
    assert ScriptDirectory.from_config(alembic_config()).get_heads() == [SCHEMA_HEAD]


def test_a_current_store_opens_without_alembic_and_an_old_one_is_upgraded(tmp_path: Path) -> None:
    def opened(url: str) -> bool:
        """Open the store at `url` in a fresh process: whether Alembic was imported."""
        proc = subprocess.run([sys.executable, "-c", OPEN, url], capture_output=True, text=True, cwd=ROOT, timeout=120)
        assert proc.returncode == 0, proc.stderr[-2000:]
        return bool(json.loads(proc.stdout)["alembic"])

    new = f"sqlite:///{tmp_path / 'x.db'}"
    assert opened(new)  # a new store: Alembic creates the schema
    assert not opened(new)  # current: nothing to migrate, Alembic not even imported
    old = Database(f"sqlite:///{tmp_path / 'old.db'}")
    migrated_to(old.engine, "0012_url_sources")
    assert schema_revisions(old.engine) == {"0012_url_sources"}
    assert opened(old.url)  # one migration behind: Alembic runs it
    assert schema_revisions(old.engine) == {SCHEMA_HEAD}
    with old.engine.connect() as conn:
        assert compare_metadata(MigrationContext.configure(conn), Base.metadata) == []
    old.dispose()


def test_sqlite_pragmas(tmp_path: Path) -> None:
    db = Database(f"sqlite:///{tmp_path / 'x.db'}")
    db.migrate()
    with db.engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA secure_delete").scalar() == 1
        assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
