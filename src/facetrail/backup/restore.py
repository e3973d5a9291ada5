"""`backup restore`: put a backup archive in place of the store, blobs and index, then re-apply the ledger.

The keyring and the master key stay as they are (a backup holds neither), so whatever was erased since the
backup was taken cannot be decrypted from it, and rights/reapply.py erases what the restored store still names.

Entries that the live audit log holds beyond the backup's are not thrown away: they are written to
`<data>/audit-archive/restore-<time>.jsonl`, still chained (each names the hash of the one before), and the
restore's own audit entry records the file's SHA-256, its entry count and its last hash.

Refused while any other process has the data directory open (a running server would keep writing to the
files being replaced). A crash during the restore is finished by the next open of the data directory.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import sqlite3
import tarfile
from datetime import UTC, datetime
from functools import partial
from pathlib import Path, PurePosixPath
from typing import IO, Any

from facetrail.audit.checkpoints import set_aside
from facetrail.backup.archive import (
    DATABASE,
    FORMAT,
    HEAD,
    MANIFEST,
    HashingReader,
    refuse_bucket_blobs,
    refuse_server_database,
)
from facetrail.config import Settings
from facetrail.crashpoints import crash_point
from facetrail.crypto.keyring import keyring_id_of
from facetrail.crypto.setup import keyring_path
from facetrail.datadir import require_data_dir, swap
from facetrail.errors import ConflictError, InvalidValueError
from facetrail.fsutil import atomic_write, fsync_dir, private_dir, write_synced
from facetrail.runtime import AUDIT_CHECKPOINTS, Facetrail
from facetrail.store.blobs import DirectoryStorage

MAX_MEMBERS = 50_000_000
COPY_BLOCK = 1 << 20
"""Bytes a restore copies from the archive at a time."""


def restore_backup(settings: Settings, archive: Path, actor_name: str) -> dict[str, Any]:
    """Restore `archive` into the data directory; returns the report the restore's audit entry holds."""
    data = settings.data
    refuse_server_database(settings.database_url)
    refuse_bucket_blobs(settings.blob_url)
    if not archive.is_file():
        raise InvalidValueError("path", f"{archive} is not a file")
    require_data_dir(data)  # a backup holds no keys: it restores into the data directory it was made from
    with swap.exclusive(data):
        if swap.read_journal(data) is not None:
            raise ConflictError("an interrupted restore is pending: open the data directory (any command) to "
                                "finish it first")
        staging = data / swap.STAGING
        shutil.rmtree(staging, ignore_errors=True)
        new = staging / "new"
        private_dir(new)
        try:
            manifest = _extract(archive, new)
            _check_keyring(settings, archive, manifest)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)  # nothing was changed: leave no trace either
            raise
        journal: dict[str, Any] = {
            "state": "swapping", "archive": str(archive.resolve()), "actor": actor_name,
            "backup_created_at": manifest["created_at"], "backup_faces": manifest["faces"],
            "backup_images": manifest["images"], "items": sorted(p.name for p in new.iterdir()),
            "audit_archive": _archive_audit_tail(data, int(manifest["audit_entries"])),
        }
        swap.write_journal(data, journal)
        crash_point("restore_journaled")
        swap.finish_swap(data)
        crash_point("restore_swapped")
    ft = Facetrail(settings)  # finishes the restore: re-applies the ledger, audits, removes the journal
    try:
        assert ft.restore_report is not None
        return ft.restore_report
    finally:
        ft.close()


def _extract(archive: Path, into: Path) -> dict[str, Any]:
    """Unpack and check a backup: known names only, regular files only, every SHA-256 as the manifest says."""
    try:
        with tarfile.open(archive, mode="r:") as tar:
            members = tar.getmembers()
            if len(members) > MAX_MEMBERS:
                raise InvalidValueError("path", f"{archive}: too many entries for a backup")
            by_name = {m.name: m for m in members}
            manifest = _manifest(archive, tar, by_name)
            sums: dict[str, str] = manifest["files"]
            for name, expected in sums.items():
                member = by_name.get(name)
                if member is None:
                    raise InvalidValueError("path", f"{archive}: {name} is missing")
                target = _target(into, name)
                private_dir(target.parent)
                # Streamed into the staging folder a block at a time (an index file can be gigabytes): a damaged
                # member is found once written, and the caller removes the staging folder with it.
                if _write_member(tar, member, target) != expected:
                    raise InvalidValueError("path", f"{archive}: {name} is damaged (checksum mismatch)")
            unexpected = set(by_name) - set(sums) - {MANIFEST}
            if unexpected:
                raise InvalidValueError("path", f"{archive}: unexpected entries, e.g. {sorted(unexpected)[0]!r}")
        # Durable before the journal says to swap: the old copy is deleted once the swap is done.
        for directory in sorted({p.parent for p in into.rglob("*")} | {into}, key=lambda p: -len(p.parts)):
            fsync_dir(directory)
    except (tarfile.TarError, OSError, ValueError, KeyError) as exc:
        raise InvalidValueError("path", f"{archive} cannot be read as a backup: {exc}") from exc
    return manifest


def _check_keyring(settings: Settings, archive: Path, manifest: dict[str, Any]) -> None:
    """Only the keyring a backup was made beside can open it; restored elsewhere, every record would look
    erased, and re-applying the ledger would erase them all for good."""
    here = keyring_id_of(keyring_path(settings.data))
    if manifest.get("keyring_id") != here:
        raise InvalidValueError("path", f"{archive} was made beside keyring {manifest.get('keyring_id')}, and this "
                                f"data directory's keyring is {here}: restore it where its keys directory is")


def _manifest(archive: Path, tar: tarfile.TarFile, by_name: dict[str, tarfile.TarInfo]) -> dict[str, Any]:
    if MANIFEST not in by_name:
        raise InvalidValueError("path", f"{archive} is not a facetrail backup (no manifest)")
    manifest = json.loads(_read(tar, by_name[MANIFEST]))
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise InvalidValueError("path", f"{archive}: not a backup of this format ({FORMAT})")
    for key in ("files", "created_at", "faces", "images", "audit_entries"):
        if key not in manifest:
            raise InvalidValueError("path", f"{archive}: the manifest has no {key}")
    if not isinstance(manifest["files"], dict) or DATABASE not in manifest["files"]:
        raise InvalidValueError("path", f"{archive}: the backup holds no database")
    return manifest


def _target(into: Path, name: str) -> Path:
    """Where a member goes; anything but the names a backup writes is refused (no traversal, no links)."""
    parts = PurePosixPath(name).parts
    if name in (DATABASE, HEAD) or (len(parts) == 2 and parts[0] == "index" and parts[1].endswith(".ftindex")):
        pass
    elif not (len(parts) == 3 and parts[0] == "blobs" and parts[1].isalpha() and parts[1].islower()):
        raise InvalidValueError("path", f"unexpected entry {name!r} in the backup")
    if any(p in ("", ".", "..") or "\\" in p for p in parts):
        raise InvalidValueError("path", f"unexpected entry {name!r} in the backup")
    if parts[0] == "blobs":  # blobs/<kind>/<name>: where the data directory's blob storage keeps that key
        return DirectoryStorage.layout(into / "blobs", f"{parts[1]}/{parts[2]}")
    return into.joinpath(*parts)


def _open(tar: tarfile.TarFile, member: tarfile.TarInfo) -> IO[bytes]:
    if not member.isfile():
        raise InvalidValueError("path", f"{member.name} in the backup is not a regular file")
    stream = tar.extractfile(member)
    assert stream is not None
    return stream


def _read(tar: tarfile.TarFile, member: tarfile.TarInfo) -> bytes:
    return _open(tar, member).read()


def _write_member(tar: tarfile.TarFile, member: tarfile.TarInfo, target: Path) -> str:
    """Write a member to a new, durable file a block at a time; returns its SHA-256."""
    reader = HashingReader(_open(tar, member))
    write_synced(target, iter(partial(reader.read, COPY_BLOCK), b""))
    return reader.digest.hexdigest()


def _archive_audit_tail(data: Path, backup_entries: int) -> dict[str, Any] | None:
    """Keep the live audit entries the backup does not have, in a file of their own, before they are replaced."""
    db = data / DATABASE
    if not db.exists():
        return None
    conn = sqlite3.connect(db, timeout=60)
    try:
        rows = conn.execute("SELECT seq, at, actor, action, details, prev_hash, hash FROM audit_log WHERE seq > ? "
                            "ORDER BY seq", (backup_entries,)).fetchall()
    finally:
        conn.close()
    if not rows:
        return None
    keys = ("seq", "at", "actor", "action", "details", "prev_hash", "hash")
    text = "".join(json.dumps(dict(zip(keys, row, strict=True)), sort_keys=True) + "\n" for row in rows).encode()
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
    path = data / "audit-archive" / f"restore-{stamp}.jsonl"
    atomic_write(path, text)
    # Checkpoints over entries the backup does not have go beside them: they hold for the archive, not the live log.
    checkpoints = set_aside(data / AUDIT_CHECKPOINTS, backup_entries, path.with_suffix(".checkpoints"))
    # Rights requests that moved after the backup: those it does not hold at all must be re-entered.
    requests = sorted({json.loads(row[4]).get("request_id") for row in rows if row[3] == "request.event"} - {None})
    return {"file": str(path.relative_to(data)), "entries": len(rows), "first_seq": rows[0][0],
            "last_seq": rows[-1][0], "last_hash": rows[-1][6], "sha256": hashlib.sha256(text).hexdigest(),
            "request_ids": requests, "checkpoints": checkpoints}
