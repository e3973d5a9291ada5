"""The Art. 15 access package: everything held about one person, complete, as a zip of a human page
(index.html), machine data (data.json), their images with everyone else's face hidden, and their crops.

It lists, for every face: the image, source and controller, how the data was obtained (Art. 14(2)(f)),
purposes, legal basis and Art. 9 condition, retention and the date it will be deleted; the recipients
(every search that returned one of their faces: date, account role, purpose, and the case reference unless the
purpose's disclosure policy withholds it, in which case the package says so and on what legal ground, see
rights/disclosure.py; nothing about anyone else); and the person's rights with how to complain.
"""

from __future__ import annotations

import html
import io
import json
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from PIL import Image
from sqlalchemy import select

from facetrail.media.geometry import Box
from facetrail.media.image import decode_image
from facetrail.media.redact import encode, hide_regions
from facetrail.policy.legal import ART9_DESCRIPTIONS, Art9Condition
from facetrail.rights.disclosure import withheld_purposes
from facetrail.rights.tracks import appearances
from facetrail.store.blobs import BlobStore
from facetrail.store.db import Database
from facetrail.store.models import (
    Face,
    ImageJurisdiction,
    RightsRequest,
    SearchRecord,
    SearchResultRecord,
    Source,
    StoredImage,
)
from facetrail.timestamps import iso_z_or_none

RIGHTS = [
    "Access (Art. 15): this package; ask again whenever you wish, there is no limit.",
    "Rectification (Art. 16) of inaccurate data.",
    "Erasure (Art. 17): your templates, face crops and index entries are deleted and your face is removed "
    "from the stored images.",
    "Restriction (Art. 18): your faces are kept but excluded from every search.",
    "Portability (Art. 20): data.json in this package is machine-readable.",
    "Objection (Art. 21) to the processing, and opting out of future collection.",
    "You may lodge a complaint with a supervisory authority (Art. 77), in particular in the Member State of "
    "your habitual residence, place of work or of the alleged infringement (in France: the CNIL).",
]


def _box(face: Face) -> Box:
    return Box(face.box_left, face.box_top, face.box_right, face.box_bottom)


@dataclass(frozen=True)
class Collected:
    """What an access package is made of: `data` is data.json (faces with their images and sources, the
    searches that showed them, the rights); `others` the boxes of everyone else's faces, by image id, to hide."""

    data: dict[str, Any]
    others: dict[int, list[Box]]


def collect(db: Database, face_ids: Sequence[int]) -> Collected:
    """The package's data: faces with their images and sources, and the searches that showed them."""
    with db.read() as session:
        rows = session.execute(
            select(Face, StoredImage, Source).join(StoredImage, Face.image_id == StoredImage.id)
            .join(Source, Face.source_id == Source.id).where(Face.id.in_(list(face_ids))).order_by(Face.id)
        ).all()
        searches = session.execute(
            select(SearchRecord, SearchResultRecord.face_id)
            .join(SearchResultRecord, SearchResultRecord.search_id == SearchRecord.id)
            .where(SearchResultRecord.face_id.in_(list(face_ids))).order_by(SearchRecord.created_at)
        ).all()
        others = {image.id: [_box(f) for f in session.scalars(select(Face).where(
            Face.image_id == image.id, Face.id.not_in(list(face_ids))))] for _face, image, _source in rows}
        withheld = withheld_purposes(session)
        decided: dict[int, list[dict[str, str]]] = {}
        for row in session.scalars(select(ImageJurisdiction).where(
                ImageJurisdiction.image_id.in_(sorted({image.id for _face, image, _source in rows})))
                .order_by(ImageJurisdiction.basis.desc(), ImageJurisdiction.code)):
            decided.setdefault(row.image_id, []).append({"code": row.code, "basis": row.basis})
    faces = []
    for face, image, source in rows:
        faces.append({
            "face_id": face.id, "image_id": image.id, "image_file": f"images/{image.id}.jpg",
            "crop_file": f"faces/{face.id}.jpg", "box": _box(face).as_dict(), "original_name": image.original_name,
            "ingested_at": image.ingested_at.isoformat(),
            # Fetched from a URL-list source (Art. 15(1)(g), where the data came from): the address and when.
            "fetched_from": image.origin_url, "fetched_at": iso_z_or_none(image.fetched_at),
            # It expires retention_days after ingestion; the server's retention run (hourly by default, at most
            # daily as the README asks) erases it within a day of that.
            "deleted_by": (image.ingested_at + timedelta(days=source.retention_days + 1)).date().isoformat(),
            "restricted": face.restricted,
            # Where the photo was taken (exif-gps) or the population its source was declared for: not the
            # person's residence, which facetrail cannot know.
            "jurisdictions": decided.get(image.id, []),
            "source": {
                "name": source.name, "controller": source.controller, "how_obtained": source.description,
                "purposes": source.purposes, "legal_basis": source.legal_basis,
                "art9_condition": f"{source.art9_condition}: {ART9_DESCRIPTIONS[Art9Condition(source.art9_condition)]}",
                "evidence": source.evidence_ref, "jurisdictions": source.jurisdictions,
                "retention_days": source.retention_days,
            },
        })
    shown: dict[str, dict[str, Any]] = {}
    for record, face_id in searches:
        entry = shown.setdefault(record.id, {"date": record.created_at.isoformat(), "role": record.role,
                                             "purpose": record.purpose, "case_ref": record.case_ref,
                                             "your_faces_shown": []})
        if record.purpose in withheld:
            entry["case_ref"] = None
            entry["case_ref_withheld"] = withheld[record.purpose]
        entry["your_faces_shown"].append(face_id)
    with db.read() as session:
        # Faces from videos: which videos, when the person is seen in them, and the key frames kept.
        videos = appearances(session, list(face_ids))
    return Collected({"faces": faces, "videos": videos, "recipients": list(shown.values()), "rights": RIGHTS},
                     others)


def build_package(db: Database, blobs: BlobStore, request: RightsRequest, face_ids: Sequence[int],
                  max_pixels: int) -> tuple[bytes, dict[str, Any]]:
    """The zip and a summary (counts only) for the request's answer."""
    collected = collect(db, face_ids)
    data, others = collected.data, collected.others
    data["request"] = {"id": request.id, "kind": request.kind, "received_at": request.received_at.isoformat()}
    data["images"] = len({f["image_id"] for f in data["faces"]})
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        written: set[int] = set()
        with db.read() as session:
            for item in data["faces"]:
                face = session.get(Face, item["face_id"])
                image = session.get(StoredImage, item["image_id"])
                if face is not None and face.crop_key and blobs.exists(face.crop_key):
                    archive.writestr(item["crop_file"], blobs.get(face.crop_key))
                if image is None or image.id in written:
                    continue
                written.add(image.id)
                if image.blob_key and blobs.exists(image.blob_key):
                    pixels = decode_image(blobs.get(image.blob_key), max_pixels=max_pixels).pixels
                    hidden = hide_regions(Image.fromarray(pixels), others.get(image.id, []))
                    archive.writestr(item["image_file"], encode(hidden))
                else:
                    item["image_file"] = None  # the collection keeps no copy of this image
        archive.writestr("data.json", json.dumps(data, indent=2))
        archive.writestr("index.html", render_html(data))
    summary = {"faces": len(data["faces"]), "images": data["images"], "recipients": len(data["recipients"])}
    return buffer.getvalue(), summary


def render_html(data: dict[str, Any]) -> str:
    e = html.escape
    rows = []
    for f in data["faces"]:
        s = f["source"]
        picture = f'<img src="{e(f["image_file"])}" alt="photo" width="320">' if f["image_file"] else "(no copy kept)"
        rows.append(
            f"<tr><td>{picture}<br><img src=\"{e(f['crop_file'])}\" alt=\"your face\" height=\"80\"></td>"
            f"<td><b>{e(s['name'])}</b> (controller: {e(s['controller'])})<br>How obtained: {e(s['how_obtained'])}"
            f"<br>Purposes: {e(', '.join(s['purposes']))}<br>Legal basis: {e(s['legal_basis'])}; Art. 9(2) "
            f"{e(s['art9_condition'])}<br>Kept {s['retention_days']} days: deleted by {e(f['deleted_by'])}"
            f"<br>Jurisdictions: {e(_jurisdictions(f['jurisdictions']))}"
            f"<br>File: {e(f['original_name'])}, added {e(f['ingested_at'])}{_fetched(f)}</td></tr>")
    recipients = "".join(
        f"<li>{e(r['date'])}: a search by an account with the role {e(r['role'])}, purpose {e(r['purpose'])}, "
        f"{_case(r)}, showed {len(r['your_faces_shown'])} of your faces</li>"
        for r in data["recipients"]) or "<li>No search has shown your faces.</li>"
    rights = "".join(f"<li>{e(text)}</li>" for text in data["rights"])
    seen = "".join(
        f"<li>{e(v['video'])}: seen at {e(_ranges(v['seen']))}. Kept: "
        + ", ".join(f'<a href="{e(k["image_file"])}">frame at {k["time"]:.2f} s</a> '
                    f'(<a href="{e(k["crop_file"])}">your face</a>)' for k in v["key_frames"]) + "</li>"
        for v in data.get("videos", []))
    videos = (f"<h2>Videos you appear in</h2><p>facetrail keeps frames and face crops from videos, not the "
              f"videos themselves.</p><ul>{seen}</ul>") if seen else ""
    return (
        "<!doctype html><html lang=\"en\"><meta charset=\"utf-8\"><title>Your data</title>"
        f"<h1>Your data (request {e(data['request']['id'])})</h1>"
        f"<p>{len(data['faces'])} faces in {data['images']} images. Other people's faces are hidden.</p>"
        f"<table border=\"1\" cellpadding=\"6\">{''.join(rows)}</table>{videos}"
        f"<h2>Who was shown your faces</h2><ul>{recipients}</ul><h2>Your rights</h2><ul>{rights}</ul></html>")


def _ranges(ranges: list[list[float]]) -> str:
    return ", ".join(f"{start:.1f}-{end:.1f} s" for start, end in ranges)


def _case(recipient: dict[str, Any]) -> str:
    if "case_ref_withheld" in recipient:
        return f"case reference withheld (legal ground: {html.escape(recipient['case_ref_withheld'])})"
    return f"case {html.escape(recipient['case_ref'])}"


def _jurisdictions(decided: list[dict[str, str]]) -> str:
    how = {"exif-gps": "where the photo was taken, from its GPS data",
           "source-declared": "the people this source was declared to hold"}
    return "; ".join(f"{d['code']} ({how.get(d['basis'], d['basis'])})" for d in decided) or "none recorded"


def _fetched(face: dict[str, Any]) -> str:
    if not face.get("fetched_from"):
        return ""
    return f"<br>Fetched from {html.escape(face['fetched_from'])} on {html.escape(face['fetched_at'])}"
