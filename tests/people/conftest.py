"""Who is in the sample photos, face by face, read back from a store that holds them."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import PurePath

import numpy as np
from numpy.typing import NDArray
from sqlalchemy import select

from facetrail.runtime import Facetrail
from facetrail.store.models import Face, StoredImage
from tests.conftest import labelled_people, template_of


@dataclass(frozen=True)
class SampleFace:
    face_id: int
    file: str
    label: str | None
    """The one person labels.tsv names in the file; None in group photos (see `group_photos`)."""
    template: NDArray[np.float32]


def sample_faces(ft: Facetrail) -> list[SampleFace]:
    """Every face in `ft` with the file it came from and, for one-person photos, who it is.

    Group photos get no per-face label: labels.tsv lists their people "left to right", but for
    kit_with_rose.jpg that order is wrong (Rose Leslie stands on the left), so tests compare the
    set of people in a group photo instead of face by face.
    """
    labels = labelled_people()
    with ft.db.read() as session:
        rows = session.execute(select(Face.id, StoredImage.original_name, Face.template)
                               .join(StoredImage, Face.image_id == StoredImage.id).order_by(Face.id)).all()
    faces = []
    for face_id, original, template in rows:
        file = PurePath(original).name
        who = labels.get(file, [])
        faces.append(SampleFace(face_id, file, who[0] if len(who) == 1 else None, template_of(ft, template)))
    return faces


def group_photos() -> dict[str, set[str]]:
    """Photos of several people: file -> the labelled people in it."""
    return {file: set(who) for file, who in labelled_people().items() if len(who) > 1}
