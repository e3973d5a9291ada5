"""An enforcement order for France (hard rule 10): refused at the door, erased completely by its job,
accounted for with its status, deadline and penalty."""

from __future__ import annotations

import shutil
import threading
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pytest
from PIL import Image
from sqlalchemy import func, select

from facetrail.accounts.roles import Actor, Role
from facetrail.backup.archive import create_backup
from facetrail.backup.restore import restore_backup
from facetrail.compliance.orders import OrderService
from facetrail.compliance.status import JobState, penalty_clock
from facetrail.config import get_settings
from facetrail.errors import ConflictError, InvalidValueError, NotFoundError, PermissionDeniedError
from facetrail.ingest import service as ingest_service
from facetrail.ingest.service import IngestService
from facetrail.runtime import Facetrail, local_actor
from facetrail.sources.inputs import from_paths
from facetrail.store.models import EnforcementOrder, Face, ImageJurisdiction, StoredImage
from facetrail.vision.calibration import Band
from tests.compliance.conftest import (
    DE_PHOTOS,
    FR_PHOTOS,
    TAKEN_IN_BERLIN,
    TAKEN_IN_PARIS,
    JurisdictionStore,
    face_ids,
    image_ids,
)
from tests.compliance.gps import PARIS, with_gps
from tests.conftest import SAMPLES, sample_bytes
from tests.rights.biden import files_holding, raw_blob, stored_faces

DPO = Actor("dora", Role.DPO)
AUDITOR = Actor("audrey", Role.AUDITOR)
FRENCH = (*FR_PHOTOS, TAKEN_IN_PARIS)
NOT_FRENCH = (*DE_PHOTOS, TAKEN_IN_BERLIN)


def cnil_order(ft: Facetrail, **overrides: object) -> EnforcementOrder:
    fields: dict[str, object] = {"authority": "CNIL", "reference": "MED-2021-134", "received_on": "2026-11-01",
                                 "jurisdictions": ["FR"], "cease": True, "erase": True, "deadline": "2026-12-31",
                                 "daily_penalty": 100_000}
    fields.update(overrides)
    return ft.orders.add(DPO, **fields)  # type: ignore[arg-type]  # the fields' types are the service's


def test_each_image_records_its_jurisdictions_and_how_they_were_decided(jft: Facetrail) -> None:
    with jft.db.read() as session:
        rows = session.execute(select(StoredImage.original_name, ImageJurisdiction.code, ImageJurisdiction.basis)
                               .join(ImageJurisdiction, ImageJurisdiction.image_id == StoredImage.id)).all()
    decided: dict[str, set[tuple[str, str]]] = {}
    for name, code, basis in rows:
        decided.setdefault(Path(name).name, set()).add((code, basis))
    for name in FR_PHOTOS:
        assert decided[name] == {("FR", "source-declared")}
    for name in DE_PHOTOS:
        assert decided[name] == {("DE", "source-declared")}
    assert decided[TAKEN_IN_PARIS] == {("DE", "source-declared"), ("FR", "exif-gps")}
    assert decided[TAKEN_IN_BERLIN] == {("DE", "source-declared"), ("DE", "exif-gps")}


def test_from_its_recording_the_order_refuses_french_data_naming_it(jft: Facetrail, actor: Actor,
                                                                    jurisdiction_store: JurisdictionStore,
                                                                    tmp_path: Path) -> None:
    order = cnil_order(jft)
    also_in_paris = tmp_path / "also_in_paris.jpg"
    also_in_paris.write_bytes(with_gps("kit_harington2.jpeg", PARIS))
    into_fr = jft.ingest.ingest(actor, jurisdiction_store.fr_source,
                                from_paths([SAMPLES / "obama2.jpg"], jft.input_limits))
    into_de = jft.ingest.ingest(actor, jurisdiction_store.de_source,
                                from_paths([also_in_paris, SAMPLES / "rose_leslie2.jpg"], jft.input_limits))
    assert into_fr.images_added == 0 and into_fr.refused_by_order == {order.id: 1}
    assert "enforcement order 1 (CNIL, MED-2021-134)" in into_fr.errors[0].cause
    assert "FR (this image's jurisdiction, source-declared)" in into_fr.errors[0].cause
    # The batch goes on: the French photo is refused, the German one is added.
    assert into_de.images_added == 1 and into_de.refused_by_order == {order.id: 1}
    assert [e.name for e in into_de.errors] == [str(also_in_paris)]
    assert "FR (this image's jurisdiction, exif-gps)" in into_de.errors[0].cause
    assert jft.orders.status(DPO, order.id).items_refused == 2
    refused = [e for e in jft.read_audit(actor, limit=1000) if e.action == "order.refused"]
    assert len(refused) == 2 and "also_in_paris" not in "".join(e.details for e in refused)


def test_an_order_without_cease_refuses_nothing(jft: Facetrail, actor: Actor,
                                                jurisdiction_store: JurisdictionStore) -> None:
    cnil_order(jft, cease=False)
    report = jft.ingest.ingest(actor, jurisdiction_store.fr_source,
                               from_paths([SAMPLES / "obama2.jpg"], jft.input_limits))
    assert report.images_added == 1 and not report.errors


def test_after_the_job_nothing_french_remains_and_the_rest_is_untouched(jft: Facetrail, actor: Actor) -> None:
    french = stored_faces(jft, face_ids(jft, *FRENCH))
    assert len(french) == 4
    others = face_ids(jft, *NOT_FRENCH)
    with jft.db.read() as session:
        kept_templates = dict(session.execute(select(Face.id, Face.template).where(Face.id.in_(others))).all())
    image_blobs = [raw_blob(jft, f.image_key) for f in french if f.image_key]
    order = cnil_order(jft)
    before = jft.orders.status(DPO, order.id)
    assert (before.images_remaining, before.faces_remaining, before.job_state) == (4, 4, JobState.NOT_STARTED)

    seen: list[tuple[int, int]] = []
    done = jft.orders.run(DPO, order.id, progress=lambda d, t: seen.append((d, t)))

    assert (done.images_remaining, done.faces_remaining, done.images_erased, done.faces_erased) == (0, 0, 4, 4)
    assert done.job_state == JobState.COMPLETED and done.complied and seen[-1] == (4, 4)
    for face in french:  # no byte of a template, crop or image: not in clear, not sealed, keys destroyed
        assert files_holding(jft.data, face.template) == [] and files_holding(jft.data, face.sealed) == []
        assert files_holding(jft.data, face.crop) == [] and not jft.blobs.exists(face.crop_key)
        assert face.image_key is not None and not jft.blobs.exists(face.image_key)
        assert jft.vault.keyring.existing([face.key_id, face.image_key_id or ""]) == set()
    assert all(files_holding(jft.data, blob) == [] for blob in image_blobs)
    with jft.db.read() as session:
        assert image_ids(jft, *FRENCH) == []
        assert session.scalar(select(func.count()).select_from(ImageJurisdiction)
                              .where(ImageJurisdiction.code == "FR")) == 0
        after = dict(session.execute(select(Face.id, Face.template).where(Face.id.in_(others))).all())
    assert after == kept_templates  # the rest is untouched, byte for byte
    assert not {f.id for f in french} & set(jft.gallery.index().ids().tolist())
    rose = jft.search.search(actor, sample_bytes("rose_leslie2.jpg"), purpose="demo", case_ref="after",
                             min_band="strong")
    assert [Path(h.original_name).name for h in rose.results] == ["rose_leslie1.jpg"]
    kit = jft.search.search(actor, sample_bytes("kit_harington2.jpeg"), purpose="demo", case_ref="after",
                            min_band="strong")
    assert [Path(h.original_name).name for h in kit.results] == [TAKEN_IN_BERLIN]
    obama = jft.search.search(actor, sample_bytes("obama2.jpg"), purpose="demo", case_ref="after", top_k=100,
                              min_band="none")
    assert {h.band for h in obama.results if Path(h.original_name).name in FRENCH} == set()
    assert any(h.band == Band.STRONG for h in obama.results)  # Obama in two_people.jpg (German) is still found
    actions = [e.action for e in jft.read_audit(actor, limit=1000)]
    assert actions.count("erasure.completed") == 2 and actions.count("order.completed") == 1
    assert jft.verify_audit(actor).ok
    again = jft.orders.run(DPO, order.id)
    assert again.images_erased == 4 and again.images_remaining == 0


def test_the_penalty_accrues_per_day_late_and_stops_on_compliance(jft: Facetrail) -> None:
    now = [datetime(2026, 12, 1, 9, 0, tzinfo=UTC)]
    orders = OrderService(jft.db, jft.erasure, jft.audit, batch=10, clock=lambda: now[0])
    order = orders.add(DPO, authority="CNIL", reference="MED-2021-134", received_on="2026-11-01",
                       jurisdictions=["FR"], cease=True, erase=True, deadline="2026-12-31", daily_penalty=100_000)
    early = orders.status(DPO, order.id)
    assert (early.days_left, early.days_late, early.penalty_accrued, early.complied) == (30, 0, 0, False)
    now[0] = datetime(2026, 12, 31, 23, 59, tzinfo=UTC)
    assert orders.status(DPO, order.id).days_left == 0  # the deadline is the last day to comply
    now[0] = datetime(2027, 1, 3, 12, 0, tzinfo=UTC)
    late = orders.status(DPO, order.id)
    assert (late.days_left, late.days_late, late.penalty_accrued) == (None, 3, 300_000)
    now[0] = datetime(2027, 1, 5, 8, 0, tzinfo=UTC)
    orders.run(DPO, order.id)
    now[0] = datetime(2027, 3, 1, tzinfo=UTC)
    settled = orders.status(DPO, order.id)
    assert settled.complied and settled.complied_at == datetime(2027, 1, 5, 8, 0, tzinfo=UTC)
    assert (settled.days_late, settled.penalty_accrued) == (5, 500_000)
    cease_only = orders.add(DPO, authority="CNIL", reference="R2", received_on="2027-02-01", source_ids=[1],
                            cease=True, erase=False, deadline="2027-02-10", daily_penalty=10)
    assert orders.status(DPO, cease_only.id).complied  # ceasing takes effect as the order is recorded


def test_penalty_clock_counts_whole_days_after_the_deadline() -> None:
    deadline = date(2026, 12, 31)
    at = datetime(2027, 1, 1, 0, 0, 1, tzinfo=UTC)
    assert penalty_clock(deadline, 100, at, None) == (None, 1, 100)
    assert penalty_clock(deadline, 100, datetime(2026, 12, 30, tzinfo=UTC), None) == (1, 0, 0)
    assert penalty_clock(deadline, 100, at, datetime(2026, 12, 15, tzinfo=UTC)) == (None, 0, 0)


def test_answer_access_first_holds_the_faces_of_open_access_requests(
        jft: Facetrail, jurisdiction_store: JurisdictionStore) -> None:
    from tests.rights.captures import BUSH_HELD, photo
    from tests.rights.test_requests import full_request

    held = photo(BUSH_HELD[0])  # the requester's photo, in the French source
    jft.ingest.ingest(local_actor(), jurisdiction_store.fr_source, from_paths([held], jft.input_limits), workers=1)
    request_id, _ = full_request(jft, "access", approve=False)  # an access request waits for the DPO
    order = cnil_order(jft, answer_access_first=True)
    waiting = jft.orders.run(DPO, order.id)
    assert waiting.job_state == JobState.WAITING and not waiting.complied
    assert (waiting.images_held, waiting.held_for_requests) == (1, (request_id,))
    assert waiting.images_remaining == 1 and image_ids(jft, held.name)  # his French photo is kept
    jft.requests.approve(DPO, request_id, "the key frames match")  # answered: the package holds his French face
    done = jft.orders.run(DPO, order.id)
    assert done.job_state == JobState.COMPLETED and done.images_remaining == 0 and done.images_erased == 5


def test_orders_are_validated_field_by_field(jft: Facetrail) -> None:
    cases = [({"jurisdictions": ["XX"]}, "jurisdictions"), ({"jurisdictions": []}, "scope"),
             ({"cease": False, "erase": False}, "measures"), ({"deadline": "2026-10-01"}, "deadline"),
             ({"received_on": "1 Nov"}, "received_on"), ({"source_ids": [99]}, "source_ids"),
             ({"daily_penalty": -1}, "daily_penalty"), ({"currency": "EURO"}, "currency"),
             ({"authority": " "}, "authority")]
    for change, field in cases:
        with pytest.raises(InvalidValueError) as caught:
            cnil_order(jft, **change)
        assert caught.value.field == field, change
    with pytest.raises(NotFoundError):
        jft.orders.status(DPO, 7)


def test_only_the_dpo_records_and_runs_orders_and_the_auditor_reads_them(jft: Facetrail) -> None:
    order = cnil_order(jft, erase=False)
    for who in (AUDITOR, Actor("ivy", Role.INVESTIGATOR), Actor("olga", Role.OPERATOR)):
        with pytest.raises(PermissionDeniedError):
            jft.orders.add(
                who, authority="A", reference="R", received_on="2026-11-01", jurisdictions=["FR"], cease=True,
                erase=False, deadline="2026-12-01", daily_penalty=0)
        with pytest.raises(PermissionDeniedError):
            jft.orders.run(who, order.id)
    assert [s.order_id for s in jft.orders.status_all(AUDITOR)] == [order.id]
    with pytest.raises(PermissionDeniedError):
        jft.orders.status_all(Actor("ivy", Role.INVESTIGATOR))
    with pytest.raises(ConflictError):
        jft.orders.run(DPO, order.id)  # it orders no erasure


@pytest.mark.parametrize(("commit_images", "added", "refused"), [(1, 1, 1), (32, 0, 2)],
                         ids=["committed-one-by-one", "one-commit-for-both"])
def test_an_order_recorded_during_a_batch_refuses_its_remaining_items(
        jft: Facetrail, actor: Actor, jurisdiction_store: JurisdictionStore, monkeypatch: pytest.MonkeyPatch,
        commit_images: int, added: int, refused: int) -> None:
    """The order is recorded once the first photo is analysed. Committed one by one, that photo is stored before
    the order (the writer commits in a thread of its own: the order waits for that commit) and the second refused;
    committed together, the order precedes the commit and refuses both."""
    monkeypatch.setattr(ingest_service, "COMMIT_IMAGES", commit_images)
    orders: list[EnforcementOrder] = []
    first_commit = threading.Event()
    commit = IngestService._commit

    def committing(self: IngestService, *args: Any) -> int:
        try:
            return commit(self, *args)
        finally:
            first_commit.set()

    monkeypatch.setattr(IngestService, "_commit", committing)

    def record_the_order_after_the_first_item(done: int, _total: int) -> None:
        if done == 1 and not orders:
            if commit_images == 1:  # the first photo was handed to the writer before this call
                assert first_commit.wait(120)
            orders.append(cnil_order(jft))

    report = jft.ingest.ingest(actor, jurisdiction_store.fr_source,
                               from_paths([SAMPLES / "obama2.jpg", SAMPLES / "rose_leslie2.jpg"], jft.input_limits),
                               progress=record_the_order_after_the_first_item, workers=1)
    assert report.images_added == added and report.refused_by_order == {orders[0].id: refused}
    assert all("enforcement order 1" in error.cause for error in report.errors) and len(report.errors) == refused


def test_an_image_without_a_face_in_scope_is_erased_too(jft: Facetrail, actor: Actor, tmp_path: Path,
                                                        jurisdiction_store: JurisdictionStore) -> None:
    corner = tmp_path / "corner.jpg"  # a corner of a real photo, too small to hold a face
    with Image.open(SAMPLES / "obama_and_biden.jpg") as photo:
        photo.crop((0, 0, 64, 64)).save(corner, "JPEG")
    report = jft.ingest.ingest(actor, jurisdiction_store.fr_source, from_paths([corner], jft.input_limits))
    assert report.images_without_faces == 1
    with jft.db.read() as session:
        blob_key = session.scalar(select(StoredImage.blob_key).where(StoredImage.id.in_(image_ids(jft, "corner.jpg"))))
    assert blob_key is not None and jft.blobs.exists(blob_key)
    order = cnil_order(jft)
    assert jft.orders.status(DPO, order.id).images_remaining == 5
    done = jft.orders.run(DPO, order.id)
    assert (done.images_remaining, done.images_erased, done.faces_erased) == (0, 5, 4)
    assert image_ids(jft, "corner.jpg") == [] and not jft.blobs.exists(blob_key)


@pytest.mark.sqlite_only  # `facetrail backup` copies a SQLite store (a PostgreSQL store: pg_dump)
def test_a_backup_taken_before_the_job_does_not_bring_the_french_data_back(
        actor: Actor, tmp_path: Path, jurisdiction_store: JurisdictionStore) -> None:
    data = tmp_path / "data"
    shutil.copytree(jurisdiction_store.data, data)
    corner = tmp_path / "corner.jpg"  # an image without a face: erased whole, it has no face to erase again
    with Image.open(SAMPLES / "obama_and_biden.jpg") as photo:
        photo.crop((0, 0, 64, 64)).save(corner, "JPEG")
    ft = Facetrail.open(data, workers=1)
    ft.ingest.ingest(actor, jurisdiction_store.fr_source, from_paths([corner], ft.input_limits))
    french = stored_faces(ft, face_ids(ft, *FRENCH))
    archive = tmp_path / "before.tar"
    create_backup(ft, actor, archive)
    ft.orders.run(DPO, cnil_order(ft).id)
    ft.close()
    report = restore_backup(get_settings(data=data), archive, actor.name)
    assert report["faces_erased"] == 4
    ft = Facetrail.open(data, workers=1)
    try:
        assert image_ids(ft, *FRENCH, "corner.jpg") == [] and image_ids(ft, *NOT_FRENCH)
        for face in french:
            assert files_holding(data, face.sealed) == []
    finally:
        ft.close()
