"""The clustering algorithm on its own: synthetic geometry that chains, and real sample templates."""

from __future__ import annotations

from collections import Counter, defaultdict

import numpy as np
import pytest
from numpy.typing import NDArray

from facetrail.errors import InvalidValueError
from facetrail.media.image import decode_image
from facetrail.people.clustering import (
    CLUSTER_BAND,
    FALLBACK_THRESHOLDS,
    assign_faces,
    cluster_templates,
    default_threshold,
)
from facetrail.runtime import Facetrail
from facetrail.vision.backend import load_backend
from facetrail.vision.calibration import Band, load_calibration
from tests.conftest import LFW
from tests.people.conftest import group_photos, sample_faces

DIM = 128
rng = np.random.default_rng(7)


def axis(i: int) -> NDArray[np.float64]:
    v = np.zeros(DIM)
    v[i] = 1.0
    return v


def blob(centre: NDArray[np.float64], n: int, spread: float, seed: int) -> NDArray[np.float32]:
    """n faces around `centre`, each moved by `spread` in a random direction orthogonal to axis 0."""
    noise = np.random.default_rng(seed).normal(size=(n, DIM))
    noise[:, 0] = 0
    noise *= spread / np.linalg.norm(noise, axis=1, keepdims=True)
    return (centre + noise).astype(np.float32)


def single_linkage(templates: NDArray[np.float32], threshold: float) -> NDArray[np.int64]:
    """Connected components of the within-threshold graph: the grouping that chains."""
    parent = list(range(len(templates)))

    def root(i: int) -> int:
        while parent[i] != i:
            i = parent[i]
        return i

    distances = np.linalg.norm(templates[:, None] - templates[None], axis=2)
    for i, j in zip(*np.nonzero(distances <= threshold), strict=True):
        parent[root(int(i))] = root(int(j))
    return np.array([root(i) for i in range(len(templates))])


def diameter(templates: NDArray[np.float32]) -> float:
    return float(np.linalg.norm(templates[:, None] - templates[None], axis=2).max())


def test_a_chain_of_near_neighbours_is_not_one_cluster() -> None:
    # 20 faces on a line, 0.3 apart: each is within 0.5 of the next only.
    chain = np.stack([axis(0) * 0.3 * i for i in range(20)]).astype(np.float32)
    assert len(set(single_linkage(chain, 0.5))) == 1  # the data does chain
    labels = cluster_templates(chain, 0.5)
    assert len(set(labels)) >= 7
    for label in set(labels):
        assert diameter(chain[labels == label]) <= 2 * 0.5


def test_bridging_faces_do_not_fuse_two_people() -> None:
    # Person A around x = 0, person B around x = 0.9; two in-between faces link them pairwise.
    a = blob(np.zeros(DIM), 10, 0.1, seed=1)
    b = blob(axis(0) * 0.9, 10, 0.1, seed=2)
    bridges = np.stack([axis(0) * 0.3, axis(0) * 0.6]).astype(np.float32)
    templates = np.concatenate([a, b, bridges])
    assert len(set(single_linkage(templates, 0.5))) == 1  # the data does chain
    labels = cluster_templates(templates, 0.5)
    assert len(set(labels[:10])) == 1 and len(set(labels[10:20])) == 1
    assert labels[0] != labels[10]


def test_look_alikes_stay_apart_where_single_linkage_merges_them() -> None:
    # Siblings: two tight groups whose nearest cross pairs fall inside the threshold.
    a = blob(np.zeros(DIM), 12, 0.2, seed=3)
    s = blob(axis(0) * 0.42, 12, 0.2, seed=4)
    templates = np.concatenate([a, s])
    cross = np.linalg.norm(a[:, None] - s[None], axis=2)
    assert (cross <= 0.5).mean() < 0.5 and (cross <= 0.5).any()
    assert len(set(single_linkage(templates, 0.5))) == 1
    labels = cluster_templates(templates, 0.5)
    assert not set(labels[:12]) & set(labels[12:])


def test_incremental_assignment_joins_existing_people_and_forms_new_ones() -> None:
    a = blob(np.zeros(DIM), 8, 0.15, seed=5)
    b = blob(axis(0) * 1.5, 8, 0.15, seed=6)
    c = blob(axis(1) * 1.5, 5, 0.15, seed=7)
    known = np.concatenate([a[:5], b[:5]])
    people = np.array([42] * 5 + [7] * 5)
    new = np.concatenate([a[5:], c, b[5:]])
    result = assign_faces(known, people, new, threshold=0.5)
    assert result.person.tolist() == [42] * 3 + [-1] * 5 + [7] * 3
    assert result.group.tolist() == [-1] * 3 + [0] * 5 + [-1] * 3
    assert result.groups == 1


def test_batch_is_the_incremental_rule_with_nothing_known() -> None:
    templates = np.concatenate([blob(np.zeros(DIM), 6, 0.15, seed=8), blob(axis(2) * 2, 4, 0.15, seed=9)])
    labels = cluster_templates(templates, 0.5)
    assert sorted(set(labels.tolist())) == [0, 1]
    assert labels[:6].tolist() == [labels[0]] * 6 and labels[6:].tolist() == [labels[6]] * 4
    empty = assign_faces(np.zeros((0, DIM)), np.zeros(0, dtype=np.int64), templates, threshold=0.5)
    assert empty.group.tolist() == labels.tolist() and (empty.person == -1).all()
    assert cluster_templates(np.zeros((0, DIM)), 0.5).tolist() == []


def test_a_face_joins_the_cluster_it_agrees_with_most() -> None:
    # The new face is near both people, but near all of 42 and only half of 7, and closer to 42.
    face = np.zeros((1, DIM), dtype=np.float32)
    near = blob(np.zeros(DIM), 4, 0.2, seed=10)
    half = np.concatenate([blob(np.zeros(DIM), 2, 0.45, seed=11), blob(np.zeros(DIM), 2, 0.8, seed=12)])
    known = np.concatenate([half, near])
    result = assign_faces(known, np.array([7] * 4 + [42] * 4), face, threshold=0.5)
    assert result.person.tolist() == [42]


@pytest.mark.parametrize("kwargs,field", [
    ({"threshold": 0.0}, "threshold"),
    ({"threshold": float("nan")}, "threshold"),
    ({"threshold": 0.5, "min_support": 0.0}, "min_support"),
    ({"threshold": 0.5, "min_support": 1.5}, "min_support"),
])
def test_bad_parameters_are_refused(kwargs: dict[str, float], field: str) -> None:
    with pytest.raises(InvalidValueError) as info:
        assign_faces(np.zeros((1, DIM)), np.array([1]), np.zeros((1, DIM)), **kwargs)  # type: ignore[arg-type]
    assert info.value.field == field


def test_bad_templates_are_refused() -> None:
    with pytest.raises(InvalidValueError, match="cannot join"):
        assign_faces(np.zeros((1, DIM)), np.array([1]), np.zeros((1, 64)), threshold=0.5)
    with pytest.raises(InvalidValueError, match="one person id per known"):
        assign_faces(np.zeros((2, DIM)), np.array([1]), np.zeros((1, DIM)), threshold=0.5)
    with pytest.raises(InvalidValueError, match="NaN"):
        cluster_templates(np.full((2, DIM), np.nan), 0.5)
    with pytest.raises(InvalidValueError, match="matrix"):
        cluster_templates(np.zeros(DIM), 0.5)


def test_threshold_comes_from_the_calibration_or_a_documented_fallback() -> None:
    calibration = load_calibration("dlib-resnet-v1")
    expected = calibration.threshold(CLUSTER_BAND) if calibration else FALLBACK_THRESHOLDS["dlib-resnet-v1"]
    assert default_threshold("dlib-resnet-v1") == expected
    assert 0.3 < expected < 0.6  # stricter than dlib's same-person 0.6: a wrong merge costs more than a split
    with pytest.raises(InvalidValueError, match="no calibration"):
        default_threshold("onnx-unknown-model")


def clusters_by_label(labels: NDArray[np.int64], names: list[str | None]) -> dict[str, set[int]]:
    found: dict[str, set[int]] = defaultdict(set)
    for label, name in zip(labels.tolist(), names, strict=True):
        if name is not None:
            found[name].add(label)
    return found


def test_real_sample_templates_group_by_identity(samples_ft: Facetrail) -> None:
    """At the default model's clustering threshold (its calibrated 'strong' band), each labelled person of the
    sample photos is one cluster of their own."""
    faces = sample_faces(samples_ft)
    labels = cluster_templates(np.stack([f.template for f in faces]), default_threshold(samples_ft.gallery.model_id))
    found = clusters_by_label(labels, [f.label for f in faces])
    for name, clusters in found.items():
        assert len(clusters) == 1, (name, clusters)
    owners = [label for clusters in found.values() for label in clusters]
    assert len(owners) == len(set(owners)), "two labelled people share a cluster"
    for file, people in group_photos().items():
        in_photo = {int(labels[i]) for i, f in enumerate(faces) if f.file == file}
        assert {next(iter(found[p])) for p in people} <= in_photo, file
    bystander = {int(labels[i]) for i, f in enumerate(faces) if f.file == "obama_and_biden.jpg"} - set(owners)
    assert len(bystander) == 1  # the child is a person of their own


def test_real_templates_join_known_people_incrementally(samples_ft: Facetrail) -> None:
    faces = [f for f in sample_faces(samples_ft) if f.label in ("barack_obama", "joe_biden", "kit_harington")]
    old = [f for f in faces if f.label != "kit_harington" and f.file not in ("obama2.jpg", "biden2.jpg")]
    new = [f for f in faces if f not in old]
    ids = {"barack_obama": 100, "joe_biden": 200}
    result = assign_faces(np.stack([f.template for f in old]), np.array([ids[str(f.label)] for f in old]),
                          np.stack([f.template for f in new]),
                          threshold=default_threshold(samples_ft.gallery.model_id))
    for face, person, group in zip(new, result.person.tolist(), result.group.tolist(), strict=True):
        if face.label == "kit_harington":
            assert person == -1 and group == 0
        else:
            assert person == ids[str(face.label)] and group == -1


@pytest.fixture(scope="module")
def lfw_subset() -> tuple[NDArray[np.float32], NDArray[np.int64]]:
    """Templates of 5 photos each of the first 40 LFW people (alphabetically) with 10 or more photos."""
    backend = load_backend()
    people = sorted(p.name for p in LFW.iterdir() if len(list(p.glob("*.jpg"))) >= 10)[:40]
    templates, labels = [], []
    for label, person in enumerate(people):
        for path in sorted((LFW / person).glob("*.jpg"))[:5]:
            pixels = decode_image(path.read_bytes(), max_pixels=1_000_000).pixels
            # LFW photos are centred on their person; others in the background are not them.
            centre = np.array(pixels.shape[1::-1]) / 2
            found = backend.detect(pixels)
            face = min(found, key=lambda d: float(np.hypot(*(np.array([(d.box.left + d.box.right) / 2,
                                                                      (d.box.top + d.box.bottom) / 2]) - centre))))
            templates.append(backend.embed(pixels, [face])[0])
            labels.append(label)
    return np.stack(templates), np.array(labels)


def pairwise(labels: NDArray[np.int64], truth: NDArray[np.int64]) -> tuple[float, float]:
    """(precision, recall) over pairs of faces put together."""
    def together(values: list[tuple[int, ...]] | list[int]) -> int:
        return sum(n * (n - 1) // 2 for n in Counter(values).values())

    both = together(list(zip(labels.tolist(), truth.tolist(), strict=True)))
    return both / max(1, together(labels.tolist())), both / together(truth.tolist())


@pytest.mark.slow
@pytest.mark.parametrize("band", [Band.STRONG, Band.PROBABLE])
def test_lfw_people_do_not_chain_together(lfw_subset: tuple[NDArray[np.float32], NDArray[np.int64]],
                                           band: Band) -> None:
    """At the default model's clustering threshold ('strong') and a looser one ('probable')."""
    calibration = load_backend().calibration()
    assert calibration is not None
    threshold = calibration.threshold(band)
    templates, truth = lfw_subset
    chained = single_linkage(templates, threshold)
    assert pairwise(chained, truth)[0] < 0.95  # near neighbours do chain different people together here
    labels = cluster_templates(templates, threshold)
    precision, recall = pairwise(labels, truth)
    assert precision == 1.0 and recall >= 0.65, (precision, recall)
