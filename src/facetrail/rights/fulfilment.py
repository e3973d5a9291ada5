"""What answers each kind of verified request: the effect on the data and the answer the person gets."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

import numpy as np
from numpy.typing import NDArray
from sqlalchemy import select

from facetrail.config import Settings
from facetrail.errors import ConflictError
from facetrail.rights.access import build_package
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


class Fulfilment:
    def __init__(self, settings: Settings, db: Database, blobs: BlobStore, *, eraser: Eraser, restricter: Restricter,
                 suppressor: Suppressor, selfie_template: Callable[[bytes], NDArray[np.float32]], dim: int) -> None:
        self.settings = settings
        self.db = db
        self.blobs = blobs
        self.eraser = eraser
        self.restricter = restricter
        self.suppressor = suppressor
        self.selfie_template = selfie_template
        self.dim = dim

    def __call__(self, request: RightsRequest, actor_name: str) -> dict[str, Any]:
        kind = RequestKind(request.kind)
        faces = self._existing(request.matched_face_ids)
        match kind:
            case RequestKind.CONFIRM:
                return {"holds_data": bool(faces), "faces": len(faces), "images": self._image_count(faces)}
            case RequestKind.ACCESS | RequestKind.PORTABILITY:
                package, summary = build_package(self.db, self.blobs, request, faces, self.settings.max_image_pixels)
                return {**summary, "_package": package}
            case RequestKind.ERASURE:
                return {"erasure_receipt": self.eraser.erase(actor_name, faces, request_id=request.id)}
            case RequestKind.RESTRICTION:
                self.restricter.restrict(actor_name, faces, request.id)
                return {"restricted_faces": len(faces)}
            case RequestKind.OPT_OUT:
                return self._opt_out(request, faces)
            case RequestKind.OBJECTION:
                decision = request.details.get("decision")
                if decision == "upheld":
                    receipt = self.eraser.erase(actor_name, faces, request_id=request.id)
                    return {"objection": "upheld", "erasure_receipt": receipt}
                if decision == "overridden":
                    return {"objection": "overridden", "reason": request.details.get("decision_reason", "")}
                raise ConflictError("an objection is answered by the DPO's decision (uphold or override)")
            case RequestKind.RECTIFICATION:
                return {"rectification": "handled by the data protection officer", "faces": len(faces)}
            case _:
                raise ConflictError(f"no fulfilment for {kind}")

    def _opt_out(self, request: RightsRequest, faces: list[int]) -> dict[str, Any]:
        with self.db.read() as session:
            sealed = list(session.scalars(select(Face.template).where(Face.id.in_(faces))))
        stored = open_templates(self.blobs.vault, sealed, self.dim)
        if request.selfie_key and self.blobs.exists(request.selfie_key):
            stored.append(self.selfie_template(self.blobs.get(request.selfie_key)))
        purposes = list(request.details.get("purposes") or ["*"])
        if stored:
            self.suppressor.add(request.id, np.stack(stored).astype(np.float32), purposes)
        return {"opted_out": True, "purposes": purposes, "templates_kept": len(stored)}

    def _existing(self, face_ids: list[int]) -> list[int]:
        if not face_ids:
            return []
        with self.db.read() as session:
            return sorted(session.scalars(select(Face.id).where(Face.id.in_(face_ids))))

    def _image_count(self, faces: list[int]) -> int:
        if not faces:
            return 0
        with self.db.read() as session:
            return len(set(session.scalars(select(Face.image_id).where(Face.id.in_(faces)))))
