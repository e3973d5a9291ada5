"""Retention (hard rule 11) and source retirement: what is past its source's retention goes, completely; the
dry run lists exactly that; the server does the same on its schedule; a retired source takes nothing new."""

from __future__ import annotations

import json
import time
from datetime import timedelta

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import update
from typer.testing import CliRunner

from facetrail.api import create_app
from facetrail.cli.main import app
from facetrail.compliance.retention import RetentionService
from facetrail.errors import ConflictError, InvalidValueError
from facetrail.runtime import Facetrail, local_actor
from facetrail.sources.inputs import from_paths
from facetrail.store.models import StoredImage, utcnow
from tests.compliance.conftest import (
    DE_PHOTOS,
    FR_PHOTOS,
    PG_JURISDICTIONS,
    JurisdictionStore,
    face_ids,
    image_ids,
)
from tests.conftest import SAMPLES, StoreDb
from tests.rights.biden import files_holding, stored_faces

EXPIRED = ("rose_leslie1.jpg", "obama.jpg")  # backdated 400 days: past the sources' 365
RECENT = "biden.jpg"  # backdated 300 days: within


def backdate(ft: Facetrail) -> list[int]:
    """Backdate EXPIRED past retention and RECENT within it; return the ids of the expired images."""
    with ft.db.write() as session, session.begin():
        for names, days in ((EXPIRED, 400), ((RECENT,), 300)):
            session.execute(update(StoredImage).where(StoredImage.id.in_(image_ids(ft, *names)))
                            .values(ingested_at=utcnow() - timedelta(days=days)))
    return image_ids(ft, *EXPIRED)


def test_the_dry_run_lists_exactly_what_the_run_erases_completely(jft: Facetrail) -> None:
    expired = backdate(jft)
    everything = image_ids(jft, *FR_PHOTOS, *DE_PHOTOS)
    doomed = stored_faces(jft, face_ids(jft, *EXPIRED))
    listed = jft.retention.run(local_actor(), dry_run=True)
    assert sorted(i.image_id for i in listed.images) == expired and listed.faces == len(doomed) == 2
    assert listed.images_erased == 0 and image_ids(jft, *FR_PHOTOS, *DE_PHOTOS) == everything
    assert all(image.expired_at < listed.at for image in listed.images)

    done = jft.retention.run(local_actor())
    assert [i.image_id for i in done.images] == [i.image_id for i in listed.images]
    assert (done.images_erased, done.faces_erased) == (2, 2)
    assert image_ids(jft, *FR_PHOTOS, *DE_PHOTOS) == sorted(set(everything) - set(expired))
    for face in doomed:
        assert files_holding(jft.data, face.template) == [] and files_holding(jft.data, face.sealed) == []
        assert not jft.blobs.exists(face.crop_key) and face.image_key and not jft.blobs.exists(face.image_key)
    assert jft.retention.run(local_actor()).images == ()  # nothing left past retention
    actions = [e.action for e in jft.read_audit(local_actor(), limit=1000)]
    assert actions.count("retention.dry_run") == 1 and actions.count("retention.run") == 2
    assert jft.retention.last_run() is not None


def test_the_clock_is_injectable_and_every_image_expires_in_time(jft: Facetrail) -> None:
    later = RetentionService(jft.db, jft.erasure, jft.audit, batch=5, clock=lambda: utcnow() + timedelta(days=366))
    listed = later.run(local_actor(), dry_run=True)
    assert sorted(i.image_id for i in listed.images) == image_ids(jft, *FR_PHOTOS, *DE_PHOTOS, "paris.jpg",
                                                                  "berlin.jpg")


def test_the_servers_scheduled_run_erases_the_same(jurisdiction_store: JurisdictionStore, tmp_path_factory:
                                                   pytest.TempPathFactory, store_db: StoreDb) -> None:
    import shutil

    data = tmp_path_factory.mktemp("scheduled") / "data"
    shutil.copytree(jurisdiction_store.data, data)
    store_db.copy_from(PG_JURISDICTIONS)
    ft = Facetrail.open(data, workers=1, retention_interval_s=0.2)
    try:
        expected = [i.image_id for i in ft.retention.run(local_actor(), dry_run=True).images]
        assert expected == []
        expired = backdate(ft)
        listed = [i.image_id for i in ft.retention.run(local_actor(), dry_run=True).images]
        assert sorted(listed) == expired
        with TestClient(create_app(ft)):
            deadline = time.monotonic() + 60
            while image_ids(ft, *EXPIRED) and time.monotonic() < deadline:
                time.sleep(0.1)
        assert image_ids(ft, *EXPIRED) == [] and image_ids(ft, RECENT)
        runs = [e for e in ft.read_audit(local_actor(), limit=1000) if e.action == "retention.run"]
        # Rounds that found nothing to erase are not logged: the one that erased is.
        assert len(runs) == 1 and runs[0].actor == "system:retention"
        erased = [i for e in runs for i in json.loads(e.details)["image_ids"]]
        assert sorted(set(erased)) == sorted(listed)
    finally:
        ft.close()


def test_an_interval_of_zero_disables_the_schedule(jft: Facetrail) -> None:
    jft.close()
    ft = Facetrail.open(jft.data, workers=1, retention_interval_s=0)
    try:
        expired = backdate(ft)
        with TestClient(create_app(ft)):
            time.sleep(1.0)
        assert image_ids(ft, *EXPIRED) == expired
        assert not [e for e in ft.read_audit(local_actor(), limit=1000) if e.action == "retention.run"]
    finally:
        ft.close()


def test_a_source_retired_with_erase_loses_its_data_and_takes_nothing_new(
        jft: Facetrail, jurisdiction_store: JurisdictionStore) -> None:
    fr = jurisdiction_store.fr_source
    doomed = stored_faces(jft, face_ids(jft, *FR_PHOTOS))
    report = jft.retirement.retire(local_actor(), fr, "erase")
    assert (report.images_erased, report.faces_erased, report.images_kept) == (3, 3, 0)
    assert image_ids(jft, *FR_PHOTOS) == [] and image_ids(jft, *DE_PHOTOS)
    for face in doomed:
        assert files_holding(jft.data, face.sealed) == [] and not jft.blobs.exists(face.crop_key)
    with pytest.raises(ConflictError, match="retired"):
        jft.ingest.ingest(local_actor(), fr, from_paths([SAMPLES / "obama2.jpg"], jft.input_limits))
    with pytest.raises(ConflictError):
        jft.retirement.retire(local_actor(), fr, "keep-until-retention")
    assert jft.retirement.retire(local_actor(), fr, "erase").images_erased == 0  # again: nothing left to do
    with pytest.raises(InvalidValueError):
        jft.retirement.retire(local_actor(), fr, "shred")
    actions = [e.action for e in jft.read_audit(local_actor(), limit=1000)]
    assert actions.count("source.retire") == 1 and actions.count("source.retired") == 2


def test_a_source_kept_until_retention_is_erased_by_the_retention_run(
        jft: Facetrail, jurisdiction_store: JurisdictionStore) -> None:
    fr = jurisdiction_store.fr_source
    report = jft.retirement.retire(local_actor(), fr, "keep-until-retention")
    assert report.images_erased == 0 and report.images_kept == 3 and report.kept_until is not None
    assert image_ids(jft, *FR_PHOTOS)
    with pytest.raises(ConflictError):
        jft.ingest.ingest(local_actor(), fr, from_paths([SAMPLES / "obama2.jpg"], jft.input_limits))
    after = RetentionService(jft.db, jft.erasure, jft.audit, batch=5,
                             clock=lambda: report.kept_until + timedelta(seconds=1))  # type: ignore[operator]
    assert after.run(local_actor()).images_erased >= 3 and image_ids(jft, *FR_PHOTOS) == []


def test_the_commands_retire_and_enforce_retention(jft: Facetrail, jurisdiction_store: JurisdictionStore) -> None:
    expired = backdate(jft)
    jft.close()
    runner = CliRunner()
    base = ["--data", str(jft.data)]
    dry = runner.invoke(app, [*base, "retention", "run", "--dry-run", "--json"])
    assert dry.exit_code == 0, dry.output
    assert sorted(i["image_id"] for i in json.loads(dry.output)["images"]) == expired
    shown = runner.invoke(app, [*base, "retention", "run", "--dry-run"])
    assert "rose_leslie1.jpg" in shown.output and "would be erased" in shown.output
    both = runner.invoke(app, [*base, "source", "retire", str(jurisdiction_store.de_source), "--erase",
                               "--keep-until-retention"])
    assert both.exit_code == 2 and "retirement" in both.output
    retired = runner.invoke(app, [*base, "source", "retire", str(jurisdiction_store.de_source), "--erase", "--json"])
    assert retired.exit_code == 0, retired.output
    assert json.loads(retired.output)["images_erased"] == 5
    ran = runner.invoke(app, [*base, "retention", "run", "--json"])
    assert json.loads(ran.output)["images_erased"] == 1  # obama.jpg; rose_leslie1.jpg went with its source


def test_a_run_asked_to_stop_ends_between_two_erasures_and_the_next_one_goes_on(jft: Facetrail) -> None:
    expired = backdate(jft)
    asked: list[bool] = []

    def stop_after_the_first_batch() -> bool:
        asked.append(True)
        return len(asked) > 1

    one_by_one = RetentionService(jft.db, jft.erasure, jft.audit, batch=1)
    first = one_by_one.run(local_actor(), should_stop=stop_after_the_first_batch)
    assert first.stopped and first.images_erased == 1 and len(image_ids(jft, *EXPIRED)) == 1
    second = one_by_one.run(local_actor())
    assert not second.stopped and second.images_erased == 1 and image_ids(jft, *EXPIRED) == []
    assert sorted(i.image_id for i in (*first.images[:1], *second.images)) == expired
