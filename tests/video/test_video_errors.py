"""Bad videos: each gives one clear error naming its cause, and the batch goes on."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import av
import numpy as np
import pytest

from facetrail.errors import MediaError
from facetrail.ingest.analysis import VideoProgress
from facetrail.media.video import VideoLimits, VideoReader, looks_like_video, upright
from facetrail.runtime import Facetrail, local_actor
from facetrail.sources.inputs import from_paths
from tests.conftest import SAMPLES, add_source
from tests.video.clips import HAMILTON, WDA


def faststart_copy(path: Path, out: Path) -> bytes:
    """The clip remuxed with its index (moov) first, as streaming files are: a truncated copy still opens."""
    with av.open(str(path)) as source, av.open(str(out), "w", format="mp4",
                                               options={"movflags": "faststart"}) as sink:
        stream = source.streams.video[0]
        copied = sink.add_stream_from_template(stream)
        for packet in source.demux(stream):
            if packet.dts is None:
                continue
            packet.stream = copied
            sink.mux(packet)
    return out.read_bytes()


@pytest.fixture
def limited(tmp_path: Path) -> Iterator[Facetrail]:
    ft = Facetrail.open(tmp_path / "data", create=True, workers=1, video_sample_fps=1.0, video_max_duration_s=9)
    yield ft
    ft.close()


def test_truncated_text_and_over_limit_videos_each_give_one_error_and_the_batch_goes_on(
        limited: Facetrail, tmp_path: Path) -> None:
    folder = tmp_path / "batch"
    folder.mkdir()
    whole = HAMILTON.read_bytes()
    (folder / "a_truncated.mp4").write_bytes(whole[: len(whole) // 2])
    (folder / "b_notes.mp4").write_text("minutes of the meeting, not a video\n" * 20)
    (folder / "c_long.mp4").write_bytes(whole)  # 9.2 s: over the 9 s limit
    (folder / "d_photo.jpg").write_bytes((SAMPLES / "obama.jpg").read_bytes())
    (folder / "e_clip.mp4").write_bytes(WDA[0].read_bytes())  # 8 s: within it
    source = add_source(limited)
    seen: list[VideoProgress] = []
    limited.ingest.video_progress = seen.append
    report = limited.ingest.ingest(local_actor(), source, from_paths([folder], limited.input_limits))
    errors = {Path(e.name).name: e.cause for e in report.errors}
    assert set(errors) == {"a_truncated.mp4", "b_notes.mp4", "c_long.mp4"}, errors
    assert errors["a_truncated.mp4"].startswith("truncated or corrupt video")
    assert errors["b_notes.mp4"].startswith("not a video")
    assert errors["c_long.mp4"] == ("video too long (9.2 s; the limit is 9 s, FACETRAIL_VIDEO_MAX_DURATION_S)")
    assert report.images_added == 1 and report.videos_added == 1 and report.outcome.value == "partial"
    assert [Path(v.name).name for v in report.videos] == ["e_clip.mp4"]
    # Progress of the one video analysed: frames decoded of those expected, rising to the end, with what it found.
    assert {Path(p.name).name for p in seen} == {"e_clip.mp4"} and len(seen) >= 3
    assert [p.frames_done for p in seen] == sorted(p.frames_done for p in seen)
    assert (seen[-1].frames_done, seen[-1].frames_total, seen[-1].tracks) == (200, 200, report.videos[0].tracks)
    assert seen[-1].faces == report.videos[0].faces_detected


def test_a_video_cut_short_after_its_index_is_truncated(tmp_path: Path) -> None:
    data = faststart_copy(WDA[1], tmp_path / "faststart.mp4")
    assert data[4:8] == b"ftyp" and data.find(b"moov") < data.find(b"mdat")
    assert len(list(VideoReader(data, VideoLimits(sample_fps=1)).frames())) == 8  # the whole copy decodes
    with pytest.raises(MediaError, match=r"truncated or corrupt video: frames stop at \d+\.\d s of the 8\.0 s"):
        list(VideoReader(data[: len(data) // 3], VideoLimits(sample_fps=1)).frames())


@pytest.mark.parametrize("limits,message", [
    (VideoLimits(max_frames=150), "video has too many frames (200; the limit is 150, FACETRAIL_VIDEO_MAX_FRAMES)"),
    (VideoLimits(max_pixels=512 * 511), "video frames too large (512x512; the limit is 261632 pixels"),
    (VideoLimits(max_duration_s=7.5), "video too long (8.0 s; the limit is 7.5 s"),
])
def test_limits_refuse_before_decoding(limits: VideoLimits, message: str) -> None:
    with pytest.raises(MediaError) as caught:
        VideoReader(WDA[2].read_bytes(), limits)
    assert str(caught.value).startswith(message)


def test_empty_and_non_video_bytes() -> None:
    with pytest.raises(MediaError, match="empty file"):
        VideoReader(b"", VideoLimits())
    with pytest.raises(MediaError, match="^not a video"):
        VideoReader(b"%PDF-1.4\n" + bytes(200), VideoLimits())
    assert looks_like_video(HAMILTON.read_bytes()[:64]) and looks_like_video(b"\x1aE\xdf\xa3" + bytes(12))
    assert not looks_like_video((SAMPLES / "obama.jpg").read_bytes()[:64])


def test_sampling_takes_the_configured_rate() -> None:
    data = WDA[3].read_bytes()
    times = [f.time for f in VideoReader(data, VideoLimits(sample_fps=2)).frames()]
    assert len(times) == 16  # 8 s at 2 frames a second: the first frame at or after each half second
    assert all(i / 2 <= t < i / 2 + 1 / 25 + 1e-6 for i, t in enumerate(times)), times


def test_rotation_metadata_turns_the_frame_upright() -> None:
    pixels = np.zeros((2, 3, 3), dtype=np.uint8)
    pixels[0, 0] = 255  # top left
    turned = upright(pixels, -90)  # shown rotated a quarter turn clockwise
    assert turned.shape == (3, 2, 3) and turned[0, 1, 0] == 255  # now top right
    assert upright(pixels, 0) is pixels and upright(pixels, 180)[1, 2, 0] == 255
