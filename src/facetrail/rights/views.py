"""How a request looks to the DPO (console, CLI, API): one dictionary, built in one place; and its evidence."""

from __future__ import annotations

import base64
import io
from pathlib import Path
from typing import Any

from PIL import Image, ImageDraw
from sqlalchemy import select

from facetrail.rights.service import RequestService
from facetrail.store.models import Face, RightsRequest, Source, StoredImage
from facetrail.timestamps import iso_z

THUMB = 160


def dpo_view(service: RequestService, request: RightsRequest, *, with_events: bool = False) -> dict[str, Any]:
    evidence = request.evidence or {}
    view: dict[str, Any] = {
        "id": request.id, "kind": request.kind, "status": request.status, "email": request.email,
        "received_at": iso_z(request.received_at), "due_at": iso_z(service.due(request)),
        "days_left": service.days_left(request), "overdue": service.days_left(request) < 0 and not request.closed_at,
        "email_verified": request.email_verified_at is not None,
        "live_check_done": request.selfie_checked_at is not None, "manual_check": request.manual_check,
        "capture_attempts": len(evidence.get("captures", [])) or evidence.get("capture_attempts", 0),
        "matched_faces": len(request.matched_face_ids or []), "documents": len(evidence.get("documents", [])),
        "details": request.details,
        "extension_months": request.extension_months, "extension_reasons": request.extension_reasons,
        "refusal_justification": request.refusal_justification, "answer": request.answer,
        "staff_answer": request.staff_answer,
        "closed_at": iso_z(request.closed_at) if request.closed_at else None,
    }
    if with_events:
        view["events"] = [{"at": iso_z(e.at), "from": e.from_status, "to": e.to_status, "actor": e.actor,
                           "note": e.note} for e in request.events]
    return view


def evidence_view(service: RequestService, request: RightsRequest) -> dict[str, Any]:
    """What the DPO judges identity on: the e-mail verification, every capture attempt with what it measured,
    the passed capture's key frames, the held faces it matched (their crops beside their scores and bands),
    and the documents the requester added. Images and documents as base64."""
    evidence = request.evidence or {}
    frames, documents = service.evidence.open_files(request) if request.closed_at is None else ([], [])
    matches = evidence.get("matches", [])
    held = _held_faces(service, [m["face_id"] for m in matches])
    return {
        "request_id": request.id, "kind": request.kind, "status": request.status,
        "email": {"address": request.email, "verified": request.email_verified_at is not None,
                  "verified_at": iso_z(request.email_verified_at) if request.email_verified_at else None,
                  "code_attempts": request.code_attempts},
        "captures": evidence.get("captures", []),
        "key_frames": [{**f.info, "jpeg_base64": _b64(f.data)} for f in frames],
        "matches": [{**m, **held.get(m["face_id"], {"crop_base64": None, "source": None, "image": None})}
                    for m in matches],
        "documents": [{**d.info, "data_base64": _b64(d.data)} for d in documents],
        "deleted_at": evidence.get("deleted_at"),
    }


def _held_faces(service: RequestService, face_ids: list[int]) -> dict[int, dict[str, Any]]:
    if not face_ids:
        return {}
    with service.db.read() as session:
        rows = session.execute(select(Face.id, Face.crop_key, Source.name, StoredImage.original_name)
                               .join(Source, Face.source_id == Source.id)
                               .join(StoredImage, Face.image_id == StoredImage.id).where(Face.id.in_(face_ids))).all()
    return {face_id: {"crop_base64": _b64(service.blobs.get(crop)) if crop and service.blobs.exists(crop) else None,
                      "source": source, "image": Path(name).name} for face_id, crop, source, name in rows}


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def evidence_sheet(view: dict[str, Any]) -> bytes:
    """One JPEG for the DPO: the capture's key frames on the first row, the matched held faces below, each
    with its score and band."""
    frames = [(f"{f['pose']} (yaw {f['yaw']:+.2f})", f["jpeg_base64"]) for f in view["key_frames"]]
    faces = [(f"face {m['face_id']}: {m['score']} {m['band']}", m["crop_base64"]) for m in view["matches"]]
    columns = max(len(frames), len(faces), 1)
    sheet = Image.new("RGB", (columns * THUMB, 2 * (THUMB + 20)), "white")
    draw = ImageDraw.Draw(sheet)
    for row, items in enumerate((frames, faces)):
        for column, (label, data) in enumerate(items):
            x, y = column * THUMB, row * (THUMB + 20)
            if data:
                picture = Image.open(io.BytesIO(base64.b64decode(data))).convert("RGB")
                picture.thumbnail((THUMB, THUMB))
                sheet.paste(picture, (x, y))
            draw.text((x + 2, y + THUMB + 4), label, fill="black")
    out = io.BytesIO()
    sheet.save(out, "JPEG", quality=90)
    return out.getvalue()
