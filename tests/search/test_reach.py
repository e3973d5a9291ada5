"""The threshold a search uses follows the number of faces it reaches (min_band auto), and says what it means."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import func, select, update

from facetrail.accounts.roles import Actor
from facetrail.errors import InvalidValueError
from facetrail.runtime import Facetrail
from facetrail.search.reach import AUTO, parse_min_band, rate, reach, threshold_line
from facetrail.sources.inputs import from_paths
from facetrail.store.db import bump_generation
from facetrail.store.models import Face
from facetrail.vision.calibration import Band, load_calibration
from tests.conftest import SAMPLES, add_source, sample_bytes


def test_min_band_auto_or_a_band() -> None:
    assert parse_min_band("auto") is None and parse_min_band(" AUTO ") is None
    assert parse_min_band("strong") is Band.STRONG and parse_min_band("none") is Band.NONE
    for bad in ("", "maybe", "possibly"):
        with pytest.raises(InvalidValueError, match="min_band") as caught:
            parse_min_band(bad)
        assert AUTO in caught.value.message


def test_the_automatic_threshold_keeps_the_target_at_every_size() -> None:
    cal = load_calibration("dlib-resnet-v1")
    assert cal is not None
    sizes = (2, 30, 1_000, 100_000, 1_000_000)
    limits = [reach(cal, n, None, 0.01) for n in sizes]
    assert [r.max_distance for r in limits] == sorted((r.max_distance for r in limits), reverse=True)
    for r in limits:
        assert r.fpir == pytest.approx(0.01, rel=1e-6) and r.target_fpir == 0.01 and r.min_band_name == "auto"
    # Below what the calibration measured (about 1 in 6 million comparisons), the threshold is extrapolated.
    assert not limits[2].extrapolated and limits[-1].extrapolated
    # Never looser than 'possible', even for one face or none.
    for n in (0, 1):
        assert reach(cal, n, None, 0.01).max_distance == cal.threshold(Band.POSSIBLE)
    # An explicit band keeps its threshold and says what it means at this size.
    fixed = reach(cal, 1_000, Band.POSSIBLE, 0.01)
    assert fixed.max_distance == cal.threshold(Band.POSSIBLE) and fixed.target_fpir is None
    assert fixed.fpir is not None and fixed.fpir > 0.99
    everything = reach(cal, 50, Band.NONE, 0.01)
    assert math.isinf(everything.max_distance) and everything.as_dict()["max_distance"] is None
    uncalibrated = reach(None, 50, None, 0.01)
    assert math.isinf(uncalibrated.max_distance) and uncalibrated.fpir is None
    assert "no calibration" in threshold_line(uncalibrated)
    line = threshold_line(limits[-1])
    assert "1,000,000 faces searched" in line and "1.0% of searches" in line and "extrapolated" in line


def test_rates_read_as_people_read_them() -> None:
    assert rate(None) == "-" and rate(0.0) == "0" and rate(0.5) == "50%" and rate(0.0123) == "1.2%"
    assert rate(1e-4) == "1 in 10,000" and rate(3e-7) == "1 in 3,333,333"


def test_faces_reached_follow_purpose_restriction_and_changes(samples_ft: Facetrail, actor: Actor) -> None:
    gallery = samples_ft.gallery
    with samples_ft.db.read() as session:
        total = session.scalar(select(func.count(Face.id)))
    assert total and gallery.count({1}) == total == gallery.count(None) and gallery.count(set()) == 0
    press = add_source(samples_ft, name="press", purposes=("press",))
    assert gallery.count({press}) == 0
    report = samples_ft.ingest.ingest(actor, press, from_paths([SAMPLES / "obama.jpg"], samples_ft.input_limits))
    assert not report.errors
    assert gallery.count({press}) == 1 and gallery.count({1, press}) == total + 1
    with samples_ft.db.write() as session, session.begin():  # Art. 18: a restricted face is not searched
        first = session.scalar(select(func.min(Face.id)).where(Face.source_id == 1))
        session.execute(update(Face).where(Face.id == first).values(restricted=True))
        bump_generation(session)
    assert gallery.count({1}) == total - 1
    # The search reports the same number, for its own purpose only.
    outcome = samples_ft.search.search(actor, sample_bytes("obama2.jpg"), purpose="press", case_ref="c")
    assert outcome.reach.gallery_size == 1
    assert outcome.as_dict()["reach"]["gallery_size"] == 1


def test_the_index_counts_what_a_filtered_search_reaches(tmp_path: Path) -> None:
    from facetrail.index.faiss_index import FaissIndex

    index = FaissIndex(tmp_path / "i.faiss", 4)
    vectors = np.random.default_rng(0).normal(size=(10, 4)).astype(np.float32)
    index.add(np.arange(1, 11), vectors, np.array([1, 1, 1, 2, 2, 3, 3, 3, 3, 3]))
    assert index.count() == 10 and index.count({1}) == 3 and index.count({2, 3}) == 7 and index.count({9}) == 0
    index.remove([1, 6])
    assert index.count({1}) == 2 and index.count({3}) == 4 and index.count() == 8
    assert len(index.search(vectors[2], 10, {1})) == index.count({1})
