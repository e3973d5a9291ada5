"""The keyring: every data key, wrapped by the master key, in its own small database (`keys/keyring.db`).

It lives apart from the store on purpose. A backup copies the store, the blobs and the index (ciphertext
only) but never the keyring, so destroying a data key here (crypto-shredding) makes every copy of that
record's ciphertext unreadable, old backups included. For the same reason the erasure ledger is kept here:
it must outlive any restore of an older store.

SQLite with WAL and secure_delete; a destroyed key is zeroed in the file and the log is truncated, so the
wrapped key survives nowhere on disk. Connections are opened per operation, which keeps it safe across
threads and processes (the server beside a command-line ingestion).
"""

from __future__ import annotations

import json
import os
import secrets
import sqlite3
import time
from collections.abc import Collection, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from facetrail.crypto.master import MasterKey, new_key_bytes
from facetrail.errors import FacetrailError, KeyUnavailableError

SCHEMA = """
CREATE TABLE IF NOT EXISTS data_keys (
    id TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    wrapped BLOB NOT NULL,
    master_id TEXT NOT NULL,
    created_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS erasure_ledger (uid TEXT PRIMARY KEY, at TEXT NOT NULL, entry TEXT NOT NULL);
"""
CHUNK = 500
INDEX_KEY = "index_key"
MASTER_ID = "master_id"
KEYRING_ID = "keyring_id"  # names this keyring: a backup records it, a restore checks it
RETIRED_INDEX_KEYS = "retired_index_keys"


class WrongMasterKeyError(KeyUnavailableError):
    def __init__(self, expected: str, given: str) -> None:
        super().__init__(f"the keyring is wrapped by master key {expected}, not by the one given ({given})")
        self.expected = expected
        self.given = given


def keyring_id_of(path: Path) -> str | None:
    """The id of the keyring at `path` (None when there is none), read without any key."""
    if not path.exists():
        return None
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=60)
    try:
        row = conn.execute("SELECT value FROM meta WHERE key = ?", (KEYRING_ID,)).fetchone()
        return str(row[0]) if row else None
    except sqlite3.DatabaseError:
        return None
    finally:
        conn.close()


def new_key_id() -> str:
    return secrets.token_hex(16)


def _aad(key_id: str) -> bytes:
    return b"facetrail-data-key\0" + key_id.encode()


class Keyring:
    def __init__(self, path: Path, master: MasterKey) -> None:
        self.path = path
        self.master = master
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        if not path.exists():
            os.close(os.open(path, os.O_WRONLY | os.O_CREAT, 0o600))  # owner only, like the key file
        with self._connect() as conn:
            conn.executescript(SCHEMA)  # idempotent; executescript manages its own transaction
        with self._connect(write=True) as conn:
            row = conn.execute("SELECT value FROM meta WHERE key = ?", (MASTER_ID,)).fetchone()
            if row is None:
                conn.execute("INSERT INTO meta VALUES (?, ?)", (MASTER_ID, master.key_id))
            elif row[0] != master.key_id:
                raise WrongMasterKeyError(str(row[0]), master.key_id)
            conn.execute("INSERT OR IGNORE INTO meta VALUES (?, ?)", (KEYRING_ID, new_key_id()))
            self.keyring_id = str(conn.execute("SELECT value FROM meta WHERE key = ?", (KEYRING_ID,)).fetchone()[0])

    @contextmanager
    def _connect(self, *, write: bool = False) -> Iterator[sqlite3.Connection]:
        conn = sqlite3.connect(self.path, timeout=60, isolation_level=None)
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA secure_delete=ON")
            conn.execute("PRAGMA synchronous=FULL")
            if write:
                conn.execute("BEGIN IMMEDIATE")
                try:
                    yield conn
                except BaseException:
                    conn.execute("ROLLBACK")
                    raise
                conn.execute("COMMIT")
            else:
                yield conn
        finally:
            conn.close()

    # -- data keys -----------------------------------------------------------------------------------
    def create(self, kind: str, count: int = 1) -> list[tuple[str, bytes]]:
        """New data keys, durable before they are returned (so no record ever names a key that was lost)."""
        with self._connect(write=True) as conn:
            keys = [(key_id, self._insert(conn, key_id, kind)) for key_id in (new_key_id() for _ in range(count))]
        return keys

    def get(self, key_ids: Collection[str]) -> dict[str, bytes]:
        """The unwrapped data keys that exist among these ids (destroyed ones are simply absent)."""
        ids = sorted(set(key_ids))
        found: dict[str, bytes] = {}
        with self._connect() as conn:
            for start in range(0, len(ids), CHUNK):
                chunk = ids[start:start + CHUNK]
                marks = ",".join("?" * len(chunk))
                for key_id, wrapped, master_id in conn.execute(
                        f"SELECT id, wrapped, master_id FROM data_keys WHERE id IN ({marks})", chunk):
                    if master_id != self.master.key_id:
                        raise KeyUnavailableError(f"data key {key_id} was wrapped by master key {master_id}, "
                                                  f"not by the one given ({self.master.key_id})")
                    found[key_id] = self.master.unwrap(wrapped, _aad(key_id))
        return found

    def existing(self, key_ids: Collection[str]) -> set[str]:
        ids = sorted(set(key_ids))
        present: set[str] = set()
        with self._connect() as conn:
            for start in range(0, len(ids), CHUNK):
                chunk = ids[start:start + CHUNK]
                marks = ",".join("?" * len(chunk))
                present.update(row[0] for row in conn.execute(
                    f"SELECT id FROM data_keys WHERE id IN ({marks})", chunk))
        return present

    def count(self) -> int:
        with self._connect() as conn:
            return int(conn.execute("SELECT count(*) FROM data_keys").fetchone()[0])

    def is_empty(self) -> bool:
        """Whether the keyring holds no key at all (one row read, unlike count())."""
        with self._connect() as conn:
            return conn.execute("SELECT 1 FROM data_keys LIMIT 1").fetchone() is None

    def destroy(self, key_ids: Collection[str], ledger: dict[str, Any] | None = None) -> int:
        """Destroy data keys for good (recording the erasure in the ledger in the same transaction); then
        truncate the log so no copy of a wrapped key stays in it. Returns how many existed."""
        with self._connect(write=True) as conn:
            destroyed = self._delete_keys(conn, key_ids)
            if ledger is not None:
                conn.execute("INSERT OR REPLACE INTO erasure_ledger VALUES (?, ?, ?)",
                             (ledger["uid"], datetime.now(UTC).isoformat(), json.dumps(ledger, sort_keys=True)))
        self.checkpoint()
        return destroyed

    def _delete_keys(self, conn: sqlite3.Connection, key_ids: Collection[str]) -> int:
        ids = sorted(set(key_ids))
        destroyed = 0
        for start in range(0, len(ids), CHUNK):
            chunk = ids[start:start + CHUNK]
            marks = ",".join("?" * len(chunk))
            destroyed += conn.execute(f"DELETE FROM data_keys WHERE id IN ({marks})", chunk).rowcount
        return destroyed

    def checkpoint(self) -> None:
        """Fold the log into the file and truncate it; raise if readers kept it busy (the caller's step is
        then finished later: an erasure resumes, and destroying keys again is a no-op)."""
        for attempt in range(20):
            with self._connect() as conn:
                row = conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
            if row is None or int(row[0]) == 0:
                return
            time.sleep(0.05 * (attempt + 1))
        raise FacetrailError(f"the keyring's log {self.path}-wal could not be truncated while other connections "
                             "read it; destroyed keys may remain in it until the step is finished again")

    def rewrap(self, new_master: MasterKey) -> int:
        """Re-wrap every data key under a new master key in one transaction (the data is not touched)."""
        with self._connect(write=True) as conn:
            rows = conn.execute("SELECT id, wrapped, master_id FROM data_keys").fetchall()
            for key_id, wrapped, master_id in rows:
                if master_id == new_master.key_id:
                    continue  # done by an earlier, interrupted rotation
                if master_id != self.master.key_id:
                    raise KeyUnavailableError(f"data key {key_id} was wrapped by an unknown master key {master_id}")
                key = self.master.unwrap(wrapped, _aad(key_id))
                conn.execute("UPDATE data_keys SET wrapped = ?, master_id = ? WHERE id = ?",
                             (new_master.wrap(key, _aad(key_id)), new_master.key_id, key_id))
            conn.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (MASTER_ID, new_master.key_id))
        self.checkpoint()  # the old wrappings leave the log too
        self.master = new_master
        return len(rows)

    def master_ids(self) -> set[str]:
        """The master keys the stored data keys are wrapped by (one, except during a rotation)."""
        with self._connect() as conn:
            return {row[0] for row in conn.execute("SELECT DISTINCT master_id FROM data_keys")}

    # -- the index key -------------------------------------------------------------------------------
    def index_key(self) -> str:
        """The id of the data key the index file is sealed with now (created on first use)."""
        with self._connect() as conn:  # a read, without the write lock, on every index save
            row = conn.execute("SELECT value FROM meta WHERE key = ?", (INDEX_KEY,)).fetchone()
        if row is not None:
            return str(row[0])
        with self._connect(write=True) as conn:
            row = conn.execute("SELECT value FROM meta WHERE key = ?", (INDEX_KEY,)).fetchone()
            if row is not None:
                return str(row[0])
            key_id = new_key_id()
            self._insert(conn, key_id, "index")
            conn.execute("INSERT INTO meta VALUES (?, ?)", (INDEX_KEY, key_id))
            return key_id

    def rotate_index_key(self) -> str:
        """Seal the index under a new key from now on; the old one is retired, to be destroyed once the
        index has been saved under the new key (see `destroy_retired_index_keys`)."""
        with self._connect(write=True) as conn:
            row = conn.execute("SELECT value FROM meta WHERE key = ?", (INDEX_KEY,)).fetchone()
            retired = self._retired(conn)
            if row is not None:
                retired.append(str(row[0]))
            key_id = new_key_id()
            self._insert(conn, key_id, "index")
            conn.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (INDEX_KEY, key_id))
            conn.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (RETIRED_INDEX_KEYS, json.dumps(retired)))
            return key_id

    def retired_index_keys(self) -> list[str]:
        with self._connect() as conn:
            return self._retired(conn)

    def destroy_retired_index_keys(self) -> int:
        """Destroy the keys that earlier index files were sealed under, once the index was persisted under the
        current one; then truncate the log, as `destroy` does. Returns how many existed."""
        with self._connect(write=True) as conn:
            destroyed = self._delete_keys(conn, self._retired(conn))
            conn.execute("DELETE FROM meta WHERE key = ?", (RETIRED_INDEX_KEYS,))
        self.checkpoint()
        return destroyed


    def _retired(self, conn: sqlite3.Connection) -> list[str]:
        row = conn.execute("SELECT value FROM meta WHERE key = ?", (RETIRED_INDEX_KEYS,)).fetchone()
        return list(json.loads(row[0])) if row else []

    def _insert(self, conn: sqlite3.Connection, key_id: str, kind: str) -> bytes:
        key = new_key_bytes()
        conn.execute("INSERT INTO data_keys VALUES (?, ?, ?, ?, ?)",
                     (key_id, kind, self.master.wrap(key, _aad(key_id)), self.master.key_id,
                      datetime.now(UTC).isoformat()))
        return key

    # -- the erasure ledger --------------------------------------------------------------------------
    def record(self, entry: dict[str, Any]) -> None:
        """Add a line to the ledger (what a restore must re-apply); `uid` makes it idempotent."""
        with self._connect(write=True) as conn:
            conn.execute("INSERT OR REPLACE INTO erasure_ledger VALUES (?, ?, ?)",
                         (entry["uid"], datetime.now(UTC).isoformat(), json.dumps(entry, sort_keys=True)))

    def ledger(self) -> list[dict[str, Any]]:
        with self._connect() as conn:
            return [json.loads(row[0]) for row in conn.execute("SELECT entry FROM erasure_ledger ORDER BY at, uid")]
