"""What an insider with write access to the data directory can do to the audit log: rewrite its rows at will
(dropping and recreating the append-only triggers), recompute every hash of the chain and the head anchor, and
delete the checkpoints kept in the data directory. Checkpoints kept elsewhere must still catch it."""

from __future__ import annotations

import shutil
import sqlite3
from collections.abc import Callable
from pathlib import Path

from facetrail.audit.log import GENESIS, entry_hash

Row = dict[str, str]
TRIGGERS = ("audit_log_no_update", "audit_log_no_delete")


def rows(data: Path) -> list[Row]:
    conn = sqlite3.connect(data / "facetrail.db")
    try:
        cursor = conn.execute("SELECT seq, at, actor, action, details FROM audit_log ORDER BY seq")
        return [{"at": at, "actor": actor, "action": action, "details": details}
                for _seq, at, actor, action, details in cursor]
    finally:
        conn.close()


def rewrite(data: Path, change: Callable[[list[Row]], list[Row]]) -> None:
    """Replace the log by `change(rows)`, renumbered from 1 and re-chained, with a matching head anchor."""
    new = change(rows(data))
    conn = sqlite3.connect(data / "facetrail.db")
    triggers = [sql for (sql,) in conn.execute(
        "SELECT sql FROM sqlite_master WHERE type = 'trigger' AND tbl_name = 'audit_log'")]
    assert len(triggers) == len(TRIGGERS)
    for name in TRIGGERS:
        conn.execute(f"DROP TRIGGER {name}")
    conn.execute("DELETE FROM audit_log")
    prev = GENESIS
    for seq, row in enumerate(new, start=1):
        digest = entry_hash(seq=seq, prev_hash=prev, **row)
        conn.execute("INSERT INTO audit_log (seq, at, actor, action, details, prev_hash, hash) "
                     "VALUES (?, ?, ?, ?, ?, ?, ?)",
                     (seq, row["at"], row["actor"], row["action"], row["details"], prev, digest))
        prev = digest
    for sql in triggers:
        conn.execute(sql)
    conn.commit()
    conn.close()
    head = data / "audit.head"
    if new:
        head.write_text(f"{len(new)} {prev}\n")
    else:
        head.unlink(missing_ok=True)
    shutil.rmtree(data / "audit-checkpoints", ignore_errors=True)
