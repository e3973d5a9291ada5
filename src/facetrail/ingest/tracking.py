"""Faces followed across a video's sampled frames: one person in one shot becomes one track.

A face joins the track it continues: the track's last box overlaps it (IoU) and its template is not far from the
track's last one, or, whatever the boxes, its template is close to the track's (the person moved fast, or the
camera did). Matching is greedy, best pair first, and a track takes at most one face per frame. A track not seen
for `max_gap_s` ends; a scene cut ends every track (a new shot starts new tracks). At the end, tracks of one shot
that never share a frame and whose best templates are close are the same person lost for a moment: they merge.

Overlap plus template similarity is enough here because the frames analysed are a few per second: a motion model
(Kalman, SORT) predicts well between consecutive frames 40 ms apart, not across half a second.

A track keeps its best-quality face (size, sharpness, frontal pose, detector score) and a few more of varied
pose, for recall; the rest of its faces only give its time ranges.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from facetrail.media.geometry import Box
from facetrail.vision.calibration import Band, Calibration
from facetrail.vision.pipeline import AnalyzedFace

UNCALIBRATED_TRACK_DISTANCE = 0.5
"""For a model that brings no calibration: the distance measured for dlib's templates, the only scale known."""


def default_track_distance(calibration: Calibration | None) -> float:
    """How close two faces of consecutive sampled frames must be to continue one track (and two tracks of a shot
    to merge), when the setting leaves it to the model: its calibrated 'probable' distance, where a stranger
    comes that close once in 1,000 comparisons (a face whose box overlaps the track's may be a quarter further).
    Each model's distances have their own scale; for dlib that is 0.53, next to the 0.5 it was tuned with, and
    a track compares with the few faces of one shot, not with a gallery."""
    return calibration.threshold(Band.PROBABLE) if calibration is not None else UNCALIBRATED_TRACK_DISTANCE


@dataclass(frozen=True)
class Sighting:
    """A face in one sampled frame: `frame` is the frame's position among the sampled ones."""

    frame: int
    time: float
    face: AnalyzedFace

    @property
    def quality(self) -> float:
        q = self.face.quality
        size = min(q.size_px, 200) / 200
        sharp = min(q.sharpness, 200.0) / 200
        frontal = max(0.0, 1.0 - abs(q.yaw))
        return size * (0.5 + 0.5 * sharp) * (0.25 + 0.75 * frontal) * (0.5 + 0.5 * min(self.face.detection.score,
                                                                                         1.0))


@dataclass
class Track:
    shot: int
    sightings: list[Sighting] = field(default_factory=list)

    @property
    def last(self) -> Sighting:
        return self.sightings[-1]

    @property
    def best(self) -> Sighting:
        return max(self.sightings, key=lambda s: s.quality)

    def frames(self) -> set[int]:
        return {s.frame for s in self.sightings}

    def ranges(self, step: float, duration: float) -> list[tuple[float, float]]:
        """The time ranges (seconds) the person is seen in: sightings closer than 1.5 sampling steps join, and
        each range reaches half a step either side of its sightings (where the person was not sampled, within
        the video's duration)."""
        times = sorted(s.time for s in self.sightings)
        ranges: list[list[float]] = []
        for t in times:
            if ranges and t - ranges[-1][1] <= 1.5 * step:
                ranges[-1][1] = t
            else:
                ranges.append([t, t])
        end = duration if duration > 0 else float("inf")
        return [(round(max(0.0, a - step / 2), 3), round(min(end, b + step / 2), 3)) for a, b in ranges]

    def kept(self, count: int) -> list[Sighting]:
        """The best sighting, then up to count-1 others whose pose (yaw) differs most from those already kept."""
        best = self.best
        chosen = [best]
        others = [s for s in self.sightings if s is not best and s.face.crop_jpeg]
        while len(chosen) < count and others:
            far = max(others, key=lambda s: min(abs(s.face.quality.yaw - c.face.quality.yaw) for c in chosen))
            if min(abs(far.face.quality.yaw - c.face.quality.yaw) for c in chosen) < 0.1:
                break  # the rest are poses already kept: nothing more for recall
            chosen.append(far)
            others.remove(far)
        return chosen


class Tracker:
    def __init__(self, *, max_distance: float, min_iou: float = 0.3, max_gap_s: float = 1.5) -> None:
        self.max_distance = max_distance
        self.min_iou = min_iou
        self.max_gap_s = max_gap_s
        self.shot = 0
        self._active: list[Track] = []
        self._ended: list[Track] = []

    def cut(self) -> None:
        """A new shot: every track ends."""
        self._ended += self._active
        self._active = []
        self.shot += 1

    def add(self, frame: int, time: float, faces: list[AnalyzedFace]) -> None:
        still: list[Track] = []
        for track in self._active:
            (still if time - track.last.time <= self.max_gap_s else self._ended).append(track)
        self._active = still
        pairs = []
        for ti, track in enumerate(self._active):
            for fi, face in enumerate(faces):
                distance = _distance(track.last.face, face)
                overlap = iou(track.last.face.detection.box, face.detection.box)
                if (overlap >= self.min_iou and distance <= 1.25 * self.max_distance) or distance <= self.max_distance:
                    pairs.append((distance - 0.5 * overlap, ti, fi))
        used_tracks: set[int] = set()
        used_faces: set[int] = set()
        for _cost, ti, fi in sorted(pairs):
            if ti in used_tracks or fi in used_faces:
                continue
            used_tracks.add(ti)
            used_faces.add(fi)
            self._active[ti].sightings.append(Sighting(frame, time, faces[fi]))
        for fi, face in enumerate(faces):
            if fi not in used_faces:
                self._active.append(Track(self.shot, [Sighting(frame, time, face)]))

    def tracks(self) -> list[Track]:
        """Every track, merged where one person was lost and found again within a shot, in order of appearance."""
        tracks = sorted(self._ended + self._active, key=lambda t: (t.sightings[0].time, t.sightings[0].frame))
        merged: list[Track] = []  # new objects: the tracker's own tracks go on unchanged (this runs for progress)
        for track in tracks:
            for earlier in merged:
                if (earlier.shot == track.shot and not earlier.frames() & track.frames()
                        and _distance(earlier.best.face, track.best.face) <= self.max_distance):
                    earlier.sightings = sorted(earlier.sightings + track.sightings, key=lambda s: s.frame)
                    break
            else:
                merged.append(Track(track.shot, list(track.sightings)))
        return merged


def _distance(a: AnalyzedFace, b: AnalyzedFace) -> float:
    return float(np.linalg.norm(np.asarray(a.template, dtype=np.float32) - np.asarray(b.template, dtype=np.float32)))


def iou(a: Box, b: Box) -> float:
    left, top = max(a.left, b.left), max(a.top, b.top)
    right, bottom = min(a.right, b.right), min(a.bottom, b.bottom)
    inter = max(0, right - left) * max(0, bottom - top)
    union = a.area + b.area - inter
    return inter / union if union > 0 else 0.0
