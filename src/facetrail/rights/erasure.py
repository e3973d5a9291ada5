"""Erasure (GDPR Art. 17, hard rule 9): a person's faces leave no recoverable bytes behind.

An erasure is planned before any byte is removed: an `Erasure` row names the faces, their crops, and what
happens to each image (redacted when other faces remain in it, deleted when none does). It then moves through
idempotent steps, each recorded in `state`, so that a crash at any point (even SIGKILL) is finished by
`resume()` with the same end state as an uninterrupted run:

    planned        the plan is committed; nothing removed yet
    rows_deleted   one transaction deleted the face rows (and people left without a face, whose name is
                   personal data), updated or deleted the images and bumped the index generation: from this
                   commit on no search can return the faces, since search resolves every hit through the store
    index_updated  the vector index followed the store (removing the faces: O(their number)) and was purged
                   (VectorIndex.purge): the removals are durable under a new index key; the embedded index's
                   files are rewritten under it in the background, and the keys of its earlier files destroyed
                   before the keys_destroyed step (Gallery.settle), so no copy of them (an old backup) can give
                   back the person's vectors
    blobs_removed  crops deleted; stored images redacted (blacked out, re-encoded without metadata, sealed
                   under a new data key) or deleted; the plan is reduced to ids, so that no box or blob key of
                   the person outlives this step
    keys_destroyed crypto-shredding: the data keys of the faces, of the deleted images and of the images'
                   unredacted versions are destroyed in the keyring, in the same transaction that writes
                   the erasure to the ledger. Any copy of those bytes (an old backup, a snapshot of the disk)
                   can no longer be decrypted, and restoring a backup re-applies the ledger (reapply.py)
    completed      after a WAL checkpoint (TRUNCATE) folded the log into the database file, where
                   secure_delete has zeroed the deleted rows: the receipt is stored and audited

Search history (which search showed which face id) is kept: it holds ids only, and it is what tells a person
who was shown their face (Art. 15 recipients).
"""

from __future__ import annotations

import fcntl
import logging
import secrets
from collections.abc import Callable, Iterator, Sequence
from enum import StrEnum
from typing import Any

import numpy as np
from sqlalchemy import delete, func, select, update
from sqlalchemy.orm import Session

from facetrail.audit.log import AuditLog
from facetrail.crashpoints import crash_point
from facetrail.crypto.vault import DataKey
from facetrail.errors import FacetrailError, InvalidValueError, KeyUnavailableError, MediaError, NotFoundError
from facetrail.fsutil import private_opener
from facetrail.index.gallery import Gallery
from facetrail.media.geometry import Box
from facetrail.media.redact import redact_image_bytes
from facetrail.rights.tracks import drop_empty, tracks_of, whole_tracks
from facetrail.store.blobs import BlobStore
from facetrail.store.db import Database, bump_generation
from facetrail.store.models import Erasure, Face, ImageJurisdiction, Person, RightsRequest, StoredImage, utcnow
from facetrail.timestamps import iso_z

log = logging.getLogger(__name__)
CRASH_POINTS = ("planned", "rows_deleted", "index_updated", "blobs_partial", "blobs_removed", "keys_destroyed",
                "checkpointed")
CHUNK = 500  # ids per IN (...) clause, well under every backend's limit on bound parameters
DEFAULT_MAX_PIXELS = 64_000_000


class ErasureState(StrEnum):
    PLANNED = "planned"
    ROWS_DELETED = "rows_deleted"
    INDEX_UPDATED = "index_updated"
    BLOBS_REMOVED = "blobs_removed"
    KEYS_DESTROYED = "keys_destroyed"
    COMPLETED = "completed"


class Action(StrEnum):
    REDACT = "redact"
    DELETE = "delete"


class ErasureService:
    def __init__(self, db: Database, blobs: BlobStore, gallery: Gallery, audit: AuditLog, *,
                 max_image_pixels: int = DEFAULT_MAX_PIXELS,
                 after_completed: Callable[[str], object] | None = None) -> None:
        self.db = db
        # Called (with a reason) once an erasure of faces has completed: the runtime signs an audit checkpoint
        # there. Erasures of images are steps of a job (an order, retention, a retirement): the job calls it once.
        self.after_completed = after_completed
        self.blobs = blobs
        self.keyring = blobs.vault.keyring
        # One erasure at a time, across threads and processes: two of them redacting the same group photo, or
        # two processes finishing the same erasure (a server, and a command that resumes it on open), must
        # never interleave their steps.
        self.lock_path = blobs.root.parent / "erasure.lock"
        self.gallery = gallery
        self.audit = audit
        # The stored images passed this decoding limit at ingestion; redaction decodes them again.
        self.max_image_pixels = max_image_pixels

    def erase(self, actor_name: str, face_ids: Sequence[int], *, request_id: str | None) -> dict[str, Any]:
        """Erase these faces completely and return the receipt (ids and counts only). Ids that are not in
        the store (erased before, or never there) are skipped: erasing twice is not an error."""
        erasure_id = self._plan(actor_name, clean_face_ids(face_ids), request_id)
        crash_point("planned")
        return self._finish(actor_name, erasure_id)

    def erase_images(self, actor_name: str, image_ids: Sequence[int], *, cause: str) -> dict[str, Any]:
        """Erase these images whole, every face in them included (an order, the retention period, a retired
        source): the same steps, so the same guarantees, as erasing a person. `cause` says why, for the
        audit log and the receipt (e.g. "order:3", "retention")."""
        erasure_id = self._plan(actor_name, [], None, image_ids=clean_face_ids(image_ids, "image_ids"),
                                cause=cause)
        crash_point("planned")
        return self._finish(actor_name, erasure_id, checkpoint=False)

    def completed(self, cause: str) -> list[dict[str, Any]]:
        """The receipts of the completed erasures made for this cause, oldest first."""
        with self.db.read() as session:
            return [receipt for receipt in session.scalars(select(Erasure.receipt).where(
                Erasure.cause == cause, Erasure.state == ErasureState.COMPLETED.value).order_by(Erasure.id))
                if receipt is not None]

    def resume(self, actor_name: str) -> list[dict[str, Any]]:
        """Finish every erasure left unfinished (by a crash) and return their receipts; one indexed query when
        there is none. One that cannot finish now (the log kept busy by another connection) is logged and
        left for the next call: `pending()` names it."""
        receipts = []
        for erasure_id in self.pending():
            try:
                receipts.append(self._finish(actor_name, erasure_id))
            except FacetrailError as exc:
                log.warning("erasure %d could not be finished yet: %s", erasure_id, exc)
        return receipts

    def pending(self) -> list[int]:
        """Ids of the erasures not completed yet."""
        with self.db.read() as session:
            return list(session.scalars(select(Erasure.id).where(
                Erasure.state != ErasureState.COMPLETED.value).order_by(Erasure.id)))

    def receipt(self, erasure_id: int) -> dict[str, Any] | None:
        """The receipt of a completed erasure (None while it is unfinished)."""
        with self.db.read() as session:
            erasure = session.get(Erasure, erasure_id)
            if erasure is None:
                raise NotFoundError("no such erasure")
            return erasure.receipt

    # -- planning ----------------------------------------------------------------------------------
    def _plan(self, actor_name: str, wanted: list[int], request_id: str | None, *,
              image_ids: Sequence[int] = (), cause: str | None = None) -> int:
        with self.db.write() as session, session.begin():
            faces: list[Any] = []
            wanted = whole_tracks(session, wanted)  # a video track is erased whole: every template and crop
            columns = (Face.id, Face.image_id, Face.crop_key, Face.model_id, Face.restricted, Face.key_id,
                       Face.box_left, Face.box_top, Face.box_right, Face.box_bottom)
            for chunk in _chunks(wanted):
                faces += session.execute(select(*columns).where(Face.id.in_(chunk))).all()
            for chunk in _chunks(image_ids):
                faces += session.execute(select(*columns).where(Face.image_id.in_(chunk))).all()
            faces = list({face.id: face for face in faces}.values())
            images = _image_plans(session, faces, image_ids)
            packages = self._packages(session, {f.id for f in faces})
            plan = {
                "uid": secrets.token_hex(16),
                "faces": sorted(f.id for f in faces),
                # The index holds this model's unrestricted faces only (Gallery._searchable).
                "indexed": sorted(f.id for f in faces if f.model_id == self.gallery.model_id and not f.restricted),
                "crops": sorted(f.crop_key for f in faces if f.crop_key),
                "images": images,
                "not_found": len(wanted) - len(faces),
                # Every data key whose ciphertext shows the person: their faces' (templates and crops) and
                # their images' (deleted, or about to be replaced by a redacted copy under a new key).
                "keys": sorted({f.key_id for f in faces if f.key_id}
                               | {i["key_id"] for i in images if i.get("key_id")}
                               | {p["key_id"] for p in packages if p["key_id"]}),
                # Access packages already given out that hold their faces: they go with the rest.
                "packages": [{"request_id": p["request_id"], "blob_key": p["blob_key"]} for p in packages],
            }
            if cause is not None:
                plan["cause"] = cause
            erasure = Erasure(request_id=request_id, cause=cause, state=ErasureState.PLANNED.value, plan=plan)
            session.add(erasure)
            session.flush()
            self.audit.record(session, actor=actor_name, action="erasure.planned", details={
                "erasure_id": erasure.id, "request_id": request_id, **({"cause": cause} if cause else {}),
                "image_ids": [i["id"] for i in images], "face_ids": plan["faces"],
                "faces_not_found": plan["not_found"],
                "images_to_redact": sum(1 for i in images if i["action"] == Action.REDACT),
                "images_to_delete": sum(1 for i in images if i["action"] == Action.DELETE),
            })
            return erasure.id

    def _packages(self, session: Session, face_ids: set[int]) -> list[dict[str, Any]]:
        found = []
        for request_id, matched, blob_key in session.execute(select(
                RightsRequest.id, RightsRequest.matched_face_ids, RightsRequest.package_key)
                .where(RightsRequest.package_key.is_not(None))):
            if blob_key and face_ids & set(matched or []):
                found.append({"request_id": request_id, "blob_key": blob_key,
                              "key_id": self._blob_key_id(blob_key)})
        return found

    # -- the steps -----------------------------------------------------------------------------------
    def _finish(self, actor_name: str, erasure_id: int, *, checkpoint: bool = True) -> dict[str, Any]:
        with open(self.lock_path, "a+", opener=private_opener) as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            receipt = self._steps(actor_name, erasure_id)
        if checkpoint and self.after_completed is not None:
            self.after_completed(f"erasure {erasure_id}")
        return receipt

    def _steps(self, actor_name: str, erasure_id: int) -> dict[str, Any]:
        while True:
            # Re-read each time: another process may be finishing the same erasure (resume on open).
            with self.db.read() as session:
                erasure = session.get(Erasure, erasure_id)
                if erasure is None:
                    raise NotFoundError("no such erasure")
                state, plan = erasure.state, erasure.plan
            match state:
                case ErasureState.PLANNED:
                    self._delete_rows(erasure_id)
                    crash_point("rows_deleted")
                case ErasureState.ROWS_DELETED:
                    self._update_index(plan)
                    crash_point("index_updated")
                    self._advance(erasure_id, ErasureState.ROWS_DELETED, ErasureState.INDEX_UPDATED)
                case ErasureState.INDEX_UPDATED:
                    self._remove_blobs(erasure_id, plan)
                    crash_point("blobs_removed")
                    self._advance(erasure_id, ErasureState.INDEX_UPDATED, ErasureState.BLOBS_REMOVED,
                                  plan=_compact(plan))
                case ErasureState.BLOBS_REMOVED:
                    self._destroy_keys(erasure_id, plan)
                    crash_point("keys_destroyed")
                    self._advance(erasure_id, ErasureState.BLOBS_REMOVED, ErasureState.KEYS_DESTROYED)
                case ErasureState.KEYS_DESTROYED:
                    self._checkpoint()
                    crash_point("checkpointed")
                    return self._complete(actor_name, erasure_id)
                case ErasureState.COMPLETED:
                    assert erasure.receipt is not None
                    return erasure.receipt
                case _:
                    raise FacetrailError(f"erasure {erasure_id} is in an unknown state {state!r}")

    def _delete_rows(self, erasure_id: int) -> None:
        """Step (a), one transaction: from its commit on, no search can return the faces."""
        with self.db.write() as session, session.begin():
            erasure = session.get(Erasure, erasure_id)
            if erasure is None or erasure.state != ErasureState.PLANNED:
                return  # another process took this step
            plan = dict(erasure.plan)
            people: set[int] = set()
            tracks = tracks_of(session, plan["faces"])
            for chunk in _chunks(plan["faces"]):
                people.update(person for person in session.scalars(select(Face.person_id).where(
                    Face.id.in_(chunk), Face.person_id.is_not(None))) if person is not None)
                session.execute(delete(Face).where(Face.id.in_(chunk)))
            plan["images"] = _settle_images(session, plan["images"])
            drop_empty(session, tracks)  # tracks left without a face, videos left without a track
            if people:
                # A person (a cluster, maybe named by the operator) left with no face is personal data
                # about nobody else: it goes too. One keeping other faces stays.
                still_used = select(Face.id).where(Face.person_id == Person.id).exists()
                session.execute(delete(Person).where(Person.id.in_(sorted(people)), ~still_used))
            plan["generation"] = bump_generation(session)
            erasure.plan = plan
            erasure.state = ErasureState.ROWS_DELETED.value

    def _update_index(self, plan: dict[str, Any]) -> None:
        """Step (b): the index follows the store (its generation moved) and is purged: no earlier persisted
        copy of it can give back the person's vectors (VectorIndex.purge)."""
        self.gallery.remove_committed(plan["indexed"], plan.get("generation"))  # O(their faces)
        left = np.intersect1d(self.gallery.index().ids(), np.asarray(plan["indexed"], dtype=np.int64))
        if len(left):
            raise FacetrailError(f"the index still holds {len(left)} erased face(s) after following the store")

    def _remove_blobs(self, erasure_id: int, plan: dict[str, Any]) -> None:
        """Step (c): crops go; images keeping other faces are redacted, the others deleted; access packages
        that showed the person go too. Each operation is idempotent (deleting a missing blob is a no-op;
        redacting twice blacks out the same boxes)."""
        for key in plan["crops"]:
            self.blobs.delete(key)
        for image in plan["images"]:
            key = image.get("blob_key")
            if key is None:
                continue  # the image's bytes were never kept (store_images off)
            if image["action"] == Action.DELETE:
                self.blobs.delete(key)
            else:
                self._redact(erasure_id, plan, key, image)
            crash_point("blobs_partial")
        for package in plan.get("packages", []):
            self.blobs.delete(package["blob_key"])
            with self.db.write() as session, session.begin():
                session.execute(update(RightsRequest).where(RightsRequest.id == package["request_id"])
                                .values(package_key=None))

    def _redact(self, erasure_id: int, plan: dict[str, Any], key: str, image: dict[str, Any]) -> None:
        if not self.blobs.exists(key):
            return
        current = self._blob_key_id(key)
        if current is not None and current == image.get("new_key"):
            self._set_image_key(image["id"], key, current)  # this erasure redacted it before a crash
            return
        # The new key, and the key of the version about to be replaced (this plan's, or a newer one if another
        # erasure redacted the image since this one was planned), are recorded before the file changes: the
        # replaced version is shredded with the rest in step (d), and a crash after the write is recognised.
        new_key = self._redaction_key(image)
        image["new_key"] = new_key.id
        if current is not None and current not in plan["keys"]:
            plan["keys"].append(current)
        self._save_plan(erasure_id, plan)
        # Boxes are in the upright image (EXIF orientation applied), as decode_image gives it; the redacted
        # copy is written upright and without metadata, so a second pass sees the same coordinates.
        try:
            redacted = redact_image_bytes(self.blobs.get(key), [Box(*box) for box in image["boxes"]],
                                          source_format=image["format"], max_pixels=self.max_image_pixels,
                                          fill=True)
        except (MediaError, KeyUnavailableError):
            # Damaged on disk since it was ingested, or its key already destroyed (a restored backup): it
            # cannot be redacted, and keeping it would keep the person's face, so it goes (the image row
            # stays, for the other faces' provenance).
            log.warning("stored image could not be decoded for redaction; deleting it")
            self.blobs.delete(key)
            self._set_image_key(image["id"], None, None)
            return
        self.blobs.put(key, redacted, new_key)
        self._set_image_key(image["id"], key, new_key.id)

    def _redaction_key(self, image: dict[str, Any]) -> DataKey:
        if image.get("new_key"):
            try:
                return self.blobs.vault.key(image["new_key"])
            except KeyUnavailableError:
                pass
        return self.blobs.vault.new_key("image")

    def _save_plan(self, erasure_id: int, plan: dict[str, Any]) -> None:
        with self.db.write() as session, session.begin():
            session.execute(update(Erasure).where(Erasure.id == erasure_id).values(plan=plan))

    def _blob_key_id(self, key: str) -> str | None:
        try:
            return self.blobs.key_id(key)
        except (OSError, KeyUnavailableError):
            return None

    def _set_image_key(self, image_id: int, blob_key: str | None, key_id: str | None) -> None:
        with self.db.write() as session, session.begin():
            session.execute(update(StoredImage).where(StoredImage.id == image_id)
                            .values(blob_key=blob_key, key_id=key_id))

    def _destroy_keys(self, erasure_id: int, plan: dict[str, Any]) -> None:
        """Step (d): crypto-shredding, and the erasure's line in the ledger, in one keyring transaction."""
        with self.db.read() as session:
            erasure = session.get(Erasure, erasure_id)
            request_id = erasure.request_id if erasure is not None else None
        self.gallery.settle()  # the index's purge, rewriting its files in the background, is finished first
        keys = list(plan.get("keys", []))
        ledger = {"uid": plan.get("uid") or f"erasure-{erasure_id}", "kind": "erasure", "erasure_id": erasure_id,
                  "request_id": request_id, "face_ids": plan["faces"], "images": plan["images"], "key_ids": keys}
        self.keyring.destroy(keys, ledger)

    def _checkpoint(self) -> None:
        """Step (d): deleted rows were zeroed in the database file (secure_delete), but earlier versions of
        their pages may still sit in the write-ahead log until it is folded in and truncated."""
        if not self.db.checkpoint():
            raise FacetrailError("the write-ahead log could not be truncated while another connection used it; "
                                 "the erasure is finished on the next open or by resuming it")

    def _complete(self, actor_name: str, erasure_id: int) -> dict[str, Any]:
        """Step (e): the receipt, stored and audited in one transaction."""
        with self.db.write() as session, session.begin():
            erasure = session.get(Erasure, erasure_id)
            assert erasure is not None
            if erasure.state == ErasureState.COMPLETED and erasure.receipt is not None:
                return erasure.receipt  # another process completed it
            completed_at = utcnow()
            counts = erasure.plan["counts"]
            receipt = {
                "data_keys_destroyed": len(erasure.plan.get("keys", [])),
                "erasure_id": erasure.id, "request_id": erasure.request_id,
                "face_ids": erasure.plan["faces"], "faces_erased": counts["faces"],
                "crops_deleted": counts["crops"], "index_entries_removed": counts["index_entries"],
                "images_redacted": counts["images_redacted"], "images_deleted": counts["images_deleted"],
                "access_packages_deleted": counts.get("packages", 0),
                "completed_at": iso_z(completed_at, precise=True),
            }
            if erasure.cause is not None:
                receipt["cause"] = erasure.cause
                receipt["image_ids"] = [image["id"] for image in erasure.plan["images"]]
            erasure.state = ErasureState.COMPLETED.value
            erasure.receipt = receipt
            erasure.completed_at = completed_at
            self.audit.record(session, actor=actor_name, action="erasure.completed", details=receipt)
            return receipt

    def _advance(self, erasure_id: int, current: ErasureState, to: ErasureState, *,
                 plan: dict[str, Any] | None = None) -> None:
        """Record that a step is done, unless another process recorded it first."""
        values: dict[str, Any] = {"state": to.value}
        if plan is not None:
            values["plan"] = plan
        with self.db.write() as session, session.begin():
            session.execute(update(Erasure).where(Erasure.id == erasure_id, Erasure.state == current.value)
                            .values(**values))


def _image_plans(session: Session, faces: Sequence[Any], whole: Sequence[int] = ()) -> list[dict[str, Any]]:
    """Per affected image: redact (other faces remain: hide the erased faces' boxes) or delete. The images
    erased `whole` have all their faces among `faces`, or none (an image in which no face was found)."""
    by_image: dict[int, list[Any]] = {image_id: [] for image_id in whole}
    for face in faces:
        by_image.setdefault(face.image_id, []).append(face)
    plans = []
    for chunk in _chunks(sorted(by_image)):
        total = _face_counts(session, chunk)
        for image_id, blob_key, fmt, key_id in session.execute(
                select(StoredImage.id, StoredImage.blob_key, StoredImage.format, StoredImage.key_id)
                .where(StoredImage.id.in_(chunk))):
            others = total.get(image_id, 0) - len(by_image[image_id])
            plans.append({
                "id": image_id, "action": Action.REDACT.value if others > 0 else Action.DELETE.value,
                "blob_key": blob_key, "format": fmt, "key_id": key_id,
                "boxes": [[f.box_left, f.box_top, f.box_right, f.box_bottom] for f in by_image[image_id]],
            })
    return sorted(plans, key=lambda p: p["id"])


def _settle_images(session: Session, images: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """With the faces deleted: delete the images left without a face, count the others' remaining faces.
    The action follows what is actually left (another erasure may have run since the plan was made)."""
    ids = [image["id"] for image in images]
    left: dict[int, int] = {}
    for chunk in _chunks(ids):
        left.update(_face_counts(session, chunk))
    settled = []
    for image in images:
        remaining = left.get(image["id"], 0)
        if remaining:
            session.execute(update(StoredImage).where(StoredImage.id == image["id"]).values(face_count=remaining))
        settled.append({**image, "action": (Action.REDACT if remaining else Action.DELETE).value})
    gone = [image["id"] for image in settled if image["action"] == Action.DELETE]
    for chunk in _chunks(gone):
        session.execute(delete(ImageJurisdiction).where(ImageJurisdiction.image_id.in_(chunk)))
        session.execute(delete(StoredImage).where(StoredImage.id.in_(chunk)))
    return settled


def _face_counts(session: Session, image_ids: list[int]) -> dict[int, int]:
    """Image id -> how many faces it has in the store now (images with none are absent)."""
    rows = session.execute(select(Face.image_id, func.count()).where(Face.image_id.in_(image_ids))
                           .group_by(Face.image_id)).all()
    return {int(image_id): int(count) for image_id, count in rows}


def _compact(plan: dict[str, Any]) -> dict[str, Any]:
    """The plan once the bytes are gone: ids, actions and counts; no box, crop or blob key stays behind."""
    images = plan["images"]
    return {
        **({"cause": plan["cause"]} if "cause" in plan else {}),
        "uid": plan.get("uid", ""),  # plans made before encryption at rest have no uid and no keys
        "faces": plan["faces"],
        "keys": plan.get("keys", []),
        "images": [{"id": image["id"], "action": image["action"]} for image in images],
        "not_found": plan["not_found"],
        "counts": {
            "faces": len(plan["faces"]), "crops": len(plan["crops"]), "index_entries": len(plan["indexed"]),
            "images_redacted": sum(1 for image in images if image["action"] == Action.REDACT),
            "images_deleted": sum(1 for image in images if image["action"] == Action.DELETE),
            "packages": len(plan.get("packages", [])),
        },
    }


def clean_face_ids(face_ids: Sequence[int], field: str = "face_ids") -> list[int]:
    """Distinct ids (of faces, or of what `field` names) in ascending order; anything but whole numbers is
    refused."""
    if isinstance(face_ids, str | bytes) or any(isinstance(i, bool) or not isinstance(i, int | np.integer)
                                                for i in face_ids):
        raise InvalidValueError(field, "a list of ids (whole numbers)")
    return sorted({int(i) for i in face_ids})


def _chunks(ids: Sequence[int]) -> Iterator[list[int]]:
    for start in range(0, len(ids), CHUNK):
        yield list(ids[start:start + CHUNK])
