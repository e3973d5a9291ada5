"""Re-applying the erasure ledger to a restored store: an old backup never brings an erased person back.

The keyring (never in a backup) knows which data keys still exist and keeps the ledger of erasures and
opt-outs. After a restore:

- every face whose data key is gone is erased again, through the ordinary erasure (rows, index, crops, and the
  images: deleted, or redacted when other people's faces remain);
- a stored image whose key is gone but which keeps other faces (it was redacted after the backup was taken,
  and its redacted copy is newer than the backup) loses its stored copy: it cannot be decrypted, and the
  faces of the other people in it stay searchable;
- opt-outs recorded after the backup are put back on the suppression list; withdrawn ones (their keys
  destroyed) are removed.

All of it is idempotent, so a restore interrupted during this step finishes on the next open.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from typing import Any

from sqlalchemy import delete, select, update

from facetrail.crypto.keyring import Keyring
from facetrail.policy.suppression import mark_changed
from facetrail.rights.erasure import ErasureService
from facetrail.store.blobs import BlobStore
from facetrail.store.db import Database
from facetrail.store.models import Face, StoredImage, Suppression


@dataclass(frozen=True)
class Reapplied:
    erasures_reapplied: int  # ledger erasures that found something of theirs in the restored store
    faces_erased: int
    images_dropped: int  # stored copies that could not be kept (see above)
    suppressions_restored: int
    suppressions_removed: int


def reapply_ledger(db: Database, blobs: BlobStore, erasure: ErasureService, actor_name: str) -> Reapplied:
    keyring = blobs.vault.keyring
    ledger = keyring.ledger()
    with db.read() as session:
        faces = session.execute(select(Face.id, Face.key_id)).all()
        images = session.execute(select(StoredImage.id, StoredImage.blob_key, StoredImage.key_id)
                                 .where(StoredImage.key_id.is_not(None))).all()
    dead = _dead(keyring, [f.key_id for f in faces] + [i.key_id for i in images])
    erasures = sum(1 for entry in ledger if entry.get("kind") == "erasure" and dead & set(entry.get("key_ids", [])))

    dead_faces = [f.id for f in faces if f.key_id in dead]
    if dead_faces:
        erasure.erase(actor_name, dead_faces, request_id=None)
    with db.read() as session:  # what the erasure left: images keeping other faces, under a destroyed key
        images = session.execute(select(StoredImage.id, StoredImage.blob_key, StoredImage.key_id)
                                 .where(StoredImage.key_id.in_(sorted(dead)))).all()
    for image in images:
        if image.blob_key:
            blobs.delete(image.blob_key)
        with db.write() as session, session.begin():
            session.execute(update(StoredImage).where(StoredImage.id == image.id).values(blob_key=None, key_id=None))

    restored, removed = _suppressions(db, keyring, ledger)
    return Reapplied(erasures_reapplied=erasures, faces_erased=len(dead_faces), images_dropped=len(images),
                     suppressions_restored=restored, suppressions_removed=removed)


def _dead(keyring: Keyring, key_ids: list[str | None]) -> set[str]:
    named = {k for k in key_ids if k}
    return named - keyring.existing(named)


def _suppressions(db: Database, keyring: Keyring, ledger: list[dict[str, Any]]) -> tuple[int, int]:
    with db.read() as session:
        present = {k for k in session.scalars(select(Suppression.key_id)) if k}
    dead = _dead(keyring, list(present))
    rows = []
    for entry in ledger:
        if entry.get("kind") != "suppression.added":
            continue
        for item in entry["entries"]:
            key_id = item["key_id"]
            if key_id not in present and keyring.existing([key_id]):
                rows.append(Suppression(request_id=entry["request_id"], model_id=entry["model_id"],
                                        purposes=entry["purposes"], template=base64.b64decode(item["template"]),
                                        key_id=key_id))
                present.add(key_id)
    if rows or dead:
        with db.write() as session, session.begin():
            session.add_all(rows)
            if dead:
                session.execute(delete(Suppression).where(Suppression.key_id.in_(sorted(dead))))
            mark_changed(session)
    return len(rows), len(dead)
