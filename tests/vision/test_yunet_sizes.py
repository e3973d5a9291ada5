"""YuNet at each photo's own size: the graph made size-free in memory, the canvas, and boxes mapped back."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
from PIL import Image

from facetrail.evaluation import pipelines
from facetrail.evaluation.pipelines import extract_templates
from facetrail.media.image import decode_image
from facetrail.vision import model_files
from facetrail.vision.backend import VisionConfig
from facetrail.vision.composite import MODEL_IDS, VisionModel
from facetrail.vision.runtimes import cpu_session
from facetrail.vision.yunet import (
    ALIGN,
    MAX_SIDE,
    MIN_SIDE,
    YUNET_N,
    YUNET_S,
    YuNetDetector,
    scaled_size,
    symbolic_sizes,
)
from tests.conftest import SAMPLES, sample_bytes

FILES = [YUNET_S.file, YUNET_N.file]


def pixels(name: str) -> np.ndarray:
    return decode_image(sample_bytes(name), max_pixels=64_000_000).pixels


def resized(image: np.ndarray, width: int, height: int) -> np.ndarray:
    return np.asarray(Image.fromarray(image).resize((width, height), Image.Resampling.BILINEAR))


def session(model: bytes) -> Any:
    return cpu_session(model, 1)


@pytest.mark.parametrize("name", FILES)
def test_the_graph_in_memory_takes_any_size_and_the_file_is_unchanged(name: str) -> None:
    path = model_files.verified(name)
    shipped = path.read_bytes()
    model = onnx.load_from_string(symbolic_sizes(shipped))
    onnx.checker.check_model(model)
    (image,) = model.graph.input
    assert [d.dim_param or d.dim_value for d in image.type.tensor_type.shape.dim] == [1, 3, "input_2", "input_3"]
    assert len(model.graph.output) == 12 and not model.graph.value_info
    for output in model.graph.output:  # (1, cells, values): the cell count is symbolic, each its own name
        dims = output.type.tensor_type.shape.dim
        assert dims[1].dim_param == f"{output.name}_1" and dims[2].dim_value in (1, 4, 10)
    assert model_files.sha256_of(path) == model_files.SHA256[name]  # the shipped file is left as it was

    original, sized = session(shipped), session(symbolic_sizes(shipped))
    canvas = np.random.default_rng(0).uniform(0, 255, (1, 3, 640, 640)).astype(np.float32)
    for a, b in zip(original.run(None, {"input": canvas}), sized.run(None, {"input": canvas}), strict=True):
        assert np.array_equal(a, b)  # at 640x640 the very same network
    names = [o.name for o in sized.get_outputs()]
    outputs = dict(zip(names, sized.run(None, {"input": canvas[:, :, :224, :320]}), strict=True))
    for stride in (8, 16, 32):  # the grid follows the canvas: 224/s rows, 320/s columns
        assert outputs[f"bbox_{stride}"].shape == (1, (224 // stride) * (320 // stride), 4)


def test_a_damaged_or_foreign_model_is_refused() -> None:
    shipped = model_files.verified(YUNET_S.file).read_bytes()
    with pytest.raises(ValueError, match="truncated"):
        symbolic_sizes(shipped[:1000])
    renamed = onnx.load_from_string(shipped)
    renamed.graph.input[0].name = "data"
    with pytest.raises(ValueError, match="no single input named 'input'"):
        symbolic_sizes(renamed.SerializeToString())


def test_photos_are_sized_within_the_limits_keeping_their_shape() -> None:
    assert (MIN_SIDE, MAX_SIDE, ALIGN) == (416, 640, 32)
    assert scaled_size(250, 250) == (416, 416)  # small photos are enlarged
    assert scaled_size(100, 50) == (416, 208)
    assert scaled_size(500, 300) == (500, 300)  # within the range: its own size
    assert scaled_size(1200, 800) == (640, 427)  # large ones are reduced
    assert scaled_size(20, 3000) == (4, 640)


def test_a_face_is_found_in_the_same_place_on_a_wider_canvas() -> None:
    """The same photo alone and with black added on its right and below (each run at its own size, on canvases
    of other shapes): the face's box and points agree, so rows and columns of the grid are decoded right."""
    photo = resized(pixels("obama.jpg"), 480, 360)
    framed = np.zeros((440, 630, 3), np.uint8)
    framed[:360, :480] = photo
    detector = YuNetDetector(YUNET_S)
    (alone,), (in_frame,) = detector.detect(photo), detector.detect(framed)
    for a, b in zip((alone.box.left, alone.box.top, alone.box.right, alone.box.bottom),
                    (in_frame.box.left, in_frame.box.top, in_frame.box.right, in_frame.box.bottom), strict=True):
        assert abs(a - b) <= 2
    for p, q in zip(alone.landmarks, in_frame.landmarks, strict=True):
        assert abs(p.x - q.x) <= 2 and abs(p.y - q.y) <= 2


def test_small_photos_keep_their_small_faces_and_min_face_px_counts_original_pixels() -> None:
    """A group photo reduced to 240 px: each of its three faces (the smallest about 15 px) is still found,
    because the photo is enlarged before detection; `min_face_px` is measured in the photo's own pixels."""
    group = pixels("obama_and_biden.jpg")
    small = resized(group, 240, round(group.shape[0] * 240 / group.shape[1]))
    found = YuNetDetector(YUNET_S, min_face_px=1).detect(small)
    assert len(found) == 3
    smallest = min(min(d.box.width, d.box.height) for d in found)
    assert smallest < 30  # in the 240 px photo's pixels, not the enlarged copy's
    assert len(YuNetDetector(YUNET_S, min_face_px=smallest).detect(small)) == 3
    assert len(YuNetDetector(YUNET_S, min_face_px=smallest + 1).detect(small)) == 2


def test_cached_templates_are_not_reused_under_another_input_policy(tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """The benchmarks' template cache names YuNet's sizing: templates made under another one are computed again,
    while dlib's, which YuNet does not touch, keep their key."""
    paths = sorted(SAMPLES / name for name in ("obama.jpg", "biden.jpg"))
    keys = [p.name for p in paths]
    config = VisionConfig(vision_model="yunet-intel")

    def run() -> set[str]:
        extract_templates("facetrail", paths, keys, config=config, model_id=MODEL_IDS[VisionModel.YUNET_INTEL],
                          workers=1, cache=tmp_path)
        return {p.name for p in tmp_path.iterdir()}

    first = run()
    assert len(first) == 1 and run() == first  # the same policy: reused
    monkeypatch.setattr(pipelines, "INPUT_POLICY", "max640-min640-align32")
    assert len(run()) == 2  # another policy: computed and cached apart
    dlib_config, dlib_cache = VisionConfig(vision_model="dlib"), tmp_path / "dlib"
    extract_templates("facetrail", [], [], config=dlib_config, model_id="dlib-resnet-v1", workers=1, cache=dlib_cache)
    before = {p.name for p in dlib_cache.iterdir()}
    monkeypatch.setattr(pipelines, "INPUT_POLICY", "another")
    extract_templates("facetrail", [], [], config=dlib_config, model_id="dlib-resnet-v1", workers=1, cache=dlib_cache)
    assert len(before) == 1 and {p.name for p in dlib_cache.iterdir()} == before
