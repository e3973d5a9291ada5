"""Re-embedding: after a change of vision model, every stored face gets a template of the new model.

Templates of two models never mix (each model has its own template space, index file and calibration), so a
face whose template belongs to another model is out of every search until it is re-embedded. This job takes
each image that still has such faces, decrypts its stored bytes, finds the faces again with the new pipeline,
matches each stored face to the new detection that overlaps its box most (a face the new detector misses on the
whole image is looked for again in a crop around its stored box), and replaces the face's template (sealed
under the face's own data key, as before) and model id. Everything else about the face stays as ingestion
recorded it: box, landmarks, crop, person.

Each image is one transaction: a run that is killed resumes where it stopped, since the faces already done
carry the new model id. A face whose image bytes are not kept, whose key is gone (erased meanwhile) or that the
new pipeline cannot find is left as it was and counted; it stays out of searches under the new model.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
from sqlalchemy import func, select, update

from facetrail.crashpoints import crash_point
from facetrail.crypto.vault import Vault
from facetrail.errors import ConflictError, FacetrailError, ModelUnavailableError
from facetrail.media.geometry import Box
from facetrail.media.image import decode_image
from facetrail.store.blobs import BlobStore
from facetrail.store.db import Database, bump_generation
from facetrail.store.models import Face, Person, StoredImage, Suppression
from facetrail.store.templates import seal_template
from facetrail.vision.backend import VisionBackend
from facetrail.vision.composite import MODEL_IDS
from facetrail.vision.types import Detection, Point

Progress = Callable[[int, int], None]
MIN_IOU = 0.3


@dataclass
class ReembedReport:
    model_id: str
    images: int = 0  # images processed in this run
    faces: int = 0  # faces re-embedded in this run
    already: int = 0  # faces of the model before this run (a resumed run)
    not_found: list[int] = field(default_factory=list)  # face ids the new pipeline could not find
    unavailable: list[int] = field(default_factory=list)  # face ids whose image bytes or key are gone
    failed_images: dict[int, str] = field(default_factory=dict)  # image id -> cause

    @property
    def left(self) -> int:
        return len(self.not_found) + len(self.unavailable)


def refuse_other_models(db: Database, model_id: str, data: object) -> None:
    """Refuse a data directory whose faces were all embedded with another vision model than the configured one
    (e.g. made with dlib, opened with the default YuNet + Intel): none of them could be searched, and new faces
    would start a second template space beside them. The message names both ways out: re-embed, or keep the
    model the faces were made with. A directory with faces of this model (a re-embed under way, or done with
    a few faces the new detector could not find again) opens: `facetrail index status` counts the others."""
    with db.read() as session:
        if session.scalar(select(Face.id).where(Face.model_id == model_id).limit(1)) is not None:
            return
        others = session.execute(select(Face.model_id, func.count()).where(Face.model_id != model_id)
                                 .group_by(Face.model_id).order_by(func.count().desc())).all()
    if not others:
        return
    names = {v: k.value for k, v in MODEL_IDS.items()}
    held = ", ".join(f"{n} of {m}" for m, n in others)
    configured = names.get(model_id)
    new = f"FACETRAIL_VISION_MODEL={configured}" if configured else "the configured model"
    old = names.get(others[0][0])
    keep = (f"set FACETRAIL_VISION_MODEL={old} to keep the model they were made with" if old
            else "configure the model they were made with again (FACETRAIL_MODEL)")
    raise ConflictError(f"the data directory {data} holds faces of another vision model ({held}) and none of "
                        f"{model_id} ({new}): run `facetrail --data {data} index reembed` to re-embed them with "
                        f"{model_id}, or "
                        f"{keep}")


class Reembedder:
    def __init__(self, db: Database, blobs: BlobStore, vault: Vault, backend: VisionBackend, *,
                 max_image_pixels: int) -> None:
        self.db = db
        self.blobs = blobs
        self.vault = vault
        self.backend = backend
        self.max_image_pixels = max_image_pixels

    @property
    def model_id(self) -> str:
        return self.backend.model_id

    def pending(self) -> tuple[list[int], int]:
        """(ids of images with faces of another model, number of such faces)."""
        with self.db.read() as session:
            images = list(session.scalars(select(Face.image_id).where(Face.model_id != self.model_id)
                                          .distinct().order_by(Face.image_id)))
            faces = session.scalar(select(func.count()).select_from(Face).where(Face.model_id != self.model_id))
        return images, int(faces or 0)

    def check_suppressions(self) -> None:
        """Opt-out entries are templates of the model they were made with, and their photos are not kept: they
        cannot be re-embedded, and under another model they would stop recognising these people at
        ingestion. A switch is refused while any exist."""
        with self.db.read() as session:
            rows = session.execute(select(Suppression.model_id, func.count()).where(
                Suppression.model_id != self.model_id).group_by(Suppression.model_id)).all()
        if rows:
            held = ", ".join(f"{n} of {m}" for m, n in rows)
            raise ConflictError(f"the suppression list holds opt-out templates of another model ({held}); they "
                                f"cannot be re-embedded for {self.model_id}, and opted-out people would no longer "
                                "be recognised at ingestion: keep the model they were made with")

    def run(self, progress: Progress | None = None) -> ReembedReport:
        self.check_suppressions()
        report = ReembedReport(self.model_id)
        with self.db.read() as session:
            report.already = int(session.scalar(select(func.count()).select_from(Face).where(
                Face.model_id == self.model_id)) or 0)
        images, _ = self.pending()
        for done, image_id in enumerate(images, start=1):
            try:
                self._image(image_id, report)
            except ModelUnavailableError:
                raise  # the installation's fault, not this image's: stop, and resume once it is repaired
            except FacetrailError as exc:  # one unreadable image must not stop the job
                report.failed_images[image_id] = str(exc) or type(exc).__name__
            report.images += 1
            if progress is not None:
                progress(done, len(images))
        self._people()
        return report

    def _image(self, image_id: int, report: ReembedReport) -> None:
        with self.db.read() as session:
            blob_key = session.scalar(select(StoredImage.blob_key).where(StoredImage.id == image_id))
            faces = session.execute(select(Face.id, Face.box_left, Face.box_top, Face.box_right, Face.box_bottom)
                                    .where(Face.image_id == image_id, Face.model_id != self.model_id)
                                    .order_by(Face.id)).all()
        if not faces:
            return
        if blob_key is None or not self.blobs.exists(blob_key):
            report.unavailable.extend(f.id for f in faces)
            return
        pixels = decode_image(self.blobs.get(blob_key), max_pixels=self.max_image_pixels).pixels
        boxes = {f.id: Box(f.box_left, f.box_top, f.box_right, f.box_bottom) for f in faces}
        matched = _match(boxes, self.backend.detect(pixels))
        for face_id, box in boxes.items():
            if face_id not in matched:
                found = self._around(pixels, box)
                if found is not None:
                    matched[face_id] = found
        report.not_found.extend(face_id for face_id in boxes if face_id not in matched)
        ids = [face_id for face_id in boxes if face_id in matched]
        templates = self.backend.embed(pixels, [matched[i] for i in ids])
        with self.db.write() as session, session.begin():
            changed = 0
            for face_id, template in zip(ids, templates, strict=True):
                key_id = session.scalar(select(Face.key_id).where(Face.id == face_id,
                                                                   Face.model_id != self.model_id))
                if key_id is None:  # erased meanwhile, or never sealed
                    report.unavailable.append(face_id)
                    continue
                try:
                    sealed = seal_template(self.vault, self.vault.key(key_id), template)
                except FacetrailError:  # its key was destroyed: the face is being erased
                    report.unavailable.append(face_id)
                    continue
                session.execute(update(Face).where(Face.id == face_id).values(template=sealed,
                                                                              model_id=self.model_id))
                changed += 1
            if changed:
                bump_generation(session)
        report.faces += changed
        if changed:
            crash_point("reembed.image-committed")

    def _around(self, pixels: np.ndarray, box: Box) -> Detection | None:
        """The face in a crop around `box` (half its size added on each side), in image coordinates."""
        height, width = pixels.shape[:2]
        area = box.expanded(0.5).clipped(width, height)
        if area.width < 8 or area.height < 8:
            return None
        crop = np.ascontiguousarray(pixels[area.top:area.bottom, area.left:area.right])
        found = [_shifted(d, area.left, area.top) for d in self.backend.detect(crop)]
        best = max(found, key=lambda d: _iou(d.box, box), default=None)
        return best if best is not None and _iou(best.box, box) >= MIN_IOU / 2 else None

    def _people(self) -> None:
        """A person whose faces are all of this model now belongs to its template space (names kept)."""
        with self.db.write() as session, session.begin():
            others = select(Face.person_id).where(Face.person_id.is_not(None), Face.model_id != self.model_id)
            session.execute(update(Person).where(Person.model_id != self.model_id, Person.id.not_in(others))
                            .values(model_id=self.model_id))


def _iou(a: Box, b: Box) -> float:
    inter = Box(max(a.left, b.left), max(a.top, b.top), min(a.right, b.right), min(a.bottom, b.bottom)).area
    union = a.area + b.area - inter
    return inter / union if union > 0 else 0.0


def _match(boxes: dict[int, Box], detections: Sequence[Detection]) -> dict[int, Detection]:
    """Each stored face to the detection overlapping it most (IoU at least MIN_IOU), each detection used once,
    best overlaps first."""
    pairs = sorted(((_iou(box, det.box), face_id, i) for face_id, box in boxes.items()
                    for i, det in enumerate(detections)), reverse=True)
    matched: dict[int, Detection] = {}
    used: set[int] = set()
    for iou, face_id, i in pairs:
        if iou < MIN_IOU:
            break
        if face_id in matched or i in used:
            continue
        matched[face_id] = detections[i]
        used.add(i)
    return matched


def _shifted(det: Detection, dx: int, dy: int) -> Detection:
    box = Box(det.box.left + dx, det.box.top + dy, det.box.right + dx, det.box.bottom + dy)
    return Detection(box=box, landmarks=tuple(Point(p.x + dx, p.y + dy) for p in det.landmarks), score=det.score,
                     detector=det.detector, landmark_layout=det.landmark_layout)
