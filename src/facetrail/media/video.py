"""Decode untrusted video bytes (mp4, mov, mkv, webm, avi...) into the upright RGB frames to analyse.

FFmpeg does the decoding (through PyAV, whose wheel ships it). Not every frame is analysed: a talking head
changes little in 1/25 s, and a thousand near-identical frames would flood the index. The sampling policy takes
`sample_fps` frames per second, plus the first frame of every shot (a scene cut: the picture changes at once),
so that a short shot is never missed. Every decoded frame is looked at for cuts (on a 32x32 greyscale copy);
only sampled frames are converted to RGB.

Work is bounded before and while decoding: a video longer than `max_duration_s`, with more than `max_frames`
frames or more than `max_pixels` pixels per frame is refused with a MediaError that names the limit, as is a
file FFmpeg cannot open (a text file named .mp4), one with no video stream, and one whose frames stop well
before its declared end (truncated). Rotation metadata (the display matrix phones write) is applied.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from facetrail.errors import MediaError

VIDEO_SIGNATURES = (b"\x1aE\xdf\xa3",)  # Matroska / WebM (EBML)


@dataclass(frozen=True)
class VideoLimits:
    """What a video may cost, and how it is sampled (settings `video_*`)."""

    sample_fps: float = 2.0
    scene_cut: float = 0.25  # mean absolute change of a 32x32 greyscale frame, as a fraction of full scale
    max_duration_s: float = 3600.0
    max_frames: int = 200_000
    max_pixels: int = 8_294_400  # 3840x2160


@dataclass(frozen=True)
class VideoInfo:
    container: str
    codec: str
    width: int
    height: int
    duration_s: float
    fps: float
    frames_total: int  # as declared or estimated from duration and rate
    rotation: int


@dataclass(frozen=True)
class SampledFrame:
    """One frame chosen for analysis: `number` counts decoded frames from 0, `time` is in seconds."""

    number: int
    time: float
    pixels: NDArray[np.uint8]
    cut: bool


FrameProgress = Callable[[int, int], None]
"""Called with (frames decoded, frames expected) as a video is decoded."""


def looks_like_video(data: bytes) -> bool:
    """Whether the bytes start like a video container (ISO BMFF/QuickTime, Matroska/WebM, AVI)."""
    head = data[:16]
    return (head[4:8] in (b"ftyp", b"moov", b"mdat", b"wide", b"free") and not head[8:12].startswith(b"avif")
            and not head[8:12].startswith(b"heic")) or head.startswith(VIDEO_SIGNATURES) or (
        head[:4] == b"RIFF" and head[8:12] == b"AVI ")


class VideoReader:
    """An opened video: `info` at once (limits checked), `frames()` yields the sampled frames."""

    def __init__(self, data: bytes, limits: VideoLimits) -> None:
        import av  # imported here: PyAV loads FFmpeg, which only video ingestion needs

        self._av = av
        self.limits = limits
        if not data:
            raise MediaError("empty file (0 bytes)")
        try:
            self._container = av.open(io.BytesIO(data), mode="r", metadata_errors="ignore")
        except (av.FFmpegError, ValueError, OSError) as exc:
            if looks_like_video(data):
                raise MediaError(f"truncated or corrupt video: it cannot be opened ({_reason(exc)})") from exc
            raise MediaError(f"not a video (or one FFmpeg cannot decode): {_reason(exc)}") from exc
        try:
            self.info = self._probe()
        except BaseException:
            self._container.close()
            raise

    def _probe(self) -> VideoInfo:
        container = self._container
        if not container.streams.video:
            raise MediaError("no video stream in the file (an audio file, or a corrupt video)")
        stream = container.streams.video[0]
        ctx = stream.codec_context
        width, height = int(ctx.width or 0), int(ctx.height or 0)
        if width <= 0 or height <= 0:
            raise MediaError("undecodable video: the video stream has no frame size")
        if width * height > self.limits.max_pixels:
            raise MediaError(f"video frames too large ({width}x{height}; the limit is {self.limits.max_pixels} "
                             "pixels, FACETRAIL_VIDEO_MAX_PIXELS)")
        fps = float(stream.average_rate or stream.guessed_rate or 0) or 25.0
        duration = 0.0
        if stream.duration is not None and stream.time_base is not None:
            duration = float(stream.duration * stream.time_base)
        elif container.duration is not None:
            duration = container.duration / 1_000_000
        if duration > self.limits.max_duration_s:
            raise MediaError(f"video too long ({duration:.1f} s; the limit is {self.limits.max_duration_s:g} s, "
                             "FACETRAIL_VIDEO_MAX_DURATION_S)")
        frames = int(stream.frames or round(duration * fps))
        if frames > self.limits.max_frames:
            raise MediaError(f"video has too many frames ({frames}; the limit is {self.limits.max_frames}, "
                             "FACETRAIL_VIDEO_MAX_FRAMES)")
        rotation = 0
        return VideoInfo(container=str(container.format.name), codec=str(ctx.name), width=width, height=height,
                         duration_s=duration, fps=fps, frames_total=frames, rotation=rotation)

    def close(self) -> None:
        self._container.close()

    def frames(self, progress: FrameProgress | None = None) -> Iterator[SampledFrame]:
        """The sampled frames in order; MediaError if decoding fails or stops well before the declared end."""
        av = self._av
        limits, info = self.limits, self.info
        stream = self._container.streams.video[0]
        stream.thread_type = "AUTO"
        step = 1.0 / limits.sample_fps if limits.sample_fps > 0 else float("inf")
        next_time, previous, number, last_time = 0.0, None, -1, 0.0
        try:
            for frame in self._container.decode(stream):
                number += 1
                if number >= limits.max_frames:
                    raise MediaError(f"video has too many frames (over {limits.max_frames}, "
                                     "FACETRAIL_VIDEO_MAX_FRAMES)")
                time = float(frame.time) if frame.time is not None else number / info.fps
                if time > limits.max_duration_s:
                    raise MediaError(f"video too long (over {limits.max_duration_s:g} s, "
                                     "FACETRAIL_VIDEO_MAX_DURATION_S)")
                last_time = time
                small = frame.reformat(width=32, height=32, format="gray").to_ndarray().astype(np.int16)
                cut = previous is not None and float(np.abs(small - previous).mean()) / 255.0 > limits.scene_cut
                previous = small
                if progress is not None:
                    progress(number + 1, max(info.frames_total, number + 1))
                if time + 1e-6 < next_time and not cut:
                    continue
                next_time = (time // step + 1) * step if step != float("inf") else float("inf")
                pixels = upright(np.asarray(frame.to_ndarray(format="rgb24"), dtype=np.uint8), _rotation(frame))
                yield SampledFrame(number=number, time=round(time, 3), pixels=pixels, cut=cut)
        except av.FFmpegError as exc:
            raise MediaError(f"corrupt or truncated video: decoding failed after {number + 1} frame(s) "
                             f"({_reason(exc)})") from exc
        if number < 0:
            raise MediaError("undecodable video: no frame could be decoded (truncated or corrupt)")
        end = last_time + 1.0 / info.fps
        if info.duration_s > 0 and end < info.duration_s - max(1.0, 0.1 * info.duration_s):
            raise MediaError(f"truncated or corrupt video: frames stop at {end:.1f} s of the {info.duration_s:.1f} s "
                             "it declares")


def upright(pixels: NDArray[np.uint8], rotation: int) -> NDArray[np.uint8]:
    """The frame as it is meant to be shown: `rotation` is the display matrix's counter-clockwise angle."""
    turns = round(rotation / 90) % 4
    return np.ascontiguousarray(np.rot90(pixels, k=turns)) if turns else pixels


def _rotation(frame: object) -> int:
    try:
        return int(round(float(getattr(frame, "rotation", 0) or 0)))
    except (TypeError, ValueError):
        return 0


def _reason(exc: BaseException) -> str:
    text = getattr(exc, "strerror", None) or str(exc)
    return str(text).strip() or type(exc).__name__
