"""The live-presence challenge: a random order of head poses, and the check that a capture followed it.

A requester proves that a live person stands before the camera by turning their head as asked, in an order
the portal chose at random a moment before (the challenge). A capture is a few frames per step. It passes
when every step shows its pose, no frame repeats another, and one and the same face is present throughout.
This module only looks at the frames: it never compares them with the collection (that comes after, and
only for a capture that passed), so a failure here says nothing about whether anyone is held.

Pose comes from the five landmarks (vision/quality.py's yaw: the nose's offset from the midpoint of the
eyes over half the eye distance). Measured on LFW with dlib's HOG detector, frontal faces sit within
|yaw| <= 0.1 and a clear head turn (about 20 degrees and more) gives |yaw| >= 0.2; between is unclear. Up
and down are not asked for: five points place the nose below the eyes at about the same height whether the
head tilts or not, so pitch is not reliable enough to judge. Left and right are the person's own: in a
frame as the camera sees it (not mirrored), turning to one's own left moves the nose to the image's right.
"""

from __future__ import annotations

import math
import secrets
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from itertools import pairwise

import numpy as np
from numpy.typing import NDArray

FRONT_MAX_YAW = 0.1
TURN_MIN_YAW = 0.18
STEPS = 4
MAX_FRAMES_PER_STEP = 6


class Pose(StrEnum):
    LEFT = "left"  # the person's own left
    RIGHT = "right"
    FRONT = "front"


class Failure(StrEnum):
    """Why a capture did not follow its challenge (told to the requester: it is about their capture only)."""

    MISSING_STEP = "missing-step"
    TOO_MANY_FRAMES = "too-many-frames"
    NO_FACE = "no-face"
    SEVERAL_FACES = "several-faces"
    REPEATED_FRAME = "repeated-frame"
    WRONG_POSE = "wrong-pose"
    FACE_CHANGED = "face-changed"
    TIMING = "timing"


def pose_of(yaw: float) -> Pose | None:
    """The pose a yaw (-1..1, vision/quality.py) shows; None when it is between frontal and turned."""
    if yaw >= TURN_MIN_YAW:
        return Pose.LEFT
    if yaw <= -TURN_MIN_YAW:
        return Pose.RIGHT
    if abs(yaw) <= FRONT_MAX_YAW:
        return Pose.FRONT
    return None


def new_poses(steps: int = STEPS) -> list[Pose]:
    """A random order of poses, no pose twice in a row (so every challenge asks for head turns)."""
    rng = secrets.SystemRandom()
    poses = [rng.choice(list(Pose))]
    while len(poses) < steps:
        poses.append(rng.choice([p for p in Pose if p is not poses[-1]]))
    return poses


@dataclass(frozen=True)
class FrameReading:
    """What one frame of a capture shows. `faces`: how many were detected; `yaw`, `template` and `crop` are
    the largest face's (None/empty when there is none); `digest`: SHA-256 of the decoded pixels;
    `at_ms`: the capture time the browser gave, in milliseconds (None for uploaded files)."""

    step: int
    faces: int
    yaw: float
    template: NDArray[np.float32] | None
    crop: bytes
    digest: str
    at_ms: float | None = None


@dataclass(frozen=True)
class LivenessReport:
    """The check's result. `failure` is None when the capture passed; `template` is then the mean of the
    frames' templates (the capture's face), `key_frames` one frame index per step (the clearest pose)."""

    failure: Failure | None
    poses_seen: list[str | None] = field(default_factory=list)
    yaws: list[float] = field(default_factory=list)
    max_step_distance: float = 0.0
    max_distance_to_rest: float = 0.0
    template: NDArray[np.float32] | None = None
    key_frames: list[int] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return self.failure is None


def structure_failure(poses: Sequence[Pose], steps: Sequence[int]) -> Failure | None:
    """What is wrong with a capture's layout before any frame is read: a step without frames, a step that
    does not exist, too many frames for a step."""
    if any(step < 0 or step >= len(poses) for step in steps) or set(steps) != set(range(len(poses))):
        return Failure.MISSING_STEP
    if any(steps.count(step) > MAX_FRAMES_PER_STEP for step in set(steps)):
        return Failure.TOO_MANY_FRAMES
    return None


def check_capture(poses: Sequence[Pose], frames: Sequence[FrameReading], *, same_face: float,
                  window_s: float) -> LivenessReport:
    """Did these frames follow the challenge `poses`? `same_face` is the largest template distance taken as
    the same face (the calibrated 'strong' band); `window_s` the longest a capture may span."""
    structure = structure_failure(poses, [f.step for f in frames])
    if structure is not None:
        return LivenessReport(structure)
    by_step = [[i for i, f in enumerate(frames) if f.step == s] for s in range(len(poses))]
    seen = [pose_of(f.yaw) if f.faces else None for f in frames]
    yaws = [f.yaw for f in frames]

    def report(failure: Failure | None, step: float = 0.0, rest: float = 0.0,
               template: NDArray[np.float32] | None = None, key_frames: list[int] | None = None) -> LivenessReport:
        return LivenessReport(failure, [p.value if p else None for p in seen], yaws, round(step, 4), round(rest, 4),
                              template, key_frames or [])

    if any(f.faces == 0 for f in frames):
        return report(Failure.NO_FACE)
    if any(f.faces > 1 for f in frames):
        return report(Failure.SEVERAL_FACES)  # e.g. a photo held up beside a face
    if len({f.digest for f in frames}) < len(frames):
        return report(Failure.REPEATED_FRAME)  # a still picture sent again, step after step
    if not _timely(frames, window_s):
        return report(Failure.TIMING)
    for pose, indices in zip(poses, by_step, strict=True):
        shown = [seen[i] for i in indices]
        if pose not in shown or any(p is not None and p is not pose for p in shown):
            return report(Failure.WRONG_POSE)
    order = [i for indices in by_step for i in indices]
    templates = np.stack([_template(frames[i]) for i in order]).astype(np.float32)
    steps = [float(np.linalg.norm(a - b)) for a, b in pairwise(templates)]
    total = templates.sum(axis=0)
    to_rest = [float(np.linalg.norm(t - (total - t) / (len(templates) - 1))) for t in templates] \
        if len(templates) > 1 else [0.0]
    step, rest = max(steps, default=0.0), max(to_rest)
    if step > same_face or rest > same_face:
        return report(Failure.FACE_CHANGED, step, rest)
    key_frames = [_clearest(pose, indices, frames) for pose, indices in zip(poses, by_step, strict=True)]
    return report(None, step, rest, templates.mean(axis=0).astype(np.float32), key_frames)


def _timely(frames: Sequence[FrameReading], window_s: float) -> bool:
    """Browser capture times, when given, follow the steps' order and fit in the window."""
    times = [(f.step, f.at_ms) for f in frames if f.at_ms is not None]
    if not times:
        return True
    if any(not math.isfinite(t) for _, t in times):
        return False
    ordered = [t for _, t in sorted(times, key=lambda st: st[0])]
    monotonic = all(b >= a for a, b in pairwise(ordered))
    return monotonic and (ordered[-1] - ordered[0]) <= window_s * 1000


def _template(frame: FrameReading) -> NDArray[np.float32]:
    if frame.template is None:
        raise ValueError("a frame with a face has a template")
    return frame.template


def _clearest(pose: Pose, indices: list[int], frames: Sequence[FrameReading]) -> int:
    """The step's frame that shows its pose best (the most frontal, or the most turned)."""
    def clearness(index: int) -> float:
        yaw = abs(frames[index].yaw)
        return -yaw if pose is Pose.FRONT else yaw
    return max(indices, key=clearness)
