"""The shared video clips (../shared/data/videos) and frames taken from them as query photos."""

from __future__ import annotations

import io
from pathlib import Path

import av
from PIL import Image

from tests.conftest import SHARED

VIDEOS = SHARED / "data" / "videos"
HAMILTON = VIDEOS / "short_hamilton_clip.mp4"
WDA = sorted(VIDEOS.glob("WDA_*.mp4"))
SAMPLE_FPS = 1.0  # the tests analyse one frame a second: enough for talking heads, and quick


def frame_at(path: Path, seconds: float) -> tuple[bytes, float]:
    """The first frame at or after `seconds`, as JPEG bytes, and its exact time."""
    with av.open(str(path)) as container:
        for frame in container.decode(video=0):
            if frame.time is not None and frame.time >= seconds:
                out = io.BytesIO()
                frame.to_image().save(out, format="JPEG", quality=92)
                return out.getvalue(), float(frame.time)
    raise AssertionError(f"{path.name} has no frame at {seconds} s")


def jpeg_size(data: bytes) -> tuple[int, int]:
    with Image.open(io.BytesIO(data)) as image:
        return image.size
