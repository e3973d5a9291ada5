"""The ONNX embedding backend: its sidecar, alignment, preprocessing and the whole path through facetrail.

The models are built here with onnx.helper: a strided convolution (8x8 patches, so every output value sees
one region of the crop) then a projection. Their templates mean nothing, but they depend on every pixel in a
way the tests can recompute with numpy, and they run in the real onnxruntime.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper
from sqlalchemy import select

from facetrail.errors import ConflictError, FacetrailError, InvalidValueError
from facetrail.media.image import decode_image
from facetrail.runtime import Facetrail, local_actor
from facetrail.sources.inputs import from_paths
from facetrail.store.models import Face, StoredImage
from facetrail.vision import VisionConfig, load_backend
from facetrail.vision.alignment import (
    ARCFACE_TEMPLATE_112,
    apply_transform,
    five_points_from_68,
    similarity_transform,
    warp_affine,
)
from facetrail.vision.calibration import Calibration
from facetrail.vision.dlib_backend import DlibBackend
from facetrail.vision.onnx_backend import OnnxBackend
from facetrail.vision.types import Point
from tests.conftest import SAMPLES, add_source, sample_bytes, template_of

DIM = 32
PATCH = 8
CHANNELS = 4
ARCFACE = {"input_size": [112, 112], "mean": [127.5, 127.5, 127.5], "std": [127.5, 127.5, 127.5],
           "channel_order": "RGB", "layout": "NCHW"}
INGESTED = ["obama.jpg", "biden.jpg", "two_people.jpg"]


def weights(size: tuple[int, int] = (112, 112), dim: int = DIM) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(7)
    kernel = rng.standard_normal((CHANNELS, 3, PATCH, PATCH)) / PATCH
    cells = CHANNELS * (size[1] // PATCH) * (size[0] // PATCH)
    projection = rng.standard_normal((cells, dim)) / np.sqrt(cells)
    return kernel.astype(np.float32), projection.astype(np.float32)


def build_model(path: Path, *, batch: int | str = 1, size: tuple[int, int] = (112, 112), nhwc: bool = False,
                input_type: int = TensorProto.FLOAT) -> Path:
    """Save a patch-convolution embedder taking [batch, 3, h, w] (or [batch, h, w, 3]) float32 to `path`."""
    kernel, projection = weights(size)
    width, height = size
    shape = [batch, height, width, 3] if nhwc else [batch, 3, height, width]
    nodes = [helper.make_node("Transpose", ["image"], ["nchw"], perm=[0, 3, 1, 2])] if nhwc else []
    nodes += [
        helper.make_node("Cast", ["nchw" if nhwc else "image"], ["x"], to=TensorProto.FLOAT),
        helper.make_node("Conv", ["x", "kernel"], ["cells"], kernel_shape=[PATCH, PATCH], strides=[PATCH, PATCH]),
        helper.make_node("Flatten", ["cells"], ["flat"], axis=1),
        helper.make_node("MatMul", ["flat", "projection"], ["embedding"]),
    ]
    graph = helper.make_graph(
        nodes, "tiny-embedder",
        [helper.make_tensor_value_info("image", input_type, shape)],
        [helper.make_tensor_value_info("embedding", TensorProto.FLOAT, [batch, DIM])],
        initializer=[numpy_helper.from_array(kernel, "kernel"), numpy_helper.from_array(projection, "projection")],
    )
    return save(graph, path)


def build_open_model(path: Path) -> Path:
    """A model of any input size whose output length therefore is not fixed: [1, 3, h, w] -> [1, 4 * h * w / 64]."""
    kernel, _ = weights()
    graph = helper.make_graph(
        [helper.make_node("Conv", ["image", "kernel"], ["cells"], kernel_shape=[PATCH, PATCH],
                          strides=[PATCH, PATCH]),
         helper.make_node("Flatten", ["cells"], ["embedding"], axis=1)],
        "open-embedder",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, [1, 3, "h", "w"])],
        [helper.make_tensor_value_info("embedding", TensorProto.FLOAT, [1, "d"])],
        initializer=[numpy_helper.from_array(kernel, "kernel")],
    )
    return save(graph, path)


def save(graph: onnx.GraphProto, path: Path) -> Path:
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, path)
    return path


def describe(model: Path, **fields: Any) -> Path:
    """Write the model's sidecar: the ArcFace conventions, with `fields` replacing (None: removing) some."""
    sidecar = {**ARCFACE, **fields}
    model.with_name(model.name + ".json").write_text(json.dumps({k: v for k, v in sidecar.items() if v is not None}))
    return model


def reference_embedding(batch: np.ndarray) -> np.ndarray:
    """What the model computes for an NCHW batch, in numpy, L2-normalised."""
    kernel, projection = weights()
    n, _, h, w = batch.shape
    patches = batch.reshape(n, 3, h // PATCH, PATCH, w // PATCH, PATCH)
    cells = np.einsum("ncyixj,kcij->nkyx", patches, kernel).reshape(n, -1)
    out = cells @ projection
    return out / np.linalg.norm(out, axis=1, keepdims=True)


def pixels(name: str) -> np.ndarray:
    return decode_image(sample_bytes(name), max_pixels=64_000_000).pixels


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return describe(build_model(tmp_path_factory.mktemp("model") / "tiny.onnx"))


@pytest.fixture(scope="module")
def backend(model: Path) -> OnnxBackend:
    loaded = load_backend(VisionConfig(model=model))
    assert isinstance(loaded, OnnxBackend)
    return loaded


@pytest.fixture
def tiny(tmp_path: Path) -> Path:
    """A model with no sidecar yet, for tests that write their own."""
    return build_model(tmp_path / "tiny.onnx")


# -- loading and the sidecar -------------------------------------------------------------------
def test_load_backend_picks_onnx_only_with_a_model(backend: OnnxBackend, model: Path) -> None:
    assert isinstance(load_backend(VisionConfig(vision_model="dlib")), DlibBackend)
    assert backend.model_id == "onnx-" + hashlib.sha256(model.read_bytes()).hexdigest()[:16]
    assert backend.template_dim == DIM
    assert backend.description.template == ARCFACE_TEMPLATE_112


def test_detection_is_dlibs(backend: OnnxBackend) -> None:
    image = pixels("two_people.jpg")
    assert backend.detect(image) == load_backend(VisionConfig(vision_model="dlib")).detect(image)


def test_sidecar_names_the_model_and_its_calibration(tiny: Path) -> None:
    curve = Calibration.from_impostors("tiny-v1", np.linspace(0.5, 1.5, 2000), data="synthetic")
    curve.save(tiny.parent / "calib" / "tiny.json")
    backend = load_backend(VisionConfig(model=describe(tiny, model_id="tiny-v1", calibration="calib/tiny.json")))
    assert backend.model_id == "tiny-v1"
    assert isinstance(backend, OnnxBackend)
    loaded = backend.calibration()
    assert loaded is not None and loaded.model_id == "tiny-v1"
    assert loaded.thresholds == pytest.approx(curve.thresholds, abs=1e-6)
    # A calibration made for another model is refused, not applied.
    wrong = load_backend(VisionConfig(model=describe(tiny, model_id="tiny-v2", calibration="calib/tiny.json")))
    assert isinstance(wrong, OnnxBackend)
    with pytest.raises(InvalidValueError, match="tiny-v1"):
        wrong.calibration()


@pytest.mark.parametrize("field,value", [
    ("input_size", [112]), ("input_size", [0, 112]), ("input_size", "112x112"), ("input_size", [112.0, 112]),
    ("mean", [127.5, 127.5]), ("mean", ["a", 1, 2]), ("mean", [float("nan"), 1, 2]),
    ("std", [0, 1, 1]), ("std", [-1, 1, 1]), ("std", None),
    ("channel_order", "rgb"), ("channel_order", "RGBA"), ("channel_order", 3), ("channel_order", None),
    ("layout", "CHW"), ("layout", None),
    ("template", [[38, 51], [73, 51], [56, 71], [41, 92]]), ("template", [[38, 51]] * 4 + [[200, 92]]),
    ("template", [[38, 51], [73, 51], [56, 71], [41, 92], ["x", 92]]), ("template", [[56, 56]] * 5),
    ("model_id", "../escape"), ("model_id", ""), ("model_id", "m" * 65), ("model_id", 7),
    ("model_id", "dlib-resnet-v1"),
    ("template_dim", 0), ("template_dim", "32"),
    ("calibration", "missing.json"), ("calibration", 1),
    ("chanel_order", "RGB"),
])
def test_each_bad_sidecar_field_is_named(tiny: Path, field: str, value: Any) -> None:
    describe(tiny, **{field: value})
    with pytest.raises(InvalidValueError) as caught:
        load_backend(VisionConfig(model=tiny))
    assert caught.value.field == field


def test_other_input_sizes_need_their_own_template(tmp_path: Path) -> None:
    model = build_model(tmp_path / "m128.onnx", size=(128, 128))
    with pytest.raises(InvalidValueError) as caught:
        load_backend(VisionConfig(model=describe(model, input_size=[128, 128])))
    assert caught.value.field == "template"
    scaled = [[x * 128 / 112, y * 128 / 112] for x, y in ARCFACE_TEMPLATE_112]
    backend = load_backend(VisionConfig(model=describe(model, input_size=[128, 128], template=scaled)))
    assert backend.template_dim == DIM


def test_missing_or_unreadable_model_and_sidecar(tmp_path: Path, tiny: Path) -> None:
    cases: list[Path] = [tmp_path / "absent.onnx", tiny]  # no model file; a model without a sidecar
    garbled = tmp_path / "garbled.onnx"
    garbled.write_text("{not json")
    (tmp_path / "garbled.onnx.json").write_text("{not json")
    cases.append(garbled)
    for path in cases:
        with pytest.raises(InvalidValueError) as caught:
            load_backend(VisionConfig(model=path))
        assert caught.value.field == "model", path
    # Bytes that are not a model fail when the model is opened (Facetrail.open asks for template_dim).
    broken = describe(tmp_path / "broken.onnx")
    broken.write_bytes(b"\x08\x07 this is not a protobuf")
    with pytest.raises(InvalidValueError, match="broken.onnx cannot be loaded") as caught:
        _ = load_backend(VisionConfig(model=broken)).template_dim
    assert caught.value.field == "model"


@pytest.mark.parametrize("fields,build,field", [
    ({"input_size": [96, 112], "template": [list(p) for p in ARCFACE_TEMPLATE_112]}, {}, "input_size"),
    ({"layout": "NHWC"}, {}, "layout"),
    ({}, {"nhwc": True}, "layout"),
    ({"template_dim": 64}, {}, "template_dim"),
    ({}, {"input_type": TensorProto.UINT8}, "model"),
    ({}, {"batch": 4}, "model"),
])
def test_a_model_that_contradicts_its_description(tmp_path: Path, fields: dict[str, Any],
                                                  build: dict[str, Any], field: str) -> None:
    model = describe(build_model(tmp_path / "m.onnx", **build), **fields)
    backend = load_backend(VisionConfig(model=model))
    with pytest.raises(InvalidValueError) as caught:
        _ = backend.template_dim
    assert caught.value.field == field


def test_an_open_output_size_is_taken_from_the_sidecar(tmp_path: Path) -> None:
    model = build_open_model(tmp_path / "open.onnx")
    with pytest.raises(InvalidValueError) as caught:
        _ = load_backend(VisionConfig(model=describe(model))).template_dim
    assert caught.value.field == "template_dim"
    cells = CHANNELS * (112 // PATCH) ** 2
    backend = load_backend(VisionConfig(model=describe(model, template_dim=cells)))
    assert backend.template_dim == cells
    image = pixels("obama.jpg")
    assert backend.embed(image, backend.detect(image))[0].shape == (cells,)
    # A wrong declaration is caught at the first embedding: templates of the wrong size never reach the index.
    wrong = load_backend(VisionConfig(model=describe(model, template_dim=cells + 1)))
    with pytest.raises(FacetrailError, match="returned"):
        wrong.embed(image, wrong.detect(image))


# -- alignment ---------------------------------------------------------------------------------
def rotation(degrees: float) -> np.ndarray:
    t = np.deg2rad(degrees)
    return np.array([[np.cos(t), -np.sin(t)], [np.sin(t), np.cos(t)]])


def test_similarity_transform_recovers_rotation_scale_and_shift() -> None:
    template = np.array(ARCFACE_TEMPLATE_112)
    source = template @ (2.5 * rotation(-23)).T + [410.3, 95.7]
    matrix = similarity_transform(source, template)
    assert np.allclose(apply_transform(matrix, source), template, atol=1e-9)
    assert np.allclose(matrix[:, :2], rotation(23) / 2.5)
    # Mirrored landmarks get the best rotation, never a reflection.
    mirrored = similarity_transform(source * [-1, 1], template)
    assert np.linalg.det(mirrored[:, :2]) > 0


def test_warp_maps_pixel_centres_as_the_matrix_says() -> None:
    """Doubling: crop pixel (2i, 2j) is exactly source pixel (i, j), with no half-pixel drift."""
    image = np.random.default_rng(1).integers(0, 256, (40, 50, 3), dtype=np.uint8)
    doubled = warp_affine(image, np.array([[2.0, 0, 0], [0, 2.0, 0]]), (100, 80))
    assert doubled.shape == (80, 100, 3)
    assert np.array_equal(doubled[::2, ::2], image)
    shifted = warp_affine(image, np.array([[1.0, 0, -3], [0, 1.0, -5]]), (20, 10))
    assert np.array_equal(shifted, image[5:15, 3:23])


def test_aligned_crop_puts_landmarks_on_the_template() -> None:
    """Blobs drawn at a rotated, scaled face's five points land on the template points within half a pixel."""
    template = np.array(ARCFACE_TEMPLATE_112)
    for degrees, scale in [(17, 2.7), (-30, 0.8), (5, 4.0)]:
        source = (template - 56) @ (scale * rotation(degrees)).T + [310.4, 240.8]
        yy, xx = np.mgrid[0:500, 0:600]
        blobs = sum(np.exp(-((xx - x) ** 2 + (yy - y) ** 2) / (2 * (1.5 * scale) ** 2)) for x, y in source)
        image = np.repeat((np.clip(blobs, 0, 1) * 255).astype(np.uint8)[..., None], 3, axis=2)
        crop = warp_affine(image, similarity_transform(source, template), (112, 112))[..., 0].astype(float)
        cy, cx = np.mgrid[0:112, 0:112]
        for tx, ty in template:
            weight = crop * ((np.abs(cx - tx) < 6) & (np.abs(cy - ty) < 6))
            centroid = np.array([(weight * cx).sum(), (weight * cy).sum()]) / weight.sum()
            assert np.abs(centroid - [tx, ty]).max() < 0.5, (degrees, scale, tx, ty, centroid)


def test_five_points_from_68() -> None:
    shape = [Point(float(i), float(2 * i)) for i in range(68)]
    five = five_points_from_68(shape)
    assert five.tolist() == [[38.5, 77.0], [44.5, 89.0], [30.0, 60.0], [48.0, 96.0], [54.0, 108.0]]
    with pytest.raises(ValueError):
        five_points_from_68(shape[:5])


@pytest.mark.parametrize("name", ["obama.jpg", "biden.jpg", "two_people.jpg", "kit_with_rose.jpg"])
def test_real_faces_fit_the_template(backend: OnnxBackend, name: str) -> None:
    """The 68-point landmarks of real faces fit the ArcFace template up to face shape (a few pixels), in the
    template's order: a swapped eye or mouth corner would leave residuals of tens of pixels."""
    image = pixels(name)
    template = np.array(ARCFACE_TEMPLATE_112)
    for det in backend.detect(image):
        points = backend.face_points(image, det)
        residual = apply_transform(similarity_transform(points, template), points) - template
        assert np.sqrt((residual**2).sum(axis=1).mean()) < 7, (name, residual)


def test_aligned_real_face_is_landmarked_where_the_transform_says(backend: OnnxBackend) -> None:
    """Landmarking the aligned crop again finds the eyes, nose and mouth where the transform sent them."""
    image = pixels("biden.jpg")
    det = backend.detect(image)[0]
    points = backend.face_points(image, det)
    expected = apply_transform(similarity_transform(points, np.array(ARCFACE_TEMPLATE_112)), points)
    crop = backend.aligned_faces(image, [det])[0]
    assert crop.shape == (112, 112, 3) and crop.dtype == np.uint8
    # The predictor wants a face of ordinary size and a detector's box: enlarge the crop 4x and detect in it.
    big = np.asarray(warp_affine(crop, np.array([[4.0, 0, 0], [0, 4.0, 0]]), (448, 448)))
    found = backend.detect(big)
    assert len(found) == 1
    assert np.abs(backend.face_points(big, found[0]) / 4 - expected).max() < 2.0


# -- preprocessing and embedding ---------------------------------------------------------------
@pytest.mark.parametrize("order,layout", [("RGB", "NCHW"), ("BGR", "NCHW"), ("RGB", "NHWC"), ("BGR", "NHWC")])
def test_channel_order_normalisation_and_layout(tmp_path: Path, order: str, layout: str) -> None:
    model = describe(build_model(tmp_path / "m.onnx", nhwc=layout == "NHWC"), channel_order=order,
                     layout=layout, mean=[10.0, 20.0, 30.0], std=[1.0, 2.0, 4.0])
    backend = load_backend(VisionConfig(model=model))
    assert isinstance(backend, OnnxBackend)
    crop = np.zeros((112, 112, 3), dtype=np.uint8)
    crop[...] = (50, 100, 200)  # R, G, B
    crop[0, 1] = (0, 0, 0)
    batch = backend.to_input([crop, crop])
    assert batch.dtype == np.float32 and batch.flags.c_contiguous
    first = [50, 100, 200] if order == "RGB" else [200, 100, 50]
    want = (np.array(first) - [10, 20, 30]) / [1, 2, 4]
    if layout == "NCHW":
        assert batch.shape == (2, 3, 112, 112)
        assert batch[1, :, 5, 7].tolist() == want.tolist()
        assert batch[0, :, 0, 1].tolist() == [-10.0, -10.0, -7.5]
    else:
        assert batch.shape == (2, 112, 112, 3)
        assert batch[1, 5, 7].tolist() == want.tolist()
        assert batch[0, 0, 1].tolist() == [-10.0, -10.0, -7.5]


def test_templates_are_the_models_output_normalised(backend: OnnxBackend) -> None:
    image = pixels("two_people.jpg")
    detections = backend.detect(image)
    templates = backend.embed(image, detections)
    assert len(templates) == len(detections) == 2
    crops = backend.aligned_faces(image, detections)
    expected = reference_embedding(((np.stack(crops).astype(np.float64) - 127.5) / 127.5).transpose(0, 3, 1, 2))
    for template, want in zip(templates, expected, strict=True):
        assert template.shape == (DIM,) and template.dtype == np.float32
        assert np.linalg.norm(template) == pytest.approx(1.0, abs=1e-5)
        assert np.allclose(template, want, atol=1e-4)
    assert np.linalg.norm(templates[0] - templates[1]) > 0.1  # different faces, different templates
    assert backend.embed(image, []) == []


def test_batched_model_gives_the_same_templates(backend: OnnxBackend, tmp_path: Path) -> None:
    """A model with an open batch axis embeds all faces in one run; the results match one-by-one runs."""
    batched = load_backend(VisionConfig(model=describe(build_model(tmp_path / "b.onnx", batch="n"))))
    image = pixels("two_people.jpg")
    detections = backend.detect(image)
    one_by_one, together = backend.embed(image, detections), batched.embed(image, detections)
    assert np.allclose(np.stack(one_by_one), np.stack(together), atol=1e-5)


def test_channel_order_reaches_the_model(backend: OnnxBackend, tmp_path: Path) -> None:
    bgr = load_backend(VisionConfig(model=describe(build_model(tmp_path / "m.onnx"), channel_order="BGR")))
    image = pixels("obama.jpg")
    detections = backend.detect(image)[:1]
    assert not np.allclose(backend.embed(image, detections)[0], bgr.embed(image, detections)[0], atol=1e-3)


# -- through facetrail -------------------------------------------------------------------------
def ingest_samples(ft: Facetrail, workers: int) -> dict[str, list[np.ndarray]]:
    """Ingest INGESTED with `workers` processes; the stored templates by image SHA-256, in face order."""
    source_id = add_source(ft)
    report = ft.ingest.ingest(local_actor(), source_id, from_paths([SAMPLES / n for n in INGESTED],
                                                                      ft.input_limits), workers=workers)
    assert not report.errors, report.errors
    assert report.images_added == len(INGESTED) and report.faces_added >= 4
    with ft.db.read() as session:
        rows = session.execute(select(Face, StoredImage).join(StoredImage, Face.image_id == StoredImage.id)
                               .order_by(Face.image_id, Face.ordinal)).all()
    assert {face.model_id for face, _ in rows} == {ft.gallery.model_id}
    templates: dict[str, list[np.ndarray]] = {}
    for face, image in rows:
        templates.setdefault(image.sha256, []).append(template_of(ft, face.template))
    return templates


def test_ingest_and_search_with_the_onnx_model(model: Path, backend: OnnxBackend, tmp_path: Path) -> None:
    ft = Facetrail.open(tmp_path / "data", create=True, workers=1, model=model)
    try:
        assert ft.gallery.model_id == backend.model_id and ft.gallery.dim == DIM
        templates = ingest_samples(ft, workers=1)
        for vectors in templates.values():
            assert all(abs(np.linalg.norm(v) - 1) < 1e-5 for v in vectors)
        outcome = ft.search.search(local_actor(), sample_bytes("obama2.jpg"), purpose="demo", case_ref="case-1")
        assert outcome.results and all(0 <= hit.distance <= 2 for hit in outcome.results)
        assert (tmp_path / "data" / "index" / f"{backend.model_id}.ftindex").exists()
    finally:
        ft.close()
    # The dlib model's gallery on the same data holds none of these templates: spaces never mix. Opening it is
    # refused (every face is of the ONNX model), except to re-embed.
    with pytest.raises(ConflictError, match="index reembed.*FACETRAIL_MODEL"):
        Facetrail.open(tmp_path / "data", workers=1, vision_model="dlib")
    dlib_ft = Facetrail.open(tmp_path / "data", workers=1, vision_model="dlib", model_change=True)
    try:
        outcome = dlib_ft.search.search(local_actor(), sample_bytes("obama2.jpg"), purpose="demo", case_ref="c2")
        assert outcome.results == []
    finally:
        dlib_ft.close()


def test_worker_pool_ingestion_matches_in_process(model: Path, tmp_path: Path) -> None:
    """Worker processes rebuild the ONNX backend from the pickled config and store the same templates."""
    results = []
    for workers in (1, 2):
        ft = Facetrail.open(tmp_path / f"data{workers}", create=True, workers=workers, model=model)
        try:
            results.append(ingest_samples(ft, workers=workers))
        finally:
            ft.close()
    in_process, pooled = results
    assert in_process.keys() == pooled.keys()
    for sha, vectors in in_process.items():
        assert np.allclose(np.stack(vectors), np.stack(pooled[sha]), atol=1e-5)
