"""Ingestion: counts, idempotence, per-item errors that never stop the batch, zips, workers."""

from __future__ import annotations

import io
import shutil
import zipfile
from pathlib import Path

import pytest
from PIL import Image
from sqlalchemy import func, select

from facetrail.accounts.roles import Actor, Role
from facetrail.errors import NotFoundError, PermissionDeniedError, ShuttingDownError
from facetrail.ingest import service as ingest_service
from facetrail.ingest.report import IngestReport, ItemError
from facetrail.ingest.service import IngestService
from facetrail.runtime import Facetrail
from facetrail.sources.inputs import from_paths
from facetrail.store.models import Face, StoredImage
from facetrail.vision.yunet import YUNET_S
from tests.conftest import (
    MILVUS_SAMPLES,
    PG_SAMPLES,
    SAMPLES,
    StoreDb,
    add_source,
    labelled_people,
    sample_bytes,
    template_of,
)
from tests.media.test_image import png_bomb


def counts(ft: Facetrail) -> tuple[int, int]:
    with ft.db.read() as session:
        return (session.scalar(select(func.count()).select_from(StoredImage)) or 0,
                session.scalar(select(func.count()).select_from(Face)) or 0)


def ingest(ft: Facetrail, actor: Actor, source_id: int, *paths: Path, workers: int = 1):  # noqa: ANN201
    return ft.ingest.ingest(actor, source_id, from_paths(list(paths), ft.input_limits), workers=workers)


def test_samples_are_ingested_with_their_faces(samples_ft: Facetrail) -> None:
    people = labelled_people()
    images, faces = counts(samples_ft)
    assert images == len(people)
    assert faces >= sum(len(p) for p in people.values())
    with samples_ft.db.read() as session:
        image = session.scalar(select(StoredImage).where(StoredImage.original_name.like("%two_people.jpg")))
        assert image is not None and image.face_count == 2 and image.width == 1126 and image.height == 661
        assert len(image.sha256) == 64 and image.size_bytes == len(sample_bytes("two_people.jpg"))
        face = image.faces[0]
        # the default pipeline's: a 256-d template, YuNet-s's five points and its name as the detector
        assert template_of(samples_ft, face.template).shape == (samples_ft.gallery.dim,) == (256,)
        assert len(face.landmarks) == 5
        assert face.key_id and image.key_id and face.key_id != image.key_id  # one data key per record
        assert face.size_px > 100 and face.sharpness > 0 and face.detector == YUNET_S.name
        assert samples_ft.blobs.get(face.crop_key or "")[:2] == b"\xff\xd8"
        assert samples_ft.blobs.get(image.blob_key or "") == sample_bytes("two_people.jpg")


def test_reingesting_adds_nothing(samples_ft: Facetrail, actor: Actor) -> None:
    before = counts(samples_ft)
    report = ingest(samples_ft, actor, 1, SAMPLES)
    assert report.images_added == 0 and report.images_skipped == len(labelled_people())
    assert counts(samples_ft) == before
    assert len(samples_ft.gallery.index()) == before[1]


def test_same_bytes_twice_in_one_batch_count_once(ft: Facetrail, actor: Actor, tmp_path: Path) -> None:
    source = add_source(ft)
    folder = tmp_path / "in"
    folder.mkdir()
    for name in ("a.jpg", "b.jpg"):
        (folder / name).write_bytes(sample_bytes("obama_small.jpg"))
    report = ingest(ft, actor, source, folder)
    assert (report.images_added, report.images_skipped) == (1, 1)


def test_bad_files_are_reported_one_each_and_the_rest_ingested(tmp_path: Path, actor: Actor) -> None:
    ft = Facetrail.open(tmp_path / "data", create=True, workers=1, max_file_bytes=700_000)
    source = add_source(ft)
    folder = tmp_path / "batch"
    folder.mkdir()
    good = ["obama_small.jpg", "biden2.jpg", "rose_leslie1.jpg"]
    for name in good:
        shutil.copy(SAMPLES / name, folder / name)
    whole = sample_bytes("obama.jpg")
    bad = {
        "corrupt.jpg": whole[:200] + bytes(range(256)) * 40,
        "truncated.jpg": whole[: len(whole) // 2],
        "zero.jpg": b"",
        "notes.png": b"these are meeting notes, not a picture\n",
        "bomb.png": png_bomb(20_000, 20_000),
        "too-large.png": sample_bytes("32bit.png"),
    }
    for name, data in bad.items():
        (folder / name).write_bytes(data)
    report = ingest(ft, actor, source, folder)
    named = {Path(e.name).name: e.cause for e in report.errors}
    assert sorted(named) == sorted(bad), report.errors
    assert "empty" in named["zero.jpg"]
    assert "decompression bomb" in named["bomb.png"]
    assert "too large" in named["too-large.png"]
    assert "not an image" in named["notes.png"]
    assert "truncated" in named["truncated.jpg"] or "corrupt" in named["truncated.jpg"]
    assert report.images_added == len(good)
    assert counts(ft)[0] == len(good)
    ft.close()


def test_missing_path_is_an_item_error(ft: Facetrail, actor: Actor, tmp_path: Path) -> None:
    report = ingest(ft, actor, add_source(ft), tmp_path / "nowhere")
    assert [e.cause for e in report.errors] == ["no such file or folder"]


def test_image_without_a_face_is_recorded(ft: Facetrail, actor: Actor, tmp_path: Path) -> None:
    path = tmp_path / "wall.png"
    Image.new("RGB", (320, 240), (200, 180, 160)).save(path)
    report = ingest(ft, actor, add_source(ft), path)
    assert report.images_without_faces == 1 and report.faces_added == 0
    with ft.db.read() as session:
        assert session.scalar(select(StoredImage.face_count)) == 0


def test_zip_archive_members_are_ingested_and_traversal_names_are_only_labels(
        ft: Facetrail, actor: Actor, tmp_path: Path) -> None:
    archive = tmp_path / "photos.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("a/obama_small.jpg", sample_bytes("obama_small.jpg"))
        zf.writestr("../../escape/biden2.jpg", sample_bytes("biden2.jpg"))
        zf.writestr("broken.jpg", b"\xff\xd8\xff garbage")
        zf.writestr("readme.txt", b"ignored: not an image suffix")
    report = ingest(ft, actor, add_source(ft), archive)
    assert report.images_added == 2 and len(report.errors) == 1
    assert report.errors[0].name.endswith("photos.zip!broken.jpg")
    assert not (tmp_path.parent / "escape").exists()
    with ft.db.read() as session:
        names = set(session.scalars(select(StoredImage.original_name)))
    assert f"{archive}!a/obama_small.jpg" in names


def test_zip_bomb_member_is_refused(tmp_path: Path, actor: Actor) -> None:
    ft = Facetrail.open(tmp_path / "data", create=True, workers=1, max_zip_member_bytes=1_000_000)
    archive = tmp_path / "bomb.zip"
    with zipfile.ZipFile(archive, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("huge.jpg", b"\x00" * 50_000_000)
        zf.writestr("ok.jpg", sample_bytes("obama_small.jpg"))
    report = ingest(ft, actor, add_source(ft), archive)
    assert report.images_added == 1
    assert len(report.errors) == 1 and "zip bomb" in report.errors[0].cause
    ft.close()


def test_corrupt_zip_is_one_error(ft: Facetrail, actor: Actor, tmp_path: Path) -> None:
    archive = tmp_path / "cut.zip"
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        zf.writestr("x.jpg", sample_bytes("obama_small.jpg"))
    archive.write_bytes(buffer.getvalue()[:-30])
    report = ingest(ft, actor, add_source(ft), archive)
    assert len(report.errors) == 1 and report.images_added == 0


def test_unregistered_source_is_refused_with_a_clear_message(ft: Facetrail, actor: Actor) -> None:
    with pytest.raises(NotFoundError, match="not registered.*legal basis"):
        ingest(ft, actor, 42, SAMPLES / "obama.jpg")


def test_only_operators_ingest(ft: Facetrail) -> None:
    source = add_source(ft)
    with pytest.raises(PermissionDeniedError):
        ingest(ft, Actor("ivy", Role.INVESTIGATOR), source, SAMPLES / "obama.jpg")


def test_worker_pool_gives_the_same_result(samples_store: Path, tmp_path: Path, actor: Actor,
                                           store_db: StoreDb) -> None:
    ft = Facetrail.open(tmp_path / "data", create=True)
    source = add_source(ft)
    report = ingest(ft, actor, source, SAMPLES, workers=2)
    assert not report.errors
    reference = Facetrail.open(samples_store, db_url=store_db.named(PG_SAMPLES),
                               milvus_collection_prefix=MILVUS_SAMPLES)
    assert counts(ft) == counts(reference)
    assert len(ft.gallery.index()) == counts(ft)[1]
    ft.close()
    reference.close()


def test_items_are_walked_as_the_batch_goes_never_held_whole(ft: Facetrail, actor: Actor) -> None:
    """A folder of millions of files must not become millions of items in memory before the first is analysed:
    each item is taken from the walk only once the one before it has been analysed (one at a time here)."""
    source_id = add_source(ft)
    names = ["obama.jpg", "biden.jpg", "obama_small.jpg", "kit_harington1.jpeg"]
    done, totals, taken_at = [0], set(), []

    def progress(finished: int, total: int) -> None:
        done[0] = finished
        totals.add(total)

    def walk():  # noqa: ANN202
        for name in names:
            taken_at.append(done[0])
            yield from from_paths([SAMPLES / name], ft.input_limits)

    report = ft.ingest.ingest(actor, source_id, walk(), progress=progress, workers=1)
    assert taken_at == [0, 1, 2, 3]
    assert (report.items, report.images_added, report.outcome) == (4, 4, "complete")
    assert totals == {0, 4}  # a walk of unknown length: no total until the end, then 4 of 4

    totals.clear()
    again = ft.ingest.ingest(actor, source_id, walk(), total=5, progress=progress, workers=1)  # one file went
    assert (again.items, again.images_skipped, totals, done[0]) == (4, 4, {5, 4}, 4)
    start = [e for e in ft.read_audit(actor, limit=100) if e.action == "ingest.start"]
    assert '"items":null' in start[-2].details and '"items":5' in start[-1].details


def test_a_walk_that_fails_mid_batch_is_one_error_and_the_rest_is_kept(ft: Facetrail, actor: Actor) -> None:
    """The walk runs while the batch is under way: an error it raises ends the walk, not the batch."""
    source_id = add_source(ft)

    def walk():  # noqa: ANN202
        yield from from_paths([SAMPLES / "obama.jpg", SAMPLES / "biden.jpg"], ft.input_limits)
        raise RuntimeError("Symlink loop from '/photos/a.jpg'")

    report = ft.ingest.ingest(actor, source_id, walk(), workers=1)
    assert (report.items, report.images_added, report.outcome) == (2, 2, "partial")
    assert [(e.name, e.cause) for e in report.errors] == [
        (ingest_service.WALK_FAILED, "the inputs could not be listed further: RuntimeError: Symlink loop from "
                                     "'/photos/a.jpg'")]
    assert counts(ft)[0] == 2
    finish = [e for e in ft.read_audit(actor, limit=100) if e.action == "ingest.finish"][-1]
    assert '"outcome":"partial"' in finish.details


def test_batch_is_audited_with_counts_not_names(samples_ft: Facetrail, actor: Actor) -> None:
    entries = samples_ft.read_audit(actor, limit=100)
    actions = [e.action for e in entries]
    assert actions[:4] == ["data.create", "source.add", "ingest.start", "ingest.finish"]
    finish = entries[3].details
    assert '"images_added":22' in finish and "obama" not in finish


@pytest.mark.parametrize("workers", [1, 2])
def test_an_interrupted_batch_keeps_what_it_committed_and_a_rerun_adds_the_rest(
        tmp_path: Path, actor: Actor, workers: int) -> None:
    """What the server does when told to stop: the batch ends after the image in hand, and says so."""
    folder = tmp_path / "photos"
    folder.mkdir()
    for name in ("obama.jpg", "biden.jpg", "obama_small.jpg", "biden2.jpg", "kit_harington1.jpeg", "obama3.jpg"):
        shutil.copy(SAMPLES / name, folder / name)
    data = tmp_path / "data"
    ft = Facetrail.open(data, create=True, workers=1)
    source_id = add_source(ft)

    def stop_after_two(done: int, _total: int) -> None:
        if done == 2:
            ft.ingest.interrupt()

    report = ft.ingest.ingest(actor, source_id, from_paths([folder], ft.input_limits), progress=stop_after_two,
                              workers=workers)
    assert report.interrupted and report.outcome == "interrupted" and report.images_added == 2
    assert counts(ft)[0] == 2
    finish = [e for e in ft.read_audit(actor, limit=100) if e.action == "ingest.finish"][-1]
    assert '"outcome":"interrupted"' in finish.details
    with pytest.raises(ShuttingDownError):  # a stopping service starts no new batch
        ft.ingest.ingest(actor, source_id, [], workers=1)
    ft.close()
    ft = Facetrail.open(data, workers=1)  # as the restarted server
    try:
        again = ingest(ft, actor, source_id, folder, workers=workers)
        assert (again.images_skipped, again.images_added, again.outcome) == (2, 4, "complete")
        assert sorted(ft.gallery.index().ids().tolist()) == sorted(f.id for f in _faces(ft))
    finally:
        ft.close()


def _faces(ft: Facetrail) -> list[Face]:
    with ft.db.read() as session:
        return list(session.scalars(select(Face)))


def test_a_failed_commit_stops_the_batch_keeps_earlier_commits_and_a_rerun_completes(
        tmp_path: Path, actor: Actor, monkeypatch: pytest.MonkeyPatch) -> None:
    """The single writer commits in its own thread while the analysis goes on: its error (a full disk, say)
    reaches the caller, the batches committed before it stay, nothing after it is committed, and a re-run
    finishes the job with the index matching the store."""
    folder = tmp_path / "photos"
    folder.mkdir()
    for name in ("obama.jpg", "biden.jpg", "obama_small.jpg", "biden2.jpg", "kit_harington1.jpeg", "obama3.jpg"):
        shutil.copy(SAMPLES / name, folder / name)
    monkeypatch.setattr(ingest_service, "COMMIT_IMAGES", 2)
    commit = IngestService._commit
    calls = []

    def fail_second(self: IngestService, *args: object) -> int:
        calls.append(1)
        if len(calls) == 2:
            raise OSError(28, "No space left on device")
        return commit(self, *args)  # type: ignore[arg-type]

    monkeypatch.setattr(IngestService, "_commit", fail_second)
    data = tmp_path / "data"
    ft = Facetrail.open(data, create=True)
    source_id = add_source(ft)
    with pytest.raises(OSError, match="No space left"):
        ingest(ft, actor, source_id, folder, workers=2)
    assert len(calls) == 2  # nothing was committed after the failure
    assert counts(ft)[0] == 2
    ft.close()
    monkeypatch.setattr(IngestService, "_commit", commit)
    ft = Facetrail.open(data)
    try:
        again = ingest(ft, actor, source_id, folder, workers=2)
        assert (again.images_skipped, again.images_added, again.outcome) == (2, 4, "complete")
        assert sorted(ft.gallery.index().ids().tolist()) == sorted(f.id for f in _faces(ft))
    finally:
        ft.close()


def test_report_parts_merge() -> None:
    whole = IngestReport(source_id=1, items=5, images_skipped=1, errors=[ItemError("a.jpg", "corrupt")],
                         refused_by_order={3: 1})
    whole.merge(IngestReport(source_id=1, images_added=2, images_skipped=1, faces_added=3, faces_suppressed=1,
                             errors=[ItemError("b.jpg", "refused")], refused_by_order={3: 2, 4: 1}))
    assert (whole.items, whole.images_added, whole.images_skipped, whole.faces_added, whole.faces_suppressed) == (
        5, 2, 2, 3, 1)
    assert [e.name for e in whole.errors] == ["a.jpg", "b.jpg"] and whole.refused_by_order == {3: 3, 4: 1}
