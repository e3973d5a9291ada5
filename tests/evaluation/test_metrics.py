"""The benchmark's metrics on cases whose answers are known."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from facetrail.evaluation import lfw
from facetrail.evaluation.metrics import cluster_quality, identification, roc_auc, verification
from facetrail.evaluation.pipelines import Templates, central
from tests.conftest import LFW


def test_read_lfw_protocols() -> None:
    view2 = lfw.read_pairs(LFW.parent / "pairs.txt")
    assert len(view2) == 6000 and {p.fold for p in view2} == set(range(10))
    assert sum(p.same for p in view2) == 3000
    assert view2[0].same and view2[300].fold == 0 and not view2[300].same and view2[600].fold == 1
    train = lfw.read_pairs(LFW.parent / "pairsDevTrain.txt")
    assert len(train) == 2200 and {p.fold for p in train} == {0}
    assert all(lfw.image_path(LFW.parent, k).exists() for k in lfw.pair_images(train[:50]))


def test_bad_pairs_file_is_refused(tmp_path: Path) -> None:
    (tmp_path / "p.txt").write_text("2\nA\t1\t2\n")
    with pytest.raises(ValueError, match="expected 4 pairs"):
        lfw.read_pairs(tmp_path / "p.txt")


def test_verification_perfect_and_failed_enrolment() -> None:
    same = np.array([True, False] * 50)
    folds = np.repeat(np.arange(10), 10)
    distances = np.where(same, 0.3, 0.9).astype(np.float64)
    result = verification(distances, same, folds)
    assert result.accuracy_mean == 1.0 and result.tar_at_far_1e3 == 1.0 and result.roc_auc == 1.0
    distances[0] = np.inf  # a same pair whose photo failed to enrol is a miss, never a match
    assert verification(distances, same, folds).accuracy_mean == pytest.approx(0.99)


def test_roc_auc_known_values() -> None:
    same = np.array([True, True, False, False])
    assert roc_auc(np.array([0.1, 0.2, 0.3, 0.4]), same) == 1.0
    assert roc_auc(np.array([0.3, 0.4, 0.1, 0.2]), same) == 0.0
    assert roc_auc(np.array([0.1, 0.3, 0.2, 0.4]), same) == 0.75


def test_identification_on_separable_templates() -> None:
    rng = np.random.default_rng(0)
    keys, vectors = [], []
    for person in range(30):
        centre = rng.normal(size=16) * 10
        for n in range(1 if person >= 20 else 3):
            keys.append(f"P{person:02d}/P{person:02d}_{n + 1:04d}")
            vectors.append(centre + rng.normal(size=16) * 0.01)
    templates = Templates("t", "m", keys, np.array(vectors, dtype=np.float32), ["hog"] * len(keys))
    result = identification(templates, fpir=0.1)
    assert (result.gallery, result.mated_probes, result.non_mated_probes) == (20, 40, 10)
    assert result.rank1 == 1.0 and result.rank10 == 1.0 and result.fnir_at_fpir == 0.0


def test_cluster_quality_known_values() -> None:
    perfect = cluster_quality([1, 1, 2, 2], ["a", "a", "b", "b"])
    assert perfect.pairwise_f == 1.0 and perfect.bcubed_f == 1.0
    merged = cluster_quality([1, 1, 1, 1], ["a", "a", "b", "b"])
    assert merged.pairwise_precision == pytest.approx(2 / 6) and merged.pairwise_recall == 1.0
    assert merged.bcubed_precision == pytest.approx(0.5) and merged.bcubed_recall == 1.0
    split = cluster_quality([1, 2, 3, 4], ["a", "a", "b", "b"])
    assert split.pairwise_recall == 0.0 and split.bcubed_precision == 1.0 and split.bcubed_recall == 0.5


def test_central_face_is_chosen() -> None:
    assert central([(0, 0, 10, 10), (100, 100, 150, 150), (240, 240, 250, 250)], 250, 250) == 1
