"""The verification material of one request, kept for the DPO's judgement and shredded when the request closes.

Everything a requester sent to prove who they are (the capture's key frames, the capture's face template for
an opt-out, documents they chose to add) is sealed under one data key of the request's own (`evidence`
kind). The request's `evidence` column lists what is sealed and what the checks measured (poses, template
distances, the matched faces' scores: the DPO needs them to judge; the requester never sees them). Closing
the request destroys the key, deletes the files and leaves only the count of attempts (hard rule 8).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from facetrail.crypto.vault import DataKey
from facetrail.errors import KeyUnavailableError
from facetrail.store.blobs import BlobStore
from facetrail.store.models import RightsRequest
from facetrail.store.templates import decode_template, encode_template
from facetrail.timestamps import now_iso

MAX_DOCUMENTS = 3


@dataclass(frozen=True)
class SealedFile:
    """One sealed piece of evidence, opened for the DPO."""

    name: str
    content_type: str
    data: bytes
    info: dict[str, Any]


class EvidenceStore:
    def __init__(self, blobs: BlobStore, dim: int) -> None:
        self.blobs = blobs
        self.dim = dim

    def _key(self, request: RightsRequest) -> DataKey:
        if request.evidence_key_id:
            return self.blobs.vault.key(request.evidence_key_id)
        key = self.blobs.vault.new_key("evidence")
        request.evidence_key_id = key.id
        return key

    def _update(self, request: RightsRequest, **changes: Any) -> None:
        # A new dict: SQLAlchemy sees a JSON column change only when the value is replaced.
        request.evidence = {**(request.evidence or {}), **changes}

    def record_capture(self, request: RightsRequest, summary: dict[str, Any]) -> None:
        """Keep what a capture attempt measured (passed or not): the DPO sees every attempt."""
        self._update(request, captures=[*(request.evidence or {}).get("captures", []), summary])

    def seal_capture(self, request: RightsRequest, key_frames: list[tuple[dict[str, Any], bytes]],
                     template: NDArray[np.float32], matches: list[dict[str, Any]]) -> None:
        """The passed capture's key frames (face crops, one per step), its face template and the faces it
        matched with their scores and bands."""
        key = self._key(request)
        frames = []
        for index, (info, crop) in enumerate(key_frames):
            blob = self.blobs.put(f"evidence/{request.id}-frame{index}", crop, key)
            frames.append({**info, "blob": blob})
        template_blob = self.blobs.put(f"evidence/{request.id}-template", encode_template(template), key)
        self._update(request, key_frames=frames, template_blob=template_blob, matches=matches)

    def add_document(self, request: RightsRequest, name: str, content_type: str, data: bytes) -> None:
        documents = list((request.evidence or {}).get("documents", []))
        if len(documents) >= MAX_DOCUMENTS:
            raise ValueError(f"at most {MAX_DOCUMENTS} documents per request")
        blob = self.blobs.put(f"evidence/{request.id}-doc{len(documents)}", data, self._key(request))
        documents.append({"blob": blob, "name": name, "content_type": content_type, "bytes": len(data),
                          "at": now_iso()})
        self._update(request, documents=documents)

    def template(self, request: RightsRequest) -> NDArray[np.float32] | None:
        """The passed capture's face template, while the request is open."""
        blob = (request.evidence or {}).get("template_blob")
        if not blob:
            return None
        try:
            return decode_template(self.blobs.get(blob), self.dim)
        except (OSError, KeyUnavailableError):
            return None

    def open_files(self, request: RightsRequest) -> tuple[list[SealedFile], list[SealedFile]]:
        """The key frames and the documents that can still be opened (a backup does not carry them: a restored
        request lists them without their files)."""
        evidence = request.evidence or {}
        frames = [SealedFile(f"frame-{i}-{f.get('pose')}.jpg", "image/jpeg", data, _info(f))
                  for i, f in enumerate(evidence.get("key_frames", [])) if (data := self._open(f["blob"]))]
        documents = [SealedFile(d["name"], d["content_type"], data, _info(d))
                     for d in evidence.get("documents", []) if (data := self._open(d["blob"]))]
        return frames, documents

    def _open(self, blob: str) -> bytes:
        try:
            return self.blobs.get(blob)
        except (OSError, KeyUnavailableError):
            return b""

    def shred(self, request: RightsRequest) -> None:
        """Destroy the evidence key (every copy of every piece becomes unreadable), then the files."""
        evidence = request.evidence or {}
        blobs = [f["blob"] for f in evidence.get("key_frames", [])] + \
            [d["blob"] for d in evidence.get("documents", [])] + \
            ([evidence["template_blob"]] if evidence.get("template_blob") else [])
        if request.evidence_key_id:
            self.blobs.vault.keyring.destroy([request.evidence_key_id])
        for blob in blobs:
            self.blobs.delete(blob)
        if evidence:
            request.evidence = {"deleted_at": now_iso(),
                                "capture_attempts": len(evidence.get("captures", []))}


def _info(entry: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in entry.items() if k != "blob"}
