"""What answers each kind of verified request: the effect on the data and the answer the person gets.

An answer given without the DPO's judgement of the requester's identity (`disclose` False: the kinds the
operator made automatic) tells nothing that depends on whether the person is held: no counts, the same
words for everyone. The full record (receipt, counts) is kept for staff in `Answer.staff`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
from numpy.typing import NDArray
from sqlalchemy import select

from facetrail.config import Settings
from facetrail.errors import ConflictError
from facetrail.rights.access import build_package
from facetrail.rights.tracks import whole_tracks
from facetrail.rights.workflow import RequestKind
from facetrail.store.blobs import BlobStore
from facetrail.store.db import Database
from facetrail.store.models import Face, RightsRequest
from facetrail.store.templates import open_templates


class Eraser(Protocol):
    def erase(self, actor_name: str, face_ids: list[int], *, request_id: str | None) -> dict[str, Any]: ...


class Restricter(Protocol):
    def restrict(self, actor_name: str, face_ids: list[int], request_id: str | None) -> Any: ...


class Suppressor(Protocol):
    def add(self, request_id: str | None, templates: NDArray[np.float32], purposes: list[str]) -> Any: ...


ERASED = ("Every face of yours that we held, if any, has been erased: its templates, crops and index entries, "
          "and your face in the stored images.")
RESTRICTED = "Every face of yours that we hold, if any, is kept out of every search from now on."


@dataclass(frozen=True)
class Answer:
    """`public`: what the requester sees; `staff`: the full record for the DPO; `package`: an access zip."""

    public: dict[str, Any]
    staff: dict[str, Any] = field(default_factory=dict)
    package: bytes | None = None


class Fulfilment:
    """`capture_template` gives the face template of the request's passed live capture (for an opt-out)."""

    def __init__(self, settings: Settings, db: Database, blobs: BlobStore, *, eraser: Eraser, restricter: Restricter,
                 suppressor: Suppressor, capture_template: Callable[[RightsRequest], NDArray[np.float32] | None],
                 dim: int) -> None:
        self.settings = settings
        self.db = db
        self.blobs = blobs
        self.eraser = eraser
        self.restricter = restricter
        self.suppressor = suppressor
        self.capture_template = capture_template
        self.dim = dim

    def __call__(self, request: RightsRequest, actor_name: str, *, disclose: bool) -> Answer:
        kind = RequestKind(request.kind)
        faces = self._existing(request.matched_face_ids)
        match kind:
            case RequestKind.CONFIRM:
                return Answer({"holds_data": bool(faces), "faces": len(faces), "images": self._image_count(faces)})
            case RequestKind.ACCESS | RequestKind.PORTABILITY:
                package, summary = build_package(self.db, self.blobs, request, faces, self.settings.max_image_pixels)
                return Answer(summary, package=package)
            case RequestKind.ERASURE:
                receipt = self.eraser.erase(actor_name, faces, request_id=request.id)
                return self._private({"erasure_receipt": receipt}, {"erased": ERASED}, disclose)
            case RequestKind.RESTRICTION:
                self.restricter.restrict(actor_name, faces, request.id)
                return self._private({"restricted_faces": len(faces)}, {"restricted": RESTRICTED}, disclose)
            case RequestKind.OPT_OUT:
                return self._opt_out(request, faces, disclose)
            case RequestKind.OBJECTION:
                decision = request.details.get("decision")
                if decision == "upheld":
                    receipt = self.eraser.erase(actor_name, faces, request_id=request.id)
                    return self._private({"objection": "upheld", "erasure_receipt": receipt},
                                         {"objection": "upheld", "erased": ERASED}, disclose)
                if decision == "overridden":
                    return Answer({"objection": "overridden", "reason": request.details.get("decision_reason", "")})
                raise ConflictError("an objection is answered by the DPO's decision (uphold or override)")
            case RequestKind.RECTIFICATION:
                words = {"rectification": "handled by the data protection officer"}
                return self._private({**words, "faces": len(faces)}, words, disclose)
            case _:
                raise ConflictError(f"no fulfilment for {kind}")

    @staticmethod
    def _private(full: dict[str, Any], plain: dict[str, Any], disclose: bool) -> Answer:
        """The full answer when the DPO judged the requester's identity; else words that hold for anyone."""
        return Answer(full if disclose else plain, staff=full)

    def _opt_out(self, request: RightsRequest, faces: list[int], disclose: bool) -> Answer:
        with self.db.read() as session:
            sealed = list(session.scalars(select(Face.template).where(Face.id.in_(faces))))
        stored = open_templates(self.blobs.vault, sealed, self.dim)
        captured = self.capture_template(request)
        if captured is not None:
            stored.append(captured)
        purposes = list(request.details.get("purposes") or ["*"])
        if stored:
            self.suppressor.add(request.id, np.stack(stored).astype(np.float32), purposes)
        full = {"opted_out": True, "purposes": purposes, "templates_kept": len(stored)}
        return self._private(full, {"opted_out": True, "purposes": purposes}, disclose)

    def _existing(self, face_ids: list[int]) -> list[int]:
        if not face_ids:
            return []
        with self.db.read() as session:
            # A face of a video track stands for the whole track (rights/tracks.py).
            return whole_tracks(session, list(session.scalars(select(Face.id).where(Face.id.in_(face_ids)))))

    def _image_count(self, faces: list[int]) -> int:
        if not faces:
            return 0
        with self.db.read() as session:
            return len(set(session.scalars(select(Face.image_id).where(Face.id.in_(faces)))))
