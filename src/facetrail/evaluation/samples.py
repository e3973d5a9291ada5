"""Detection and recognition on the labelled sample photos (`labels.tsv`: file, people left to right).

Per pipeline: photos where fewer faces were found than are labelled (failure to enrol), faces found beyond
the labelled ones (false detections), time per photo to detect and per face to embed, and whether every
labelled person's templates are closer to each other than to anyone else's (single-person photos only).
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from facetrail.media.image import decode_image
from facetrail.vision.backend import VisionConfig, load_backend


@dataclass(frozen=True)
class LabelledPhoto:
    file: str
    faces: int  # labelled faces
    person: str | None  # the one person, on single-face photos


def read_labels(folder: Path) -> list[LabelledPhoto]:
    """labels.tsv: a header, then `file<TAB>people`; people are comma-separated, remarks in parentheses, and
    'and a child bystander' counts as one more face."""
    photos = []
    for line in (folder / "labels.tsv").read_text().splitlines()[1:]:
        if not line.strip():
            continue
        name, people = line.split("\t", 1)
        parts = [p.strip() for p in re.sub(r"\([^)]*\)", "", people).split(",") if p.strip()]
        photos.append(LabelledPhoto(name, len(parts), parts[0] if len(parts) == 1 else None))
    return photos


@dataclass
class SampleResult:
    pipeline: str
    model_id: str
    photos: int
    labelled_faces: int
    photos_missing_faces: int
    false_detections: int
    detect_ms: float  # mean per photo
    embed_ms: float  # mean per face
    separated: bool  # every single-person template nearer its own people than any other person's
    margin: float  # smallest other-person distance minus largest same-person distance (positive: separated)


def evaluate_samples(folder: Path, pipeline: str, config: VisionConfig) -> SampleResult:
    backend = load_backend(config)
    load = getattr(backend, "load", None)
    if load is not None:
        load()  # weights loaded before timing
    missing = extra = faces = 0
    detect_s = embed_s = 0.0
    templates: list[tuple[str, np.ndarray]] = []
    photos = read_labels(folder)
    for photo in photos:
        pixels = decode_image((folder / photo.file).read_bytes(), max_pixels=config.max_image_pixels).pixels
        started = time.perf_counter()
        found = backend.detect(pixels)
        detect_s += time.perf_counter() - started
        started = time.perf_counter()
        vectors = backend.embed(pixels, found)
        embed_s += time.perf_counter() - started
        faces += len(found)
        missing += int(len(found) < photo.faces)
        extra += max(0, len(found) - photo.faces)
        if photo.person is not None and len(found) == 1:
            templates.append((photo.person, vectors[0]))
    same: list[float] = []
    other: list[float] = []
    for i, (a, va) in enumerate(templates):
        for b, vb in templates[i + 1:]:
            (same if a == b else other).append(float(np.linalg.norm(va - vb)))
    margin = (min(other) - max(same)) if same and other else float("nan")
    return SampleResult(pipeline=pipeline, model_id=backend.model_id, photos=len(photos),
                        labelled_faces=sum(p.faces for p in photos), photos_missing_faces=missing,
                        false_detections=extra, detect_ms=1000 * detect_s / max(1, len(photos)),
                        embed_ms=1000 * embed_s / max(1, faces), separated=bool(margin > 0), margin=margin)
