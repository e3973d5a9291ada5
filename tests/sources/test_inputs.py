"""Batch items from paths and uploads: zip archives read in one pass, the member cap, skipped files listed."""

from __future__ import annotations

import io
import time
import zipfile
from pathlib import Path

from facetrail.runtime import Facetrail, local_actor
from facetrail.sources.inputs import Limits, from_paths, from_upload
from tests.conftest import add_source, sample_bytes

LIMITS = Limits(max_file_bytes=1_000_000, max_zip_member_bytes=1_000_000, max_zip_members=50_000)


def tiny_archive(members: int) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for i in range(members):
            archive.writestr(f"p/{i:05d}.jpg", str(i).encode())
    return buffer.getvalue()


def test_reading_every_member_of_a_large_archive_takes_linear_time(tmp_path: Path) -> None:
    """20,000 members: re-opening the archive for each (n^2) took over 20 minutes; one pass takes about a second
    here. The bound leaves a hundredfold margin for a loaded machine and still fails the quadratic reader."""
    path = tmp_path / "many.zip"
    path.write_bytes(tiny_archive(20_000))
    started = time.perf_counter()
    items = list(from_paths([path], LIMITS))
    contents = [item.read() for item in items]
    elapsed = time.perf_counter() - started
    assert len(items) == 20_000 and contents[12_345] == b"12345"
    assert elapsed < 60, f"reading 20,000 members took {elapsed:.1f} s"


def test_members_read_again_or_out_of_order_are_still_right() -> None:
    items = list(from_upload("batch.zip", tiny_archive(5), LIMITS))
    assert [item.read() for item in reversed(items)] == [b"4", b"3", b"2", b"1", b"0"]
    assert items[2].read() == b"2"  # after the archive was closed: opened again


def test_an_archive_over_the_member_cap_is_one_error_naming_it_and_the_batch_goes_on(tmp_path: Path) -> None:
    ft = Facetrail.open(tmp_path / "data", create=True, workers=1, max_zip_members=3)
    try:
        big, small = tmp_path / "big.zip", tmp_path / "small.zip"
        big.write_bytes(tiny_archive(4))
        with zipfile.ZipFile(small, "w") as archive:
            archive.writestr("a/obama_small.jpg", sample_bytes("obama_small.jpg"))
            archive.writestr("a/", b"")  # a folder entry is not a member to ingest, nor counted
        report = ft.ingest.ingest(local_actor(), add_source(ft), from_paths([big, small], ft.input_limits))
        assert [(e.name, e.cause) for e in report.errors] == [
            (str(big), "zip archive has 4 members; the limit is 3 per archive (FACETRAIL_MAX_ZIP_MEMBERS): split it")]
        assert report.images_added == 1 and report.outcome == "partial"
    finally:
        ft.close()


def test_the_member_cap_defaults_to_ten_thousand(ft: Facetrail) -> None:
    assert ft.input_limits.max_zip_members == 10_000


def test_files_that_are_not_images_or_videos_are_skipped_items_with_their_reason(tmp_path: Path) -> None:
    (tmp_path / "clip.webm").write_bytes(b"\x1a\x45\xdf\xa3")
    (tmp_path / "photo.JPG").write_bytes(b"\xff\xd8\xff")
    with zipfile.ZipFile(tmp_path / "mixed.zip", "w") as archive:
        archive.writestr("doc.pdf", b"%PDF-1.4")
        archive.writestr("inner.zip", b"PK\x05\x06" + bytes(18))
    items = {Path(item.name).name: item for item in from_paths([tmp_path], LIMITS)}
    assert items["clip.webm"].skipped is None and items["clip.webm"].error is None  # a video is an item to ingest
    assert items["mixed.zip!doc.pdf"].skipped == "not an image or video file type (.pdf)"
    assert items["photo.JPG"].skipped is None and items["photo.JPG"].error is None
    assert items["mixed.zip!inner.zip"].error is not None  # a nested archive is an error, as before
