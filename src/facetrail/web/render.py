"""Rendering the portal's pages: the Jinja2 environment and the words a requester reads.

Templates get plain values only; everything the service returns passes through here first, so that the
public pages show what a requester may see and nothing more (no similarity scores or distances, hard rule 12).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from fastapi.responses import HTMLResponse
from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape

from facetrail.rights.proof import ChallengeView
from facetrail.rights.workflow import RequestKind
from facetrail.search.reach import rate
from facetrail.timestamps import iso_z

HERE = Path(__file__).resolve().parent
STATIC = HERE / "static"
ENV = Environment(loader=FileSystemLoader(HERE / "templates"), autoescape=select_autoescape(default=True),
                  undefined=StrictUndefined, trim_blocks=True, lstrip_blocks=True)


@dataclass(frozen=True)
class KindInfo:
    value: str
    title: str
    article: str
    explanation: str


K = RequestKind
KINDS = [
    KindInfo(K.CONFIRM, "Tell me whether you hold images of my face", "Art. 15(1)",
             "We tell you whether your face is in the collection, and in how many images."),
    KindInfo(K.ACCESS, "Give me a copy of everything you hold about me", "Art. 15",
             "A package with your images (other people's faces hidden), your face crops, where each image came "
             "from, why it is kept and until when, and every search that showed your face."),
    KindInfo(K.PORTABILITY, "Give me my data in a machine-readable form", "Art. 20",
             "The same package, whose data.json a program can read."),
    KindInfo(K.ERASURE, "Erase my data", "Art. 17",
             "Your face templates, crops and index entries are deleted and your face is removed from the images."),
    KindInfo(K.RESTRICTION, "Keep my data but stop using it", "Art. 18",
             "Your faces stay stored but no search can find them."),
    KindInfo(K.OBJECTION, "I object to the processing", "Art. 21",
             "Tell us the grounds relating to your situation; the data protection officer decides and tells you why."),
    KindInfo(K.RECTIFICATION, "Correct inaccurate data", "Art. 16",
             "Tell us what is wrong; the data protection officer handles it."),
    KindInfo(K.OPT_OUT, "Stop collecting my face in the future", "Art. 21",
             "We keep only your face templates, to recognise your face when images are collected and drop it "
             "there and then. This needs your consent to keep those templates for that alone."),
]
KIND_TITLES = {k.value: k.title for k in KINDS}

STATUS_TEXT = {
    "received": "Received",
    "identity_pending": "Waiting for you to confirm your identity",
    "verified": "Identity confirmed",
    "in_progress": "Being handled",
    "extended": "Being handled (extended)",
    "completed": "Answered",
    "refused": "Refused",
}
CLOSED = {"completed", "refused"}

ANSWER_LABELS = {
    "holds_data": "We hold images of your face",
    "faces": "Faces of yours in the collection",
    "images": "Images they appear in",
    "recipients": "Searches that showed your faces",
    "restricted_faces": "Faces of yours now excluded from every search",
    "opted_out": "Opted out of future collection",
    "purposes": "For the purposes",
    "templates_kept": "Templates kept, only to recognise and exclude you",
    "objection": "Your objection was",
    "reason": "Reasons",
    "rectification": "Rectification",
    "erasure_receipt": "Erasure receipt",
    "erased": "Erasure",
    "restricted": "Restriction",
}
POSE_TEXT = {
    "front": "Look straight at the camera",
    "left": "Turn your head to your left (about a quarter turn), eyes open",
    "right": "Turn your head to your right (about a quarter turn), eyes open",
}
# Whatever a service puts into an answer, the public pages never show how close two faces were.
HIDDEN_WORDS = ("score", "distance", "similarity")


def _hidden(key: str) -> bool:
    return any(word in key.lower() for word in HIDDEN_WORDS)


def _label(key: str) -> str:
    return ANSWER_LABELS.get(key, key.replace("_", " ").capitalize())


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, list | tuple):
        return ", ".join("all" if v == "*" else _text(v) for v in value) or "none"
    if value is None:
        return "-"
    return str(value)


def answer_rows(answer: dict[str, Any] | None, prefix: str = "") -> list[tuple[str, str]]:
    """The answer as (label, text) rows, nested receipts flattened; the download link is shown apart."""
    rows: list[tuple[str, str]] = []
    for key, value in (answer or {}).items():
        if key == "download" or _hidden(key):
            continue
        label = f"{prefix}{_label(key)}"
        if isinstance(value, dict):
            rows.extend(answer_rows(value, prefix=f"{label}: "))
        else:
            rows.append((label, _text(value)))
    return rows


def public_status(status: dict[str, Any]) -> dict[str, Any]:
    """The service's status with any score-like field removed from the answer (for the JSON endpoint)."""
    def clean(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: clean(v) for k, v in value.items() if not _hidden(k)}
        return value
    return {**status, "answer": clean(status.get("answer"))}


def challenge_steps(challenge: ChallengeView | None) -> dict[str, Any] | None:
    """The live challenge as the page shows it: the nonce, the deadline and each step's words."""
    if challenge is None:
        return None
    return {"nonce": challenge.nonce, "expires_at": iso_z(challenge.expires_at),
            "steps": [{"index": i, "pose": pose, "text": POSE_TEXT[pose]} for i, pose in enumerate(challenge.poses)]}


def day(iso: str) -> str:
    return f"{datetime.fromisoformat(iso):%-d %B %Y}"


def moment(iso: str) -> str:
    return f"{datetime.fromisoformat(iso):%-d %B %Y, %H:%M} UTC"


ENV.filters["day"] = day
ENV.filters["moment"] = moment
ENV.filters["rate"] = rate
ENV.globals.update(kinds=KINDS, kind_titles=KIND_TITLES, status_text=STATUS_TEXT)


def page(template: str, status_code: int = 200, **context: Any) -> HTMLResponse:
    return HTMLResponse(ENV.get_template(template).render(**context), status_code=status_code)


def error_page(status_code: int, title: str, message: str) -> HTMLResponse:
    return page("error.html", status_code, title=title, message=message)
