"""`backup create`: a consistent copy of the store, its blobs and the index, taken while the system runs.

What goes in: a snapshot of the database (SQLite's online backup, one read transaction), the blobs that
snapshot refers to, the index file and the audit head anchor, with a manifest of SHA-256 sums. The database and
the index files are streamed into the archive a block at a time (hashed on the way), never read whole: at 10M
faces the index file alone is 10 GB. Every
template, crop, image, selfie and package in it is ciphertext (crypto/); the keyring and the master key are
deliberately left out. So the archive is useless without the live keyring, and a person erased after the
backup was taken stays erased in it: their data keys are gone (crypto-shredding) and a restore re-applies
the erasure ledger (restore.py).

Blobs deleted between the snapshot and their copy (an erasure running meanwhile) are simply missing from the
archive: the restore's re-application of the ledger removes the rows that name them. The archive is written
to a temporary name, fsynced and renamed, so a crash (even SIGKILL) leaves no half-written backup under the
real name, and the data directory is never changed by a backup.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import secrets
import shutil
import sqlite3
import tarfile
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import IO

from facetrail import __version__
from facetrail.accounts.roles import Action, Actor, require
from facetrail.crashpoints import crash_point
from facetrail.errors import ConflictError, FacetrailError, InvalidValueError
from facetrail.fsutil import PRIVATE_FILE, fsync_dir, private_dir, private_opener
from facetrail.runtime import Facetrail
from facetrail.timestamps import now_iso

FORMAT = "facetrail-backup-1"
MANIFEST = "manifest.json"
DATABASE = "facetrail.db"
HEAD = "audit.head"
BLOB_COLUMNS = (("faces", "crop_key"), ("images", "blob_key"), ("rights_requests", "selfie_key"),
                ("rights_requests", "package_key"))


@dataclass(frozen=True)
class BackupReport:
    path: str
    created_at: str
    bytes: int
    sha256: str
    faces: int
    images: int
    blobs: int
    blobs_missing: int
    audit_entries: int


def create_backup(ft: Facetrail, actor: Actor, dest: Path,
                  progress: Callable[[int, int], None] | None = None) -> BackupReport:
    """Write a backup archive to `dest` (a new file) and record it in the audit log."""
    require(actor, Action.BACKUP)
    refuse_server_database(ft.settings.database_url)
    refuse_bucket_blobs(ft.settings.blob_url)
    if dest.exists():
        raise InvalidValueError("path", f"{dest} exists already; a backup never overwrites a file")
    if not dest.parent.is_dir():
        raise InvalidValueError("path", f"{dest.parent} is not a directory")
    dest = dest.resolve()
    if dest.is_relative_to(ft.data.resolve()):
        raise InvalidValueError("path", "a backup inside the data directory would be backed up into the next one")
    _clean_leftovers(ft.data / "tmp", "backup-*", 1)
    _clean_leftovers(dest.parent, f".{dest.name}.*.partial", -2)
    work = ft.data / "tmp" / f"backup-{os.getpid()}-{secrets.token_hex(4)}"
    private_dir(work)
    partial = dest.with_name(f".{dest.name}.{os.getpid()}.partial")
    try:
        # The head anchor first: read before the snapshot, it can only be at or behind the snapshot's log.
        head = (ft.data / HEAD).read_bytes() if (ft.data / HEAD).exists() else b""
        snapshot = work / DATABASE
        _snapshot_database(ft.data / DATABASE, snapshot)
        facts, keys = _facts(snapshot)
        sums: dict[str, str] = {}
        missing = 0
        with open(partial, "wb", opener=private_opener) as raw, \
                tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
            with open(snapshot, "rb") as db:
                _add_file(tar, DATABASE, db, sums)
            _add(tar, HEAD, head, sums)
            with _index_files(ft) as index_files:
                for name, fh in index_files:
                    _add_file(tar, name, fh, sums)
            for done, key in enumerate(keys, 1):
                blob = ft.blobs.raw(key)
                if blob is None:
                    missing += 1  # erased since the snapshot
                else:
                    _add(tar, f"blobs/{key}", blob, sums)
                if progress is not None:
                    progress(done, len(keys))
                crash_point("backup_blobs")
            created = now_iso(precise=True)
            manifest = {"format": FORMAT, "version": __version__, "created_at": created, "files": sums,
                        "blobs_missing": missing, "keyring_id": ft.vault.keyring.keyring_id, **asdict(facts)}
            _add(tar, MANIFEST, json.dumps(manifest, indent=1, sort_keys=True).encode(), {})
            tar.close()
            raw.flush()
            os.fsync(raw.fileno())
        os.replace(partial, dest)
        fsync_dir(dest.parent)
    except OSError as exc:
        raise FacetrailError(f"backup to {dest} failed: {exc.strerror or exc}") from exc
    finally:
        partial.unlink(missing_ok=True)  # gone after the rename; removed after any failure
        shutil.rmtree(work, ignore_errors=True)
    digest = _file_sha256(dest)
    report = BackupReport(path=str(dest), created_at=created, bytes=dest.stat().st_size, sha256=digest,
                          faces=facts.faces, images=facts.images, blobs=len(keys) - missing,
                          blobs_missing=missing, audit_entries=facts.audit_entries)
    with ft.db.write() as session, session.begin():
        ft.audit.record(session, actor=actor.name, action="backup.create", details=asdict(report))
    return report


PG_DUMP_ADVICE = ("this data directory's metadata store is a PostgreSQL server: back the database up with its "
                  "own tools (pg_dump, or the server's base backups and WAL archive); `facetrail backup` copies a "
                  "SQLite store only")


def refuse_server_database(url: str) -> None:
    """Backups hold a SQLite store; a PostgreSQL store is backed up with pg_dump (README, PostgreSQL)."""
    if not url.startswith("sqlite"):
        raise ConflictError(PG_DUMP_ADVICE)


BUCKET_ADVICE = ("this data directory keeps its blobs in an S3-compatible bucket (blob_url): `facetrail backup` "
                 "copies a data directory's blobs folder only. Protect the bucket with its own versioning and "
                 "replication; old versions hold sealed bytes only, which erasure's destroyed keys leave unreadable, "
                 "and lifecycle rules should expire noncurrent versions")


def refuse_bucket_blobs(blob_url: str | None) -> None:
    """Backups hold the blobs folder; blobs in a bucket are the bucket's to keep (README, blobs on S3)."""
    if blob_url is not None:
        raise ConflictError(BUCKET_ADVICE)


def _clean_leftovers(folder: Path, pattern: str, pid_at: int) -> None:
    """Remove what backups killed half-way left (work folders, partial archives) once their process is gone;
    `pid_at` is where the process id sits among the name's '-' or '.' separated parts."""
    for path in folder.glob(pattern):
        parts = path.name.replace("-", ".").split(".")
        pid = parts[pid_at] if len(parts) > abs(pid_at) else ""
        if pid.isdigit() and not Path(f"/proc/{pid}").exists():
            if path.is_dir():
                shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink(missing_ok=True)


def _snapshot_database(source: Path, target: Path) -> None:
    """A consistent copy of a live database (WAL included), taken in one read transaction."""
    src = sqlite3.connect(source, timeout=60)
    os.close(os.open(target, os.O_WRONLY | os.O_CREAT, PRIVATE_FILE))  # owner-only before SQLite writes it
    dst = sqlite3.connect(target)
    try:
        src.backup(dst)
        dst.execute("PRAGMA journal_mode=DELETE")  # one self-contained file
    finally:
        dst.close()
        src.close()


@dataclass(frozen=True)
class _Facts:
    """What the manifest says about the snapshot (and which blobs it names)."""

    schema: str
    faces: int
    images: int
    audit_entries: int
    audit_last_hash: str


def _facts(snapshot: Path) -> tuple[_Facts, list[str]]:
    conn = sqlite3.connect(snapshot)
    try:
        keys: set[str] = set()
        for table, column in BLOB_COLUMNS:
            keys.update(row[0] for row in conn.execute(f"SELECT {column} FROM {table} WHERE {column} IS NOT NULL"))
        last = conn.execute("SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1").fetchone()
        facts = _Facts(schema=conn.execute("SELECT version_num FROM alembic_version").fetchone()[0],
                       faces=conn.execute("SELECT count(*) FROM faces").fetchone()[0],
                       images=conn.execute("SELECT count(*) FROM images").fetchone()[0],
                       audit_entries=last[0] if last else 0, audit_last_hash=last[1] if last else "")
        return facts, sorted(keys)
    finally:
        conn.close()


@contextmanager
def _index_files(ft: Facetrail) -> Iterator[list[tuple[str, IO[bytes]]]]:
    """The persisted index file(s), opened under the index's writers' lock so none is caught half-replaced. An open
    file keeps the snapshot it was opened on: a compaction that renames a new one over it meanwhile leaves it whole."""
    ft.gallery.index()  # loaded (repaired if need be) and in step with the store
    ft.gallery.persist()
    with ExitStack() as files:
        with ft.gallery.writing():
            opened: list[tuple[str, IO[bytes]]] = [
                (f"index/{path.name}", files.enter_context(open(path, "rb")))
                for path in sorted((ft.data / "index").glob("*.ftindex"))]
            unsafe = ft.gallery.unsafe_at_rest()
        if unsafe is not None:
            raise FacetrailError(f"the index cannot be backed up: {unsafe}; open the data directory with this "
                                 "version (or `facetrail index rebuild`) before backing it up")
        yield opened


def _add(tar: tarfile.TarFile, name: str, data: bytes, sums: dict[str, str]) -> None:
    _add_file(tar, name, io.BytesIO(data), sums, len(data))


def _add_file(tar: tarfile.TarFile, name: str, fh: IO[bytes], sums: dict[str, str], size: int | None = None) -> None:
    """Stream an open file (its size now) into the archive a block at a time, its SHA-256 taken on the way."""
    info = tarfile.TarInfo(name)
    info.size = os.fstat(fh.fileno()).st_size if size is None else size
    info.mode = 0o600
    info.mtime = int(datetime.now(UTC).timestamp())
    reader = HashingReader(fh)
    tar.addfile(info, reader)  # reads exactly info.size bytes; a file cut short meanwhile is an OSError
    sums[name] = reader.digest.hexdigest()


class HashingReader:
    """A file's reads, hashed (SHA-256) as they pass."""

    def __init__(self, fh: IO[bytes]) -> None:
        self._fh = fh
        self.digest = hashlib.sha256()

    def read(self, size: int = -1) -> bytes:
        block = self._fh.read(size)
        self.digest.update(block)
        return block


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
