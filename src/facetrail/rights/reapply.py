"""Re-applying the erasure ledger to a restored store: an old backup never brings an erased person back.

The keyring (never in a backup) knows which data keys still exist and keeps the ledger of erasures, opt-outs,
restrictions and disabled accounts. After a restore:

- every face whose data key is gone is erased again, through the ordinary erasure (rows, index, crops, and the
  images: deleted, or redacted when other people's faces remain);
- a stored image whose key is gone but which keeps other faces (it was redacted after the backup was taken,
  and its redacted copy is newer than the backup) loses its stored copy: it cannot be decrypted, and the
  faces of the other people in it stay searchable; one whose key is gone and that holds no face (erased whole
  with no face in it) is erased again;
- each face's restriction (Art. 18) is set as the ledger last recorded it, so that a restriction made after the
  backup holds, and one lifted after it stays lifted;
- opt-outs recorded after the backup are put back on the suppression list; withdrawn ones (their keys
  destroyed) are removed;
- accounts disabled after the backup are disabled again.

All of it is idempotent, so a restore interrupted during this step finishes on the next open.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import delete, select, update

from facetrail.crypto.keyring import Keyring
from facetrail.policy.suppression import mark_changed
from facetrail.rights.erasure import ErasureService
from facetrail.store.blobs import BlobStore
from facetrail.store.db import Database, bump_generation
from facetrail.store.models import Account, Face, StoredImage, Suppression


@dataclass(frozen=True)
class Reapplied:
    erasures_reapplied: int  # ledger erasures that found something of theirs in the restored store
    faces_erased: int
    images_dropped: int  # stored copies that could not be kept (see above)
    suppressions_restored: int
    suppressions_removed: int
    restrictions_reapplied: int  # faces whose restriction (Art. 18) the backup had otherwise
    accounts_disabled: int  # accounts disabled after the backup, disabled again


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
    with db.read() as session:  # what the erasure left: images under a destroyed key
        images = session.execute(select(StoredImage.id, StoredImage.blob_key, StoredImage.key_id)
                                 .where(StoredImage.key_id.in_(sorted(dead)))).all()
        with_faces = set(session.scalars(select(Face.image_id).where(Face.image_id.in_([i.id for i in images]))))
    # Those without a face were erased whole (an order, the retention period, a retired source): they go again.
    faceless = [image.id for image in images if image.id not in with_faces]
    if faceless:
        erasure.erase_images(actor_name, faceless, cause="restore")
    images = [image for image in images if image.id in with_faces]  # keeping other faces: the copy goes
    for image in images:
        if image.blob_key:
            blobs.delete(image.blob_key)
        with db.write() as session, session.begin():
            session.execute(update(StoredImage).where(StoredImage.id == image.id).values(blob_key=None, key_id=None))

    restored, removed = _suppressions(db, keyring, ledger)
    return Reapplied(erasures_reapplied=erasures, faces_erased=len(dead_faces), images_dropped=len(images),
                     suppressions_restored=restored, suppressions_removed=removed,
                     restrictions_reapplied=_restrictions(db, ledger),
                     accounts_disabled=_accounts(db, ledger))


def _restrictions(db: Database, ledger: list[dict[str, Any]]) -> int:
    """Each face's restriction as the ledger last set it (in the order the ledger recorded them)."""
    state: dict[str, bool] = {}
    for entry in ledger:
        if entry.get("kind") == "restriction":
            state.update(dict.fromkeys(entry["key_ids"], bool(entry["restricted"])))
    changed = 0
    with db.write() as session, session.begin():
        for restricted in (True, False):
            keys = sorted(k for k, v in state.items() if v is restricted)
            for start in range(0, len(keys), 500):
                changed += len(session.scalars(update(Face).where(
                    Face.key_id.in_(keys[start:start + 500]), Face.restricted.is_not(restricted))
                    .values(restricted=restricted).returning(Face.id)).all())
        if changed:
            bump_generation(session)
    return changed


def _accounts(db: Database, ledger: list[dict[str, Any]]) -> int:
    keys = sorted({entry["key_id"] for entry in ledger if entry.get("kind") == "account.disabled"})
    if not keys:
        return 0
    with db.write() as session, session.begin():
        return len(session.scalars(update(Account).where(Account.key_id.in_(keys), Account.disabled_at.is_(None))
                                   .values(disabled_at=datetime.now(UTC)).returning(Account.id)).all())


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
