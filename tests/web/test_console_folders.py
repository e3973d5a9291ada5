"""The console's ingestion of a server folder without a browser: which folders it may read (no way out through
`..` or a symbolic link), the background batch through the IngestService with its progress and report, one at a
time per source, audited; refused to roles that do not ingest."""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from facetrail.api import create_app
from facetrail.errors import InvalidValueError
from facetrail.runtime import Facetrail
from facetrail.web.folders import (
    OUTSIDE,
    UNRESOLVED,
    allowed_folder,
    allowed_roots,
    folder_choices,
    folder_items,
)
from tests.conftest import SAMPLES, add_source
from tests.web.conftest import csrf_of
from tests.web.staff import audit_entries, sign_in, staff


@pytest.fixture
def allowed(tmp_path: Path) -> Path:
    """A folder the console may read: two photos, a text file, a sub-folder with a photo, and a link out of it."""
    root = tmp_path / "incoming"
    (root / "batch").mkdir(parents=True)
    shutil.copy(SAMPLES / "rose_leslie1.jpg", root)
    shutil.copy(SAMPLES / "biden.jpg", root)
    (root / "notes.txt").write_text("not an image")
    (root / "broken.jpg").write_bytes(b"\xff\xd8 not really a JPEG")
    shutil.copy(SAMPLES / "kit_harington1.jpeg", root / "batch")
    outside = tmp_path / "private"
    outside.mkdir()
    shutil.copy(SAMPLES / "obama.jpg", outside)
    (root / "leak.jpg").symlink_to(outside / "obama.jpg")
    (root / "elsewhere").symlink_to(outside)
    return root


@pytest.fixture
def folder_ft(tmp_path: Path, allowed: Path) -> Iterator[Facetrail]:
    instance = Facetrail.open(tmp_path / "data", create=True, workers=1, console_folders=[allowed])
    yield instance
    instance.close()


@pytest.fixture
def client(folder_ft: Facetrail) -> Iterator[TestClient]:
    with TestClient(create_app(folder_ft)) as instance:
        yield instance


def test_only_folders_under_the_allowed_ones_are_accepted(allowed: Path, tmp_path: Path) -> None:
    roots = allowed_roots([allowed, tmp_path / "missing"])
    assert roots == [allowed.resolve()]
    assert allowed_folder(str(allowed / "batch"), roots) == (allowed / "batch").resolve()
    for escape, cause in ((f"{allowed}/../private", "is not under"), (str(allowed / "elsewhere"), "is not under"),
                          ("/etc", "is not under"), (str(allowed / "rose_leslie1.jpg"), "is not a folder"),
                          ("  ", "choose a folder")):
        with pytest.raises(InvalidValueError, match=cause) as refused:
            allowed_folder(escape, roots)
        assert refused.value.field == "folder"
    with pytest.raises(InvalidValueError, match="no server folder is open"):
        allowed_folder(str(allowed), [])
    # The picker offers the folder and the one under it, not the link that leads out.
    assert folder_choices(roots) == [str(allowed.resolve()), str((allowed / "batch").resolve())]


def test_a_file_linked_from_outside_is_an_error_item_never_read(folder_ft: Facetrail, allowed: Path) -> None:
    roots = allowed_roots([allowed])
    items = {Path(i.name).name: i for i in folder_items(allowed.resolve(), roots, folder_ft.input_limits)}
    assert items["leak.jpg"].error == OUTSIDE and items["leak.jpg"].read() == b""
    assert items["rose_leslie1.jpg"].error is None and items["rose_leslie1.jpg"].read()[:2] == b"\xff\xd8"
    assert items["notes.txt"].skipped is not None
    assert "obama.jpg" not in items  # the linked folder is not walked


def test_a_loop_of_links_is_an_error_item_not_the_end_of_the_walk(folder_ft: Facetrail, allowed: Path) -> None:
    """Resolving a.jpg -> b.jpg -> a.jpg raises: the walk must go on past it (the batch is already running)."""
    loop = allowed / "loop"
    loop.mkdir()
    (loop / "a.jpg").symlink_to(loop / "b.jpg")
    (loop / "b.jpg").symlink_to(loop / "a.jpg")
    shutil.copy(SAMPLES / "biden.jpg", loop / "c.jpg")
    items = {Path(i.name).name: i for i in folder_items(loop.resolve(), allowed_roots([allowed]),
                                                          folder_ft.input_limits)}
    assert items["a.jpg"].error == items["b.jpg"].error == UNRESOLVED
    assert items["c.jpg"].error is None and items["c.jpg"].read()[:2] == b"\xff\xd8"


def wait_for(client: TestClient, job_url: str) -> dict[str, Any]:
    deadline = time.monotonic() + 120
    seen: list[tuple[int, int]] = []
    while True:
        state: dict[str, Any] = client.get(f"{job_url}/progress").json()
        seen.append((state["done"], state["total"]))
        if not state["running"]:
            state["seen"] = seen
            return state
        assert time.monotonic() < deadline, seen
        time.sleep(0.1)


def test_an_operator_ingests_a_folder_in_the_background_with_its_report(folder_ft: Facetrail, client: TestClient,
                                                                       allowed: Path) -> None:
    staff(folder_ft, "otto", "operator")
    source_id = add_source(folder_ft, "press")
    sign_in(client, "otto")
    sources = client.get("/console/sources")
    assert f"<option>{allowed.resolve()}</option>" in sources.text
    token = csrf_of(sources.text)
    started = client.post("/console/sources/folder", data={"source": str(source_id), "folder": str(allowed),
                                                           "csrf": token}, follow_redirects=False)
    assert started.status_code == 303
    job_url = started.headers["location"]
    state = wait_for(client, job_url)
    assert state["error"] is None and state["done"] == state["total"] == 6, state
    assert state["outcome"] == "partial"
    page = client.get(job_url).text
    assert "3 image(s) added with 3 face(s)" in " ".join(page.split())
    assert f"{allowed.resolve() / 'leak.jpg'}: {OUTSIDE}" in page
    assert f"{allowed.resolve() / 'broken.jpg'}:" in page
    assert "notes.txt: not an image or video file type (.txt)" in page
    audited = [(actor, action, d) for actor, action, d in audit_entries(folder_ft, "ingest.")]
    assert [(a, b) for a, b, _ in audited] == [("otto", "ingest.folder"), ("otto", "ingest.start"),
                                               ("otto", "ingest.finish")]
    assert audited[0][2]["folder"] == str(allowed.resolve()) and audited[0][2]["source_id"] == source_id
    assert audited[2][2]["images_added"] == 3
    # Again: everything is already held, nothing is added twice.
    again = client.post("/console/sources/folder", data={"source": str(source_id), "folder": str(allowed),
                                                         "csrf": token}, follow_redirects=False)
    assert wait_for(client, again.headers["location"])["outcome"] == "partial"
    assert "3 already held" in client.get(again.headers["location"]).text


def test_a_folder_outside_or_a_second_batch_into_the_same_source_is_refused(folder_ft: Facetrail,
                                                                            client: TestClient, allowed: Path,
                                                                            tmp_path: Path) -> None:
    staff(folder_ft, "otto", "operator")
    source_id = add_source(folder_ft, "press")
    sign_in(client, "otto")
    token = csrf_of(client.get("/console/sources").text)
    outside = client.post("/console/sources/folder", data={"source": str(source_id), "folder":
                                                           f"{allowed}/../private", "csrf": token})
    assert outside.status_code == 422 and "is not under a folder the console may ingest from" in outside.text
    assert 'aria-invalid="true" aria-describedby="folder-error"' in outside.text
    no_source = client.post("/console/sources/folder", data={"source": "", "folder": str(allowed), "csrf": token})
    assert no_source.status_code == 422 and "Choose the source." in no_source.text
    foreign = client.post("/console/sources/folder", data={"source": str(source_id), "folder": str(allowed)})
    assert foreign.status_code == 403
    big = tmp_path / "incoming" / "big"
    big.mkdir()
    for n in range(6):
        shutil.copy(SAMPLES / "obama-1080p.jpg", big / f"copy{n}.jpg")
    first = client.post("/console/sources/folder", data={"source": str(source_id), "folder": str(big),
                                                         "csrf": token}, follow_redirects=False)
    second = client.post("/console/sources/folder", data={"source": str(source_id), "folder": str(allowed),
                                                          "csrf": token})
    assert second.status_code == 409 and "already being ingested into source" in second.text
    wait_for(client, first.headers["location"])
    assert [a for _, a, _ in audit_entries(folder_ft, "ingest.folder")] == ["ingest.folder"]


def test_an_investigator_may_not_ingest_a_folder_nor_see_a_batch(folder_ft: Facetrail, client: TestClient,
                                                                 allowed: Path) -> None:
    staff(folder_ft, "ivan", "investigator")
    source_id = add_source(folder_ft, "press")
    sign_in(client, "ivan")
    sources = client.get("/console/sources").text
    assert 'id="folder-form"' not in sources
    refused = client.post("/console/sources/folder", data={"source": str(source_id), "folder": str(allowed),
                                                           "csrf": csrf_of(sources)})
    assert refused.status_code == 403 and "Not for your role" in refused.text
    assert client.get("/console/ingestions/nope/progress").status_code == 403
    assert audit_entries(folder_ft, "auth.denied")[-1][0] == "ivan"
    assert not audit_entries(folder_ft, "ingest.")


def test_without_allowed_folders_the_console_says_so(ft: Facetrail) -> None:
    staff(ft, "otto", "operator")
    add_source(ft, "press")
    with TestClient(create_app(ft)) as client:
        sign_in(client, "otto")
        page = client.get("/console/sources").text
        assert 'id="no-folders"' in page and "FACETRAIL_CONSOLE_FOLDERS" in page
        refused = client.post("/console/sources/folder", data={"source": "1", "folder": "/tmp",
                                                               "csrf": csrf_of(page)})
        assert refused.status_code == 422 and "no server folder is open to the console" in refused.text
