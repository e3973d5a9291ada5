"""What people see of videos: the command line's summary and search table, and the console's results."""

from __future__ import annotations

import json
import re
from pathlib import Path

from fastapi.testclient import TestClient
from typer.testing import CliRunner

from facetrail.api import create_app
from facetrail.cli.main import app
from facetrail.runtime import Facetrail
from tests.cli.test_cli import SOURCE, init
from tests.conftest import add_source
from tests.video.clips import WDA, frame_at
from tests.web.conftest import csrf_of
from tests.web.staff import console_search, sign_in, staff

runner = CliRunner()


def run(data: Path, *args: str) -> tuple[int, str]:
    result = runner.invoke(app, ["--data", str(data), *args], env={"FACETRAIL_VIDEO_SAMPLE_FPS": "1"})
    return result.exit_code, result.output


def test_the_command_line_reports_each_video_and_shows_where_a_result_is_seen(tmp_path: Path) -> None:
    data = init(tmp_path / "data")
    assert run(data, *SOURCE)[0] == 0
    code, output = run(data, "ingest", "--source", "1", "--workers", "1", str(WDA[0]))
    assert code == 0, output
    assert "1 video(s) added" in output and WDA[0].name in output
    row = next(line for line in output.splitlines() if WDA[0].name in line and "8.0" in line)
    assert re.search(r"8\.0\D+200\D+8\D+\d+\D+1\D+\d+", row), row  # seconds, frames decoded, analysed, faces, 1 track
    code, output = run(data, "ingest", "--source", "1", "--workers", "1", str(WDA[0]), "--json")
    assert code == 0 and json.loads(output)["videos_skipped"] == 1
    (tmp_path / "q.jpg").write_bytes(frame_at(WDA[0], 3.3)[0])
    code, output = run(data, "search", str(tmp_path / "q.jpg"), "--purpose", "press", "--case", "c1")
    assert code == 0, output
    assert re.search(rf"{re.escape(WDA[0].name)}, track \d+: 0\.0-7\.5 s", output), output


def test_the_console_shows_the_video_and_when_the_person_is_seen(video_ft: Facetrail) -> None:
    staff(video_ft, "ivan", "investigator")
    with TestClient(create_app(video_ft)) as client:
        sign_in(client, "ivan")
        page = console_search(client, frame_at(WDA[1], 2.2)[0]).text
    assert f'title="{WDA[1]}"' in page and "Seen at" in page
    assert re.search(r'class="seen">0\.0&ndash;7\.5 s<', page), page
    assert re.search(r"Key frame at \d+\.\d s, face \d+ outlined", page)


def test_the_console_upload_report_lists_each_video(tmp_path: Path) -> None:
    ft = Facetrail.open(tmp_path / "data", create=True, workers=1, video_sample_fps=1.0)
    try:
        source = add_source(ft)
        staff(ft, "otto", "operator")
        with TestClient(create_app(ft)) as client:
            sign_in(client, "otto")
            token = csrf_of(client.get("/console/sources").text)
            report = client.post(f"/console/sources/{source}/images", data={"csrf": token}, files=[
                ("files", (WDA[2].name, WDA[2].read_bytes(), "video/mp4")),
                ("files", ("notes.mp4", b"not a video at all", "video/mp4"))])
        assert report.status_code == 200
        text = re.sub(r"\s+", " ", report.text)
        assert "1 video(s) added (0 already held)" in text
        cells = r"</td> ?<td>".join(["8\\.0", "200", "8", "8", "1"])
        assert re.search(rf'id="report-videos">.*<td>{re.escape(WDA[2].name)}</td><td>{cells}</td>', text), text
        assert re.search(r'id="report-errors"><li>notes\.mp4: not a video', text)
    finally:
        ft.close()
