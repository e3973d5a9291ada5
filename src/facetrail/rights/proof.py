"""Identity proof for a request: issuing live-presence challenges, checking a capture, and only then matching.

The order is the safeguard. Intake and the e-mail code never touch the collection. A capture is first checked
on its own (rights/liveness.py: poses in the requested order, no repeated frame, one face throughout); only a
capture that passed is compared with the held faces, at the calibrated 'strong' band. What the requester is
told afterwards never depends on that comparison (rights/service.py): the DPO sees it, with the evidence.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import numpy as np
from numpy.typing import NDArray
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from facetrail.errors import ConflictError, RateLimitedError
from facetrail.rights.liveness import (
    Failure,
    FrameReading,
    LivenessReport,
    Pose,
    check_capture,
    new_poses,
    structure_failure,
)
from facetrail.store.models import IdentityChallenge, RightsRequest

# Each passed capture is one comparison against the whole collection, each capture a vision job: a link
# holder gets a few tries, not a search service.
MAX_CAPTURES = 5
MAX_CHALLENGES = 50


@dataclass(frozen=True)
class CaptureFrame:
    """One frame as sent: the step of the challenge it answers, the image bytes, and the browser's capture
    time in milliseconds (None for an uploaded file)."""

    step: int
    data: bytes
    at_ms: float | None = None


@dataclass(frozen=True)
class Match:
    """A held face that the capture's face matched: distance, the staff score (0-100) and its band."""

    face_id: int
    distance: float
    score: float
    band: str


@dataclass(frozen=True)
class ChallengeView:
    """What the requester is shown: the poses to make, in order, the nonce to send back, and the deadline."""

    nonce: str
    poses: list[str]
    expires_at: datetime


class IdentityProof:
    """`read_frame` analyses one frame (vision); `match_faces` compares a template with the held faces;
    `same_face` gives the largest distance taken as the same face (the 'strong' band)."""

    def __init__(self, *, read_frame: Callable[[CaptureFrame], FrameReading],
                 match_faces: Callable[[NDArray[np.float32]], list[Match]], same_face: Callable[[], float],
                 window_s: int) -> None:
        self.read_frame = read_frame
        self.match_faces = match_faces
        self.same_face = same_face
        self.window_s = window_s

    def current(self, session: Session, request: RightsRequest, *, issue: bool) -> ChallengeView | None:
        """The request's unused, unexpired challenge; a new one when there is none and `issue` is set."""
        at = datetime.now(UTC)
        challenge = session.scalars(select(IdentityChallenge).where(
            IdentityChallenge.request_id == request.id, IdentityChallenge.used_at.is_(None),
            IdentityChallenge.expires_at > at).order_by(IdentityChallenge.id.desc())).first()
        if challenge is None and issue:
            issued = session.scalar(select(func.count()).select_from(IdentityChallenge).where(
                IdentityChallenge.request_id == request.id)) or 0
            if issued >= MAX_CHALLENGES:
                raise RateLimitedError("too many challenges for this request; please make a new request")
            challenge = IdentityChallenge(request_id=request.id, nonce=secrets.token_urlsafe(16),
                                          poses=[p.value for p in new_poses()], issued_at=at,
                                          expires_at=at + timedelta(seconds=self.window_s))
            session.add(challenge)
            session.flush()
        if challenge is None:
            return None
        return ChallengeView(challenge.nonce, list(challenge.poses), challenge.expires_at)

    def take(self, session: Session, request: RightsRequest, nonce: str) -> list[Pose]:
        """Use up the challenge a capture answers (single use) and return its poses; ConflictError when it is
        unknown, used or expired; RateLimitedError past MAX_CAPTURES."""
        used = session.scalar(select(func.count()).select_from(IdentityChallenge).where(
            IdentityChallenge.request_id == request.id, IdentityChallenge.used_at.is_not(None))) or 0
        if used >= MAX_CAPTURES:
            raise RateLimitedError("too many captures for this request; please make a new request")
        challenge = session.scalars(select(IdentityChallenge).where(
            IdentityChallenge.request_id == request.id, IdentityChallenge.nonce == (nonce or ""))).first()
        at = datetime.now(UTC)
        if challenge is None or challenge.used_at is not None or challenge.expires_at <= at:
            raise ConflictError("this challenge has expired or was already used; follow the new one")
        challenge.used_at = at
        return [Pose(p) for p in challenge.poses]

    @staticmethod
    def settle(session: Session, request: RightsRequest, nonce: str, outcome: str) -> None:
        challenge = session.scalars(select(IdentityChallenge).where(
            IdentityChallenge.request_id == request.id, IdentityChallenge.nonce == nonce)).first()
        if challenge is not None:
            challenge.outcome = outcome

    def check(self, poses: Sequence[Pose], frames: Sequence[CaptureFrame]) -> tuple[LivenessReport,
                                                                                    list[FrameReading]]:
        """Read every frame and check the capture against the challenge; nothing here looks at the
        collection. MediaError for a frame that is no image."""
        structure = structure_failure(poses, [f.step for f in frames])
        if structure is not None:
            return LivenessReport(structure), []
        readings = []
        for frame in frames:
            readings.append(self.read_frame(frame))
            if readings[-1].faces != 1:
                # The capture fails on this frame; reading the rest (a frame without a face runs the slower
                # detectors) would only cost time.
                failure = Failure.NO_FACE if readings[-1].faces == 0 else Failure.SEVERAL_FACES
                return LivenessReport(failure, yaws=[r.yaw for r in readings]), readings
        report = check_capture(poses, readings, same_face=self.same_face(), window_s=self.window_s)
        return report, readings

    def match(self, report: LivenessReport) -> list[Match]:
        """The held faces the passed capture's face matches (the first and only comparison)."""
        if report.template is None:
            raise ConflictError("only a capture that passed the live check is compared with the collection")
        return self.match_faces(report.template)
