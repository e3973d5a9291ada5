"""The CPU-heavy part of ingestion: decode, detect, embed, crop (photo.py: a photo, as the worker processes
run it; here: the same in this process, and videos)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace

from facetrail.config import Settings
from facetrail.ingest.photo import ImageAnalysis, analyze_photo
from facetrail.ingest.tracking import Track, Tracker
from facetrail.media.image import encode_jpeg
from facetrail.media.video import VideoInfo, VideoLimits, VideoReader
from facetrail.vision.backend import VisionBackend, VisionConfig, load_backend
from facetrail.vision.pipeline import analyze_faces


@dataclass(frozen=True)
class VideoProgress:
    """Where the analysis of one video stands: frames decoded of those expected, faces found, tracks so far."""

    name: str
    frames_done: int
    frames_total: int
    faces: int
    tracks: int


@dataclass(frozen=True)
class FrameJpeg:
    """A sampled frame kept while its video is analysed, as JPEG: a candidate key frame."""

    time: float
    number: int
    jpeg: bytes
    width: int
    height: int


@dataclass
class VideoAnalysis:
    """A video's sampled frames that hold a face (as JPEG, by their position among the sampled frames) and its
    tracks. A photo is the one-frame case of the same model: one frame, each face a track of one sighting."""

    info: VideoInfo
    step: float  # seconds between two sampled frames
    frames_decoded: int = 0
    frames_analysed: int = 0
    faces_detected: int = 0
    # sampled frame position -> that frame (those with a face only)
    frames: dict[int, FrameJpeg] = field(default_factory=dict)
    tracks: list[Track] = field(default_factory=list)


def vision_config(settings: Settings, **overrides: object) -> VisionConfig:
    """The vision settings the product ingests and searches with (`overrides` replace some, e.g. a benchmark's
    pipeline): one place maps Settings to the VisionConfig the worker processes receive."""
    config = VisionConfig(detector=settings.detector, upsample_budget_pixels=settings.upsample_budget_pixels,
                          max_upsample=settings.max_upsample, detector_fallback=settings.detector_fallback,
                          jitters=settings.jitters, model=settings.model, max_image_pixels=settings.max_image_pixels,
                          crop_size=settings.crop_size, vision_model=settings.vision_model)
    return replace(config, **overrides)  # type: ignore[arg-type]


class Analyzer:
    """Decodes and analyses images with one lazily loaded backend."""

    def __init__(self, config: VisionConfig, backend: VisionBackend | None = None) -> None:
        self.config = config
        self._backend = backend
        self._video_backend: VisionBackend | None = None if backend is None or config.detector_fallback else backend

    @property
    def backend(self) -> VisionBackend:
        if self._backend is None:
            self._backend = load_backend(self.config)
        return self._backend

    @property
    def video_backend(self) -> VisionBackend:
        """The backend for video frames: without the slow fallback detectors on a frame where the configured
        one finds nothing (a face missed in one frame is found in the next ones)."""
        if self._video_backend is None:
            self._video_backend = (load_backend(replace(self.config, detector_fallback=False))
                                   if self.config.detector_fallback else self.backend)
        return self._video_backend

    def analyze(self, data: bytes) -> ImageAnalysis:
        return analyze_photo(self.backend, self.config, data)

    def analyze_video(self, data: bytes, limits: VideoLimits, *, track_distance: float, name: str = "",
                      progress: Callable[[VideoProgress], None] | None = None) -> VideoAnalysis:
        """Decode the sampled frames, find and embed their faces, and follow them into tracks (media/video.py,
        tracking.py). MediaError names what is wrong with a file that cannot be analysed whole."""
        reader = VideoReader(data, limits)
        try:
            result = VideoAnalysis(info=reader.info, step=1.0 / limits.sample_fps)
            tracker = Tracker(max_distance=track_distance, max_gap_s=max(1.5, 2.5 * result.step))
            decoded = [0, reader.info.frames_total]

            def seen(done: int, total: int) -> None:
                decoded[:] = [done, total]
                if progress is not None and (done % 25 == 0 or done == total):
                    progress(VideoProgress(name, done, total, result.faces_detected, len(tracker.tracks())))

            for position, frame in enumerate(reader.frames(seen)):
                if frame.cut:
                    tracker.cut()
                faces = analyze_faces(self.video_backend, frame.pixels, crop_size=self.config.crop_size)
                result.frames_analysed += 1
                result.faces_detected += len(faces)
                if faces:
                    height, width = frame.pixels.shape[:2]
                    result.frames[position] = FrameJpeg(frame.time, frame.number,
                                                        encode_jpeg(frame.pixels, quality=90), width, height)
                tracker.add(position, frame.time, faces)
            result.frames_decoded = decoded[0]
            result.tracks = tracker.tracks()
            if progress is not None:
                progress(VideoProgress(name, decoded[0], decoded[0], result.faces_detected, len(result.tracks)))
            return result
        finally:
            reader.close()

