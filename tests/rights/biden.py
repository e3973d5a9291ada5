"""Helpers for the erasure and opt-out tests: Joe Biden's faces in the samples store, as the request workflow
would find them (a search with biden.jpg at the 'strong' band over every source), and what the store holds
about them before they are erased."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from sqlalchemy import select

from facetrail.accounts.roles import Actor
from facetrail.media.geometry import Box
from facetrail.media.image import decode_image
from facetrail.runtime import Facetrail
from facetrail.store.models import Face, Source, StoredImage
from facetrail.store.templates import encode_template
from tests.conftest import sample_bytes, template_of
from tests.milvus import SERVER_FILES, collection_files

BIDEN_PHOTOS = ("biden.jpg", "biden2.jpg")
GROUPS = ("two_people.jpg", "obama_and_biden.jpg")


@dataclass(frozen=True)
class StoredFace:
    id: int
    image_id: int
    image_name: str  # the sample's file name
    box: Box
    template: bytes  # the 512 bytes of the template, decrypted
    sealed: bytes  # Face.template as stored: encrypted under key_id
    key_id: str
    crop_key: str
    crop: bytes  # decrypted
    image_key: str | None
    image_key_id: str | None


def find_biden(ft: Facetrail, actor: Actor) -> list[int]:
    """Face ids that a search with biden.jpg returns at the 'strong' band, over every source's purposes."""
    with ft.db.read() as session:
        purposes = {p for row in session.scalars(select(Source.purposes)) for p in row}
    found: set[int] = set()
    for purpose in sorted(purposes):
        outcome = ft.search.search(actor, sample_bytes("biden.jpg"), purpose=purpose, case_ref="erasure-test",
                                   top_k=100, min_band="strong")
        found.update(hit.face_id for hit in outcome.results)
    return sorted(found)


def stored_faces(ft: Facetrail, face_ids: list[int]) -> list[StoredFace]:
    with ft.db.read() as session:
        rows = session.execute(select(Face, StoredImage).join(StoredImage, Face.image_id == StoredImage.id)
                               .where(Face.id.in_(face_ids)).order_by(Face.id)).all()
    faces = []
    for face, image in rows:
        assert face.crop_key is not None
        faces.append(StoredFace(face.id, image.id, Path(image.original_name).name,
                                Box(face.box_left, face.box_top, face.box_right, face.box_bottom),
                                encode_template(template_of(ft, face.template)), face.template, face.key_id,
                                face.crop_key, ft.blobs.get(face.crop_key), image.blob_key, image.key_id))
    return faces


def files_holding(data: Path, needle: bytes) -> list[str]:
    """Every file under the data directory (database, its -wal and -shm, index, blobs...) holding `needle`; on
    the test run's Milvus server (tests/milvus.py), also the files of the test's collections there, named
    `milvus-server/collections/...`."""
    found = [str(path.relative_to(data)) for path in data.rglob("*") if path.is_file() and needle in path.read_bytes()]
    found += [name for name, path in collection_files() if _holds(path, needle)]
    return sorted(found)


def engine_files(ft: Facetrail) -> str:
    """Where the vector engine keeps vectors in clear, as files_holding names them ('' for the embedded index,
    which seals its file): embedded milvus-lite's directory under the data directory, or the files of the data
    directory's collections on the test run's Milvus server (a Milvus cluster keeps them on its own volumes)."""
    if ft.settings.index_engine != "milvus":
        return ""
    return "index/milvus-lite.db/" if ft.settings.milvus_uri is None else SERVER_FILES


def _holds(path: Path, needle: bytes) -> bool:
    try:
        return needle in path.read_bytes()
    except FileNotFoundError:  # the server rewrote it meanwhile
        return False


def raw_blob(ft: Facetrail, key: str) -> bytes:
    """A blob's bytes as they lie on disk (sealed)."""
    kind, name = key.split("/", 1)
    return (ft.blobs.root / kind / name[:2] / name).read_bytes()


def iou(a: Box, b: Box) -> float:
    inter = Box(max(a.left, b.left), max(a.top, b.top), min(a.right, b.right), min(a.bottom, b.bottom))
    overlap = inter.area if inter.width > 0 and inter.height > 0 else 0
    return overlap / float(a.area + b.area - overlap)


def stored_pixels(ft: Facetrail, key: str) -> np.ndarray:
    return decode_image(ft.blobs.get(key), max_pixels=ft.settings.max_image_pixels).pixels


def detected_boxes(ft: Facetrail, pixels: np.ndarray) -> list[Box]:
    return [d.box for d in ft.analyzer.backend.detect(pixels)]


def region(pixels: np.ndarray, box: Box) -> np.ndarray:
    return pixels[box.top:box.bottom, box.left:box.right]
