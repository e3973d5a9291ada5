"""Search by photo: ranking on the real samples, purpose limitation, face choice, nothing kept."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import func, select

from facetrail.accounts.roles import Actor, Role
from facetrail.errors import InvalidValueError, MediaError, NoFaceError, PermissionDeniedError
from facetrail.runtime import Facetrail
from facetrail.sources.inputs import from_paths
from facetrail.store.models import Face, SearchRecord, SearchResultRecord
from facetrail.vision.calibration import Band
from tests.conftest import SAMPLES, add_source, labelled_people, sample_bytes


def test_obama_ranks_above_everyone_else(samples_ft: Facetrail, actor: Actor) -> None:
    outcome = samples_ft.search.search(actor, sample_bytes("obama2.jpg"), purpose="demo", case_ref="c-1",
                                       top_k=100, min_band="none")
    people = labelled_people()
    obama_files = {name for name, who in people.items() if who == ["barack_obama"]}
    others = {"joe_biden", "kit_harington", "rose_leslie", "alex_lacamoire", "lin_manuel_miranda"}
    solo = [(Path(r.original_name).name, r.score) for r in outcome.results if Path(r.original_name).name in people
            and len(people[Path(r.original_name).name]) == 1]
    worst_obama = min(score for name, score in solo if name in obama_files)
    best_other = max(score for name, score in solo if set(people[name]) & others)
    assert worst_obama > best_other
    assert {name for name, _ in solo if name in obama_files} == obama_files
    # In the group photos, Obama's own face ranks above everyone else, in the 'strong' band, and the other faces
    # of the same photos are in no band (not shown by default).
    for group in ("two_people.jpg", "obama_and_biden.jpg"):
        faces = [r for r in outcome.results if Path(r.original_name).name == group]
        assert len(faces) >= 2 and faces[0].score > best_other and faces[0].band is Band.STRONG
        assert all(r.band is Band.NONE and r.score < faces[0].score for r in faces[1:]), faces


def test_results_carry_provenance_and_a_documented_score(samples_ft: Facetrail, actor: Actor) -> None:
    outcome = samples_ft.search.search(actor, sample_bytes("biden.jpg"), purpose="demo", case_ref="c-2", top_k=3)
    first = outcome.results[0]
    assert Path(first.original_name).name == "biden.jpg" and first.source_name == "samples"
    assert first.score == samples_ft.search.scorer.score(first.distance) > 100.0  # the same photo: far beyond
    assert all(a.score > b.score for a, b in zip(outcome.results, outcome.results[1:], strict=False))
    assert first.band is (Band.STRONG if samples_ft.search.scorer.calibrated else None)
    assert first.box.width > 0 and first.image_id > 0 and first.source_id == 1
    assert [r.rank for r in outcome.results] == [1, 2, 3]
    assert outcome.as_dict()["results"][0]["crop"].endswith(f"/faces/{first.face_id}/crop")
    assert samples_ft.search.result_crop(actor, outcome.search_id, first.face_id)[:2] == b"\xff\xd8"


def test_purpose_limitation(samples_ft: Facetrail, actor: Actor, tmp_path: Path) -> None:
    """Faces of a source registered for another purpose are never returned."""
    other = add_source(samples_ft, name="press archive", purposes=("press",))
    folder = tmp_path / "press"
    folder.mkdir()
    (folder / "obama-press.jpg").write_bytes(sample_bytes("obama3.jpg")[:-1] + b"\xd9")
    samples_ft.ingest.ingest(actor, other, from_paths([folder], samples_ft.input_limits))
    demo = samples_ft.search.search(actor, sample_bytes("obama2.jpg"), purpose="demo", case_ref="c", top_k=100)
    assert demo.results and all(r.source_id == 1 for r in demo.results)
    press = samples_ft.search.search(actor, sample_bytes("obama2.jpg"), purpose="press", case_ref="c", top_k=100)
    assert [r.source_id for r in press.results] == [other]



@pytest.mark.parametrize("purpose", ["marketing", "find-my-photo"])
def test_search_for_a_purpose_without_a_source_is_an_error_naming_the_purposes(
        samples_ft: Facetrail, actor: Actor, purpose: str) -> None:
    """An empty answer would read as "not in the collection": nothing was searched, and the error says so."""
    add_source(samples_ft, name="club", purposes=("find-my-photos", "press"))
    with pytest.raises(InvalidValueError) as caught:
        samples_ft.search.search(actor, sample_bytes("obama2.jpg"), purpose=purpose, case_ref="c")
    assert caught.value.field == "purpose"
    assert caught.value.message == (f"no source is registered for the purpose {purpose!r}; purposes with sources "
                                    "you may search: demo, find-my-photos, press")
    searches = [e for e in samples_ft.read_audit(actor, limit=1000) if e.action == "search"]
    assert searches == []


def test_several_query_faces_largest_by_default_or_chosen(samples_ft: Facetrail, actor: Actor) -> None:
    default = samples_ft.search.search(actor, sample_bytes("two_people.jpg"), purpose="demo", case_ref="c")
    assert len(default.query_faces) == 2 and default.used_face == 0
    areas = [q.box.area for q in default.query_faces]
    assert areas[0] >= areas[1]
    chosen = samples_ft.search.search(actor, sample_bytes("two_people.jpg"), purpose="demo", case_ref="c", face=1)
    assert chosen.used_face == 1
    assert chosen.results[0].face_id != default.results[0].face_id
    with pytest.raises(InvalidValueError, match="choose 0-1"):
        samples_ft.search.search(actor, sample_bytes("two_people.jpg"), purpose="demo", case_ref="c", face=2)


def test_search_is_recorded_with_hash_and_results_but_the_photo_is_not_kept(
        samples_ft: Facetrail, actor: Actor) -> None:
    import hashlib

    photo = sample_bytes("obama2.jpg")
    before = {p: p.stat().st_size for p in samples_ft.data.rglob("*") if p.is_file()}
    outcome = samples_ft.search.search(actor, photo, purpose="demo", case_ref="case-77", top_k=5)
    assert outcome.query_sha256 == hashlib.sha256(photo).hexdigest()
    new_files = {p for p in samples_ft.data.rglob("*") if p.is_file()} - set(before)
    assert not [p for p in new_files if p.suffix not in (".lock",) and "wal" not in p.name and "shm" not in p.name]
    with samples_ft.db.read() as session:
        record = session.get(SearchRecord, outcome.search_id)
        assert record is not None and record.case_ref == "case-77" and record.purpose == "demo"
        shown = list(session.scalars(select(SearchResultRecord.face_id).where(
            SearchResultRecord.search_id == outcome.search_id).order_by(SearchResultRecord.rank)))
    assert shown == [r.face_id for r in outcome.results]
    entry = samples_ft.read_audit(actor, limit=1000)[-1]
    assert entry.action == "search" and outcome.query_sha256 in entry.details
    assert str(shown).replace(" ", "") in entry.details


def test_query_photo_bytes_never_reach_the_data_directory(ft: Facetrail, actor: Actor) -> None:
    source = add_source(ft)
    ft.ingest.ingest(actor, source, from_paths([SAMPLES / "biden.jpg"], ft.input_limits))
    photo = sample_bytes("obama2.jpg")
    ft.search.search(actor, photo, purpose="demo", case_ref="c")
    ft.db.checkpoint()
    probe = photo[len(photo) // 2: len(photo) // 2 + 64]  # entropy-coded pixels, unique to this photo
    for path in ft.data.rglob("*"):
        if path.is_file():
            assert probe not in path.read_bytes(), path


def test_bad_requests(samples_ft: Facetrail, actor: Actor) -> None:
    photo = sample_bytes("obama2.jpg")
    with pytest.raises(InvalidValueError, match="case"):
        samples_ft.search.search(actor, photo, purpose="demo", case_ref=" ")
    with pytest.raises(InvalidValueError, match="purpose"):
        samples_ft.search.search(actor, photo, purpose="Not A Purpose!", case_ref="c")
    with pytest.raises(InvalidValueError, match="top"):
        samples_ft.search.search(actor, photo, purpose="demo", case_ref="c", top_k=0)
    with pytest.raises(MediaError):
        samples_ft.search.search(actor, b"not a photo", purpose="demo", case_ref="c")
    with pytest.raises(PermissionDeniedError):
        samples_ft.search.search(Actor("op", Role.OPERATOR), photo, purpose="demo", case_ref="c")


def test_photo_without_a_face_is_an_error_and_still_accounted_for(samples_ft: Facetrail, actor: Actor) -> None:
    import io

    from PIL import Image

    blank = io.BytesIO()
    Image.new("RGB", (200, 200), (90, 90, 90)).save(blank, format="PNG")
    with pytest.raises(NoFaceError):
        samples_ft.search.search(actor, blank.getvalue(), purpose="demo", case_ref="c")
    assert samples_ft.read_audit(actor, limit=1000)[-1].action == "search"


def test_crops_only_for_the_account_and_faces_of_that_search(samples_ft: Facetrail) -> None:
    ivy = Actor("ivy", Role.INVESTIGATOR)
    outcome = samples_ft.search.search(ivy, sample_bytes("biden.jpg"), purpose="demo", case_ref="c", top_k=1)
    shown = outcome.results[0].face_id
    assert samples_ft.search.result_crop(ivy, outcome.search_id, shown)
    from facetrail.errors import NotFoundError

    other_face = next(i for i in range(1, 30) if i != shown)
    with pytest.raises(NotFoundError):
        samples_ft.search.result_crop(ivy, outcome.search_id, other_face)
    with pytest.raises(PermissionDeniedError):
        samples_ft.search.result_crop(Actor("ian", Role.INVESTIGATOR), outcome.search_id, shown)


def test_results_below_the_minimum_band_are_not_shown_by_default(samples_ft: Facetrail, actor: Actor) -> None:
    """By default ("auto") the threshold follows the number of faces searched: a stranger comes out in at most
    `target_fpir` of searches, so it is stricter than 'possible' as soon as more than one face is searched."""
    scorer = samples_ft.search.scorer
    assert scorer.calibrated and scorer.calibration is not None, "the default model ships its calibration"
    cal = scorer.calibration
    shown = samples_ft.search.search(actor, sample_bytes("biden.jpg"), purpose="demo", case_ref="c", top_k=30)
    everything = samples_ft.search.search(actor, sample_bytes("biden.jpg"), purpose="demo", case_ref="c", top_k=30,
                                          min_band="none")
    with samples_ft.db.read() as session:
        faces = session.scalar(select(func.count(Face.id)))
    reach = shown.reach
    assert shown.min_band is None and reach.min_band_name == "auto" and reach.gallery_size == faces > 1
    assert reach.target_fpir == samples_ft.settings.target_fpir == 0.01
    assert reach.max_distance == pytest.approx(cal.gallery_threshold(0.01, faces))
    assert reach.max_distance < cal.threshold(Band.POSSIBLE) and reach.fpir == pytest.approx(0.01, rel=1e-6)
    assert len(shown.results) < len(everything.results)
    assert {r.face_id for r in shown.results} == {r.face_id for r in everything.results
                                                  if r.distance <= reach.max_distance}
    assert all(r.band in (Band.POSSIBLE, Band.PROBABLE, Band.STRONG) for r in shown.results)
    for r in shown.results:  # what each result means at this size
        assert r.fmr == pytest.approx(cal.fmr(r.distance)) and r.fpir == pytest.approx(cal.fpir(r.distance, faces))
        assert r.fmr <= r.fpir <= 0.01 + 1e-9
    assert all(Path(r.original_name).name in ("biden.jpg", "biden2.jpg", "two_people.jpg", "obama_and_biden.jpg")
               for r in shown.results)
    possible = samples_ft.search.search(actor, sample_bytes("biden.jpg"), purpose="demo", case_ref="c", top_k=30,
                                        min_band="possible")
    assert possible.min_band is Band.POSSIBLE and possible.reach.target_fpir is None
    assert {r.face_id for r in possible.results} == {r.face_id for r in everything.results
                                                     if r.band is not Band.NONE}
    assert possible.reach.fpir == pytest.approx(cal.fpir(cal.threshold(Band.POSSIBLE), faces))
    assert possible.reach.fpir > 0.1  # per comparison 1e-2, but a stranger in more than a tenth of searches
    strong = samples_ft.search.search(actor, sample_bytes("biden.jpg"), purpose="demo", case_ref="c", top_k=30,
                                      min_band="strong")
    assert all(r.band is Band.STRONG for r in strong.results)
    with pytest.raises(InvalidValueError, match="min_band"):
        samples_ft.search.search(actor, sample_bytes("biden.jpg"), purpose="demo", case_ref="c", min_band="maybe")


def test_poor_query_photo_is_warned_about(samples_ft: Facetrail, actor: Actor) -> None:
    import io

    from PIL import Image, ImageFilter

    image = Image.open(io.BytesIO(sample_bytes("obama.jpg"))).convert("RGB")
    poor = image.resize((image.width // 7, image.height // 7)).filter(ImageFilter.GaussianBlur(3))
    buffer = io.BytesIO()
    poor.save(buffer, format="JPEG")
    outcome = samples_ft.search.search(actor, buffer.getvalue(), purpose="demo", case_ref="c", min_band="none")
    assert any("small" in w for w in outcome.warnings) and any("blurred" in w for w in outcome.warnings)
    good = samples_ft.search.search(actor, sample_bytes("obama.jpg"), purpose="demo", case_ref="c")
    assert good.warnings == []


def test_the_purposes_named_are_only_those_the_key_may_search(samples_ft: Facetrail) -> None:
    add_source(samples_ft, name="club", purposes=("find-my-photos", "press"))
    scoped = Actor("ivy", Role.INVESTIGATOR, purposes=frozenset({"press", "find-my-photo"}))
    with pytest.raises(InvalidValueError) as caught:
        samples_ft.search.search(scoped, sample_bytes("obama2.jpg"), purpose="find-my-photo", case_ref="c")
    assert caught.value.message.endswith("purposes with sources you may search: press")
