"""Videos through the API: uploaded like photos, found by a frame, with the video, time ranges and key frame."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from facetrail.api import create_app
from facetrail.runtime import Facetrail, local_actor
from tests.video.clips import SAMPLE_FPS, WDA, frame_at, jpeg_size

SOURCE = {"name": "interviews", "controller": "Agency", "purposes": ["press"], "legal_basis": "public_task",
          "art9_condition": "g", "evidence_ref": "law 2026-1", "jurisdictions": ["FR"], "retention_days": 90}


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[TestClient, dict[str, str]]]:
    data = tmp_path_factory.mktemp("video-api") / "data"
    ft = Facetrail.open(data, create=True, workers=1, video_sample_fps=SAMPLE_FPS)
    keys = {role: ft.accounts.create(local_actor(), name=f"{role}-1", role=role)[1]
            for role in ("operator", "investigator")}
    with TestClient(create_app(ft)) as client:
        yield client, keys
    ft.close()


def auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def test_upload_a_video_then_find_it_by_a_frame(api: tuple[TestClient, dict[str, str]]) -> None:
    client, keys = api
    source_id = client.post("/v1/sources", headers=auth(keys["operator"]), json=SOURCE).json()["id"]
    clip = WDA[3]
    files = [("files", (clip.name, clip.read_bytes(), "video/mp4")),
             ("files", ("broken.mp4", clip.read_bytes()[:5000], "video/mp4"))]
    response = client.post(f"/v1/sources/{source_id}/images", headers=auth(keys["operator"]), files=files)
    assert response.status_code == 200, response.text
    report = response.json()
    assert report["videos_added"] == 1 and report["outcome"] == "partial"
    assert [e["name"] for e in report["errors"]] == ["broken.mp4"]
    [summary] = report["videos"]
    assert summary["name"] == clip.name and summary["frames_decoded"] == 200 and summary["tracks"] >= 1
    assert report["faces_added"] == summary["templates_kept"]

    photo, time = frame_at(clip, 4.7)
    found = client.post("/v1/search", headers=auth(keys["investigator"]), data={"purpose": "press", "case": "c"},
                        files={"photo": ("q.jpg", photo, "image/jpeg")})
    assert found.status_code == 200, found.text
    first = found.json()["results"][0]
    video = first["video"]
    assert Path(video["name"]).name == clip.name and video["duration_s"] == 8.0
    assert any(start <= time <= end for start, end in video["ranges"])
    frame = client.get(video["key_frame"], headers=auth(keys["investigator"]))
    assert frame.status_code == 200 and frame.headers["content-type"] == "image/jpeg"
    assert jpeg_size(frame.content) == (512, 512)
    assert client.get(video["key_frame"], headers=auth(keys["operator"])).status_code == 403

    again = client.post(f"/v1/sources/{source_id}/images", headers=auth(keys["operator"]), files=files[:1]).json()
    assert again["videos_added"] == 0 and again["videos_skipped"] == 1 and again["outcome"] == "complete"
