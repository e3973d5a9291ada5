"""The store's records against the keyring: refusing a store whose keyring was lost, and sealing what an
earlier version stored in clear: templates, crops, images, suppression entries, selfies and access packages
(the index file is rebuilt sealed: see Gallery.secure_at_rest).

The sealing runs when a data directory is opened, until it has run to the end once (then a flag in the store's
meta table makes it a single read). Each batch is one transaction, committed only after its blobs were
rewritten sealed, so an interrupted upgrade resumes where it stopped:
a blob already sealed by the interrupted run is recognised by its header and its key is reused for the
record, so a record and its blob never end up under two keys."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from facetrail.crypto.vault import DataKey, Vault, is_sealed, key_id_of
from facetrail.errors import KeyUnavailableError
from facetrail.store.blobs import BlobStore
from facetrail.store.db import Database
from facetrail.store.models import Face, Meta, RightsRequest, StoredImage, Suppression
from facetrail.store.templates import LABEL

BATCH = 200
SEALED = "sealed_at_rest"
KEYRING = "keyring_id"  # the keyring (data directory) the store belongs to


def seal_cleartext(db: Database, blobs: BlobStore) -> int:
    """Seal every record stored in clear; returns how many records were sealed."""
    with db.read() as session:
        if session.get(Meta, SEALED) is not None:
            return 0
    sealed = 0
    queries: list[Any] = [
        select(Face).where(Face.key_id.is_(None)),
        select(Suppression).where(Suppression.key_id.is_(None)),
        # Images whose bytes were never kept have nothing to seal and keep no key.
        select(StoredImage).where(StoredImage.key_id.is_(None), StoredImage.blob_key.is_not(None)),
    ]
    for query in queries:
        while True:
            with db.write() as session, session.begin():
                rows = list(session.scalars(query.limit(BATCH)))
                for row in rows:
                    _seal_row(blobs, row)
            sealed += len(rows)
            if len(rows) < BATCH:
                break
    with db.read() as session:
        requests = session.execute(select(RightsRequest.selfie_key, RightsRequest.package_key)).all()
    for selfie, package in requests:
        for blob, kind in ((selfie, "selfie"), (package, "package")):
            raw = blobs.raw(blob) if blob else None
            if blob and raw is not None and not is_sealed(raw):
                blobs.put(blob, raw, blobs.vault.new_key(kind))
                sealed += 1
    if sealed:
        # The cleartext versions of the rewritten rows' pages must leave the write-ahead log and be overwritten
        # in the database file (secure_delete), as after an erasure.
        db.checkpoint()
    with db.write() as session, session.begin():
        session.merge(Meta(key=SEALED, value="1"))  # every later record is sealed when it is written
    return sealed


def _seal_row(blobs: BlobStore, row: Face | Suppression | StoredImage) -> None:
    vault = blobs.vault
    blob = row.crop_key if isinstance(row, Face) else row.blob_key if isinstance(row, StoredImage) else None
    raw = blobs.raw(blob) if blob else None
    key: DataKey = (vault.key(key_id_of(raw)) if raw is not None and is_sealed(raw)
                    else vault.new_key(type(row).__tablename__))
    if isinstance(row, Face | Suppression) and not is_sealed(row.template):
        row.template = vault.seal(key, LABEL, row.template)
    if blob and raw is not None and not is_sealed(raw):
        blobs.put(blob, raw, key)
    row.key_id = key.id


def check_keyring(db: Database, vault: Vault) -> None:
    """Refuse a store whose records name data keys when the keyring holds none: the keyring file was lost or
    replaced, and carrying on would make every record look erased. Refuse as well a store that another keyring
    has claimed (two data directories given one PostgreSQL database): the store records its keyring's id."""
    if vault.keyring.is_empty():
        _refuse_sealed_without_keys(db, vault)
    with db.read() as session:
        claimed = session.get(Meta, KEYRING)
    if claimed is None:
        with db.write() as session, session.begin():
            claimed = session.get(Meta, KEYRING) or Meta(key=KEYRING, value=vault.keyring.keyring_id)
            session.merge(claimed)
    if claimed.value != vault.keyring.keyring_id:
        raise KeyUnavailableError(f"this metadata store belongs to the data directory of keyring {claimed.value}, "
                                  f"not to this one's ({vault.keyring.keyring_id}, {vault.keyring.path}): give "
                                  "each data directory a database of its own")


def _refuse_sealed_without_keys(db: Database, vault: Vault) -> None:
    with db.read() as session:
        sealed = session.scalar(select(Face.id).where(Face.key_id.is_not(None)).limit(1))
    if sealed is not None:
        raise KeyUnavailableError(f"the keyring {vault.keyring.path} holds no keys, but the store holds "
                                  "encrypted faces: put back the keys directory this store was made with")
