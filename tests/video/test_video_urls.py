"""A video listed by a URL-list source is fetched and ingested like one read from disk, with its URL and fetch time
as the provenance of the video and of its key frames."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import select

from facetrail.store.models import StoredImage, Video
from tests.sources.site import Page, serving
from tests.sources.test_url_sources import ingest_urls, open_url_ft
from tests.video.clips import WDA


def test_a_listed_video_is_ingested_with_its_url(tmp_path: Path) -> None:
    ft = open_url_ft(tmp_path / "data", video_sample_fps=1.0)
    try:
        with serving() as site:
            site.pages["/robots.txt"] = Page(b"User-agent: *\nAllow: /\n", content_type="text/plain")
            site.pages["/clips/interview.mp4"] = Page(WDA[0].read_bytes(), content_type="video/mp4")
            url = site.url("/clips/interview.mp4")
            source_id, report = ingest_urls(ft, [url])
        assert report["videos_added"] == 1 and report["errors"] == [], report
        with ft.db.read() as session:
            video = session.scalar(select(Video).where(Video.source_id == source_id))
            assert video is not None and video.original_name == url and video.origin_url == url
            assert video.fetched_at is not None
            frames = list(session.scalars(select(StoredImage).where(StoredImage.video_id == video.id)))
        assert frames and all(f.origin_url == url and f.fetched_at == video.fetched_at for f in frames)
    finally:
        ft.close()
