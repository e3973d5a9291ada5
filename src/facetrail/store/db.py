"""Engine, sessions and migrations for the metadata store (SQLite by default, PostgreSQL at scale)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event, inspect, make_url, select
from sqlalchemy.orm import Session, sessionmaker

from facetrail.fsutil import PRIVATE_FILE
from facetrail.store.models import Meta

MIGRATIONS = Path(__file__).with_name("migrations")
SCHEMA_HEAD = "0013_video"
"""The newest migration's revision (tests/store/test_db.py checks it against the migrations). A store already at it
is opened without Alembic, whose import and loading of the migration scripts cost about 0.1 s on every command."""
INDEX_GENERATION = "index_generation"
WRITE_OPTION = "facetrail_write"
WRITERS_LOCK = 0x66616365  # PostgreSQL advisory lock key of the store's writers ("face")


def make_engine(url: str) -> Engine:
    """An engine with the pragmas facetrail relies on for SQLite (WAL, secure_delete, FKs), or a PostgreSQL
    engine whose writers serialise on an advisory lock (what SQLite's BEGIN IMMEDIATE does with its file lock)."""
    if url.startswith("sqlite"):
        _create_private(url)
        engine = create_engine(url, connect_args={"timeout": 60, "check_same_thread": False})
        event.listen(engine, "connect", _sqlite_pragmas)
        event.listen(engine, "begin", _sqlite_begin)
        return engine
    parsed = make_url(url)
    if parsed.get_backend_name() != "postgresql":
        raise ValueError(f"unsupported database URL {parsed.render_as_string(hide_password=True)!r}: "
                         "facetrail's metadata store is SQLite or PostgreSQL")
    if parsed.drivername == "postgresql":
        parsed = parsed.set(drivername="postgresql+psycopg")  # psycopg 3, the driver facetrail ships with
    # Times are stored as UTC without a zone; the session's zone must not shift them.
    engine = create_engine(parsed, pool_pre_ping=True, connect_args={"options": "-c timezone=UTC"})
    event.listen(engine, "begin", _postgres_begin)
    return engine


def _create_private(url: str) -> None:
    """Create a new SQLite database file owner-only: SQLite gives its -wal, -shm and -journal files the same mode."""
    name = make_url(url).database
    if name and name != ":memory:" and not name.startswith("file:"):
        os.close(os.open(name, os.O_WRONLY | os.O_CREAT, PRIVATE_FILE))


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    dbapi_conn.isolation_level = None  # let the "begin" listener issue BEGIN IMMEDIATE
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    # Deleted rows are overwritten with zeros rather than left in free pages (erasure, rule 9).
    cur.execute("PRAGMA secure_delete=ON")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA synchronous=FULL")
    cur.execute("PRAGMA busy_timeout=60000")
    cur.close()


def _sqlite_begin(conn: Any) -> None:
    # Writers take the write lock at BEGIN, so a read-then-write transaction (the audit chain)
    # can never fail half-way on a snapshot another writer moved; readers stay deferred and
    # never block a writer in WAL mode.
    writing = conn.get_execution_options().get(WRITE_OPTION, False)
    conn.exec_driver_sql("BEGIN IMMEDIATE" if writing else "BEGIN")


def _postgres_begin(conn: Any) -> None:
    # Writers hold the writers' lock until their transaction ends, so a read-then-write transaction (the audit
    # chain, idempotent ingestion) runs alone among writers; at READ COMMITTED each statement after the lock sees
    # every earlier writer's commit. Readers run at REPEATABLE READ: one snapshot for the whole transaction, like
    # a SQLite read transaction, and they never wait for writers.
    if conn.get_execution_options().get(WRITE_OPTION, False):
        conn.exec_driver_sql(f"SELECT pg_advisory_xact_lock({WRITERS_LOCK})")


def schema_revisions(engine: Engine) -> set[str]:
    """The revisions Alembic recorded in the store (none in a new one)."""
    with engine.connect() as conn:
        if not inspect(conn).has_table("alembic_version"):
            return set()
        return {row[0] for row in conn.exec_driver_sql("SELECT version_num FROM alembic_version")}


def migrate(engine: Engine) -> None:
    """Bring the schema to the newest Alembic revision (creates it on an empty database)."""
    if schema_revisions(engine) == {SCHEMA_HEAD}:
        return
    from alembic import command
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    if engine.dialect.name == "postgresql":  # two processes opening a new store at once: one migrates
        engine = engine.execution_options(**{WRITE_OPTION: True})
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "head")


class Database:
    """The store's engine with two kinds of session: `read()` and `write()` (serialised writers)."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.engine = make_engine(url)
        reading = (self.engine.execution_options(isolation_level="REPEATABLE READ")
                   if self.engine.dialect.name == "postgresql" else self.engine)
        self.read = sessionmaker(reading, expire_on_commit=False)
        self.write = sessionmaker(self.engine.execution_options(**{WRITE_OPTION: True}),
                                  expire_on_commit=False)

    @property
    def is_sqlite(self) -> bool:
        return self.engine.dialect.name == "sqlite"

    def migrate(self) -> None:
        migrate(self.engine)

    def checkpoint(self) -> bool:
        """Fold the write-ahead log into the database file and truncate it (SQLite only).

        Returns False when a reader or writer of another connection kept SQLite from finishing (the
        busy timeout ran out), so a caller that must leave no bytes in the log (erasure) can retry."""
        if not self.url.startswith("sqlite"):
            return True
        with self.engine.connect() as conn:
            row = conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
        # (busy, frames in the log, frames checkpointed): busy = 1 means it could not complete.
        return row is None or int(row[0]) == 0

    def dispose(self) -> None:
        self.engine.dispose()


def get_generation(session: Session) -> int:
    """The store's index generation: it grows with every change to the set of searchable faces."""
    row = session.scalar(select(Meta).where(Meta.key == INDEX_GENERATION))
    return int(row.value) if row else 0


def bump_generation(session: Session) -> int:
    """Increase the index generation inside the caller's transaction and return the new value."""
    row = session.scalar(select(Meta).where(Meta.key == INDEX_GENERATION))
    if row is None:
        row = Meta(key=INDEX_GENERATION, value="0")
        session.add(row)
    row.value = str(int(row.value) + 1)
    return int(row.value)
