"""Live-check captures built from real photos, for the identity-proof tests.

How they were built: every LFW photo of George W. Bush and of Colin Powell was read with the pipeline of the
time (dlib HOG, 5 landmarks; the two second frontal photos were chosen again the same way with the default
pipeline, YuNet at the photo's own size, which reads their predecessors' yaw as 0.13 and 0.15) and sorted by the
yaw estimate (vision/quality.py) into left (yaw >= 0.25), right (<= -0.25) and front (|yaw| <= 0.04). From each
person, two photos of each pose were chosen such that every two of the six are within the calibrated 'strong'
band of each other (the same face throughout), as frames of one live capture would be. A capture answers a
challenge with, for each step, the next unused photo of the pose it asks for (a challenge never asks the same
pose twice in a row, so two per pose suffice). Three other photos of Bush are ingested as the collection's faces
of him; Powell is held nowhere. These are photos, not a live session: they stand for what a camera would send,
and they show that the check reads poses and faces from real images (the check cannot tell a live capture from
well-chosen photos of a person; README, "Identity proof", says what that means).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest
from bench.load import BUSH_HELD as BUSH_HELD
from bench.load import BUSH_POSES

from facetrail.accounts.roles import Actor, Role
from facetrail.rights.proof import CaptureFrame
from facetrail.runtime import Facetrail
from facetrail.sources.inputs import from_paths
from tests.conftest import LFW, add_source

BUSH = BUSH_POSES  # shared with the load test, whose erasure request answers its live check with them
POWELL = {"left": ("Colin_Powell_0069.jpg", "Colin_Powell_0161.jpg"),
          "right": ("Colin_Powell_0233.jpg", "Colin_Powell_0018.jpg"),
          "front": ("Colin_Powell_0188.jpg", "Colin_Powell_0141.jpg")}
OPERATOR = Actor("op", Role.OPERATOR)


def photo(name: str) -> Path:
    """An LFW photo by its file name."""
    return LFW / name.rsplit("_", 1)[0] / name


def capture(poses: Sequence[str], person: dict[str, tuple[str, str]]) -> list[CaptureFrame]:
    """One frame per step: the next unused photo of the person at the pose the step asks for."""
    used = dict.fromkeys(person, 0)
    frames = []
    for step, pose in enumerate(poses):
        frames.append(CaptureFrame(step, photo(person[pose][used[pose]]).read_bytes()))
        used[pose] += 1
    return frames


def mirrored(poses: Sequence[str]) -> list[str]:
    """Another challenge's order: left and right swapped (every challenge turns the head at least once)."""
    return [{"left": "right", "right": "left"}.get(p, p) for p in poses]


def hold_bush(ft: Facetrail) -> list[int]:
    """Ingest the held photos of Bush into a source of their own; the ids of his faces."""
    source = add_source(ft, name="press archive", purposes=("demo",))
    report = ft.ingest.ingest(OPERATOR, source, from_paths([photo(n) for n in BUSH_HELD], ft.input_limits))
    assert report.faces_added == 3 and not report.errors
    from sqlalchemy import select

    from facetrail.store.models import Face
    with ft.db.read() as session:
        return sorted(session.scalars(select(Face.id).where(Face.source_id == source)))


@pytest.fixture
def bush_ft(samples_ft: Facetrail) -> Iterator[Facetrail]:
    """The samples store with three photos of Bush added."""
    hold_bush(samples_ft)
    yield samples_ft
