"""The hostile corpus through ingestion and search: one clear error per bad file, nothing written outside
the data directory, no hang, and never an exception other than facetrail's own."""

from __future__ import annotations

import re
import shutil
import time
from pathlib import Path

import pytest

from facetrail.accounts.roles import Actor, Role
from facetrail.errors import InvalidValueError, MediaError, NoFaceError
from facetrail.media.image import decode_image
from facetrail.runtime import Facetrail
from facetrail.sources.inputs import Limits, from_paths, from_upload
from tests.conftest import SAMPLES, add_source
from tests.hostile.corpus import ARCHIVES, MALFORMED, TOLERATED, Entry, nested_zip

VALID = ("obama_small.jpg", "biden2.jpg")
HANG_GUARD_S = 20.0  # generous: a guard against hangs, not a benchmark
# What each refusal must say (besides naming the file).
CAUSES = {
    "bomb": "decompression bomb", "over-limit": "decompression bomb", "huge": "decompression bomb",
    "zip-bomb": "zip bomb", "nested": "nested zip", "truncated": "truncated|not an image|corrupt",
}
DEFAULT_CAUSE = "corrupt|truncated|not an image"


def listing(root: Path, *, skip: Path | None = None) -> dict[str, int]:
    return {str(p.relative_to(root)): p.stat().st_size for p in root.rglob("*")
            if p.is_file() and (skip is None or skip not in p.parents)}


def expected_cause(name: str) -> str:
    return CAUSES.get(name.rsplit(".", 1)[0], DEFAULT_CAUSE)


@pytest.mark.parametrize("entry", [e for e in MALFORMED if e()[0] not in ARCHIVES], ids=lambda e: e.__name__)
def test_each_malformed_image_is_refused_by_the_decoder(entry: Entry) -> None:
    _, data = entry()
    with pytest.raises(MediaError):
        decode_image(data, max_pixels=64_000_000)


def test_hostile_folder_gives_one_clear_error_per_bad_file(tmp_path: Path, actor: Actor) -> None:
    folder = tmp_path / "batch"
    folder.mkdir()
    malformed = dict(entry() for entry in MALFORMED)
    tolerated = dict(entry() for entry in TOLERATED)
    for name, data in {**malformed, **tolerated}.items():
        (folder / name).write_bytes(data)
    for name in VALID:
        shutil.copy(SAMPLES / name, folder / name)
    data_dir = tmp_path / "data"
    ft = Facetrail.open(data_dir, create=True, workers=1, max_zip_member_bytes=1_000_000)
    source = add_source(ft)
    outside_before = listing(tmp_path, skip=data_dir)
    stamps = [time.monotonic()]
    report = ft.ingest.ingest(actor, source, from_paths([folder], ft.input_limits),
                              progress=lambda _done, _total: stamps.append(time.monotonic()))
    ft.close()

    slowest = max(b - a for a, b in zip(stamps, stamps[1:], strict=False))
    assert slowest < HANG_GUARD_S, f"an item took {slowest:.1f}s"
    by_file: dict[str, list[str]] = {}
    for error in report.errors:
        by_file.setdefault(Path(error.name.split("!", 1)[0]).name, []).append(error.cause)
    assert sorted(by_file) == sorted(malformed), report.errors
    for name, causes in by_file.items():
        assert len(causes) == 1, (name, causes)
        assert causes[0].strip(), name
        assert re.search(expected_cause(name), causes[0]), (name, causes[0])
    assert report.images_added == len(VALID) + len(tolerated)
    assert report.images_without_faces == len(tolerated)
    assert report.faces_added >= len(VALID)
    # Nothing was written outside the data directory: not next to the corpus, not where traversal names point.
    assert listing(tmp_path, skip=data_dir) == outside_before
    assert not (tmp_path.parent / "escaped.jpg").exists() and not Path("/tmp/facetrail-absolute.jpg").exists()


@pytest.mark.parametrize("entry", MALFORMED + TOLERATED, ids=lambda e: e.__name__)
def test_searching_with_a_hostile_file_gives_a_clear_error(samples_ft: Facetrail, entry: Entry) -> None:
    _, data = entry()
    started = time.monotonic()
    with pytest.raises((MediaError, NoFaceError, InvalidValueError)) as caught:
        samples_ft.search.search(Actor("ivy", Role.INVESTIGATOR), data, purpose="demo", case_ref="case-1")
    assert str(caught.value).strip()
    assert time.monotonic() - started < HANG_GUARD_S


def test_nested_zip_is_one_item_error_not_expanded() -> None:
    name, data = nested_zip(depth=3)
    items = list(from_upload(name, data, Limits(10**6, 10**6, 10)))
    assert [(i.name, bool(i.error)) for i in items] == [("nested.zip!level2.zip", True)]
    assert "nested zip" in (items[0].error or "")
