"""What an ingestion batch did, for the caller, the CLI/API and (as counts) the audit log."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from enum import StrEnum
from typing import Any

from facetrail.errors import FacetrailError


@dataclass(frozen=True)
class ItemError:
    """A file that was not ingested and why (the batch went on without it)."""

    name: str
    cause: str


def cause_of(exc: BaseException) -> str:
    """What an item's error says: facetrail's own and the system's as they are, any other (a library's) named."""
    if isinstance(exc, FacetrailError | OSError):
        return str(exc) or type(exc).__name__
    return f"analysis failed ({type(exc).__name__}: {exc})"


@dataclass(frozen=True)
class SkippedItem:
    """A file found in a folder or archive that is not an image to ingest (a video, a text file), and why."""

    name: str
    reason: str


@dataclass
class VideoSummary:
    """What the analysis of one video found and kept."""

    name: str
    duration_s: float
    frames_decoded: int
    frames_analysed: int
    faces_detected: int
    tracks: int
    templates_kept: int
    tracks_suppressed: int


class Outcome(StrEnum):
    """How a batch went, in one word: what the CLI's exit code and the API's `outcome` say."""

    COMPLETE = "complete"  # every image is in the source now (added, or there already)
    PARTIAL = "partial"  # some images are in, some failed (listed in `errors`)
    FAILED = "failed"  # images were given but none is in: every one failed
    NOTHING = "nothing"  # no image among the inputs at all (only skipped files, or nothing)
    INTERRUPTED = "interrupted"  # stopped before the end (the server shut down); a re-run finishes it


@dataclass
class IngestReport:
    source_id: int
    items: int = 0
    images_added: int = 0
    images_skipped: int = 0
    images_without_faces: int = 0
    # Images every face of which was on the suppression list: not recorded at all (hard rule 6).
    images_suppressed: int = 0
    faces_added: int = 0
    # Faces dropped at the door because they match an opt-out; a count only, never who.
    faces_suppressed: int = 0
    errors: list[ItemError] = field(default_factory=list)
    # Files that are not images (videos, documents) found in folders and archives: listed, never silent.
    skipped: list[SkippedItem] = field(default_factory=list)
    # The batch stopped before its end because the service was shutting down; what was committed stays.
    interrupted: bool = False
    # Items refused because an enforcement order ceases collection of their data: order id -> how many.
    refused_by_order: dict[int, int] = field(default_factory=dict)
    # Videos: added (with their tracks), already in the source, or not recorded (every track opted out).
    videos_added: int = 0
    videos_skipped: int = 0
    videos_suppressed: int = 0
    videos: list[VideoSummary] = field(default_factory=list)

    def refuse(self, name: str, order_id: int, reason: str) -> None:
        self.errors.append(ItemError(name, reason))
        self.refused_by_order[order_id] = self.refused_by_order.get(order_id, 0) + 1

    def merge(self, other: IngestReport) -> None:
        """Add what `other` (another part of the same batch) counted and listed."""
        for name in ("images_added", "images_skipped", "images_without_faces", "images_suppressed", "faces_added",
                     "faces_suppressed", "videos_added", "videos_skipped", "videos_suppressed"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.errors += other.errors
        self.skipped += other.skipped
        self.videos += other.videos
        self.interrupted = self.interrupted or other.interrupted
        for order_id, count in other.refused_by_order.items():
            self.refused_by_order[order_id] = self.refused_by_order.get(order_id, 0) + count

    @property
    def outcome(self) -> Outcome:
        succeeded = (self.images_added + self.images_skipped + self.images_suppressed + self.videos_added
                     + self.videos_skipped + self.videos_suppressed)
        if self.interrupted:
            return Outcome.INTERRUPTED
        if self.errors:
            return Outcome.PARTIAL if succeeded else Outcome.FAILED
        return Outcome.COMPLETE if succeeded else Outcome.NOTHING

    def counts(self) -> dict[str, int | str]:
        """The figures that go to the audit log: no names of files."""
        return {
            "source_id": self.source_id, "items": self.items, "images_added": self.images_added,
            "images_skipped": self.images_skipped, "images_without_faces": self.images_without_faces,
            "images_suppressed": self.images_suppressed, "faces_added": self.faces_added,
            "faces_suppressed": self.faces_suppressed, "errors": len(self.errors),
            "skipped": len(self.skipped), "outcome": self.outcome.value,
            "items_refused": sum(self.refused_by_order.values()),
            "videos_added": self.videos_added, "videos_skipped": self.videos_skipped,
            "videos_suppressed": self.videos_suppressed,
            "video_tracks": sum(v.tracks for v in self.videos),
        }

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "outcome": self.outcome.value, "items_refused": sum(self.refused_by_order.values())}
