"""What an insider with write access to the data directory can do to the audit log: rewrite its rows at will
(dropping and recreating the append-only triggers), recompute every hash of the chain and the head anchor, and
delete the checkpoints kept in the data directory. Checkpoints kept elsewhere must still catch it."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import Connection, create_engine, text

from facetrail.audit.log import GENESIS, entry_hash

Row = dict[str, str]
TRIGGERS = ("audit_log_no_update", "audit_log_no_delete")


def store_url(data: Path) -> str:
    """The URL of the data directory's metadata store, as facetrail reads it (FACETRAIL_DB_URL or the file)."""
    return os.environ.get("FACETRAIL_DB_URL") or f"sqlite:///{data / 'facetrail.db'}"


@contextmanager
def unguarded(data: Path) -> Iterator[Connection]:
    """A transaction on the store behind facetrail's back with the audit log's append-only triggers off (dropped
    and recreated on SQLite, disabled on PostgreSQL, as the database's owner can), committed at the end."""
    engine = create_engine(store_url(data))
    try:
        with engine.begin() as conn:
            if conn.dialect.name == "sqlite":
                triggers = [sql for (sql,) in conn.exec_driver_sql(
                    "SELECT sql FROM sqlite_master WHERE type = 'trigger' AND tbl_name = 'audit_log'")]
                assert len(triggers) == len(TRIGGERS)
                for name in TRIGGERS:
                    conn.exec_driver_sql(f"DROP TRIGGER {name}")
                yield conn
                for sql in triggers:
                    conn.exec_driver_sql(sql)
            else:
                conn.exec_driver_sql("ALTER TABLE audit_log DISABLE TRIGGER audit_log_append_only")
                yield conn
                conn.exec_driver_sql("ALTER TABLE audit_log ENABLE TRIGGER audit_log_append_only")
    finally:
        engine.dispose()


def rows(data: Path) -> list[Row]:
    engine = create_engine(store_url(data))
    try:
        with engine.connect() as conn:
            cursor = conn.execute(text("SELECT seq, at, actor, action, details FROM audit_log ORDER BY seq"))
            return [{"at": at, "actor": actor, "action": action, "details": details}
                    for _seq, at, actor, action, details in cursor]
    finally:
        engine.dispose()


def rewrite(data: Path, change: Callable[[list[Row]], list[Row]]) -> None:
    """Replace the log by `change(rows)`, renumbered from 1 and re-chained, with a matching head anchor."""
    new = change(rows(data))
    prev = GENESIS
    with unguarded(data) as conn:
        conn.exec_driver_sql("DELETE FROM audit_log")
        for seq, row in enumerate(new, start=1):
            digest = entry_hash(seq=seq, prev_hash=prev, **row)
            conn.execute(text("INSERT INTO audit_log (seq, at, actor, action, details, prev_hash, hash) "
                              "VALUES (:seq, :at, :actor, :action, :details, :prev, :hash)"),
                         {"seq": seq, **row, "prev": prev, "hash": digest})
            prev = digest
    head = data / "audit.head"
    if new:
        head.write_text(f"{len(new)} {prev}\n")
    else:
        head.unlink(missing_ok=True)
    shutil.rmtree(data / "audit-checkpoints", ignore_errors=True)
