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


def side_by_side(left: Path, right: Path, out: Path, *, seconds: float = 3.0, fps: int = 5) -> Path:
    """A video of two people at once: each frame the left clip's frame beside the right clip's (mpeg4)."""
    with av.open(str(left)) as a, av.open(str(right)) as b, av.open(str(out), "w") as sink:
        stream = sink.add_stream("mpeg4", rate=fps)
        stream.width, stream.height, stream.pix_fmt = 1024, 512, "yuv420p"
        stream.bit_rate = 4_000_000
        every = 25 // fps
        for number, (fa, fb) in enumerate(zip(a.decode(video=0), b.decode(video=0), strict=False)):
            if number >= seconds * 25:
                break
            if number % every:
                continue
            canvas = Image.new("RGB", (1024, 512))
            canvas.paste(fa.to_image().resize((512, 512)), (0, 0))
            canvas.paste(fb.to_image().resize((512, 512)), (512, 0))
            for packet in stream.encode(av.VideoFrame.from_image(canvas)):
                sink.mux(packet)
        for packet in stream.encode():
            sink.mux(packet)
    return out
