"""The YuNet pipelines (YuNet + dlib, YuNet + Intel) on the real sample photos, and the shipped model files."""

from __future__ import annotations

import shutil
import threading
from pathlib import Path

import numpy as np
import pytest

from facetrail.config import get_settings
from facetrail.errors import InvalidValueError, ModelUnavailableError
from facetrail.ingest import photo
from facetrail.ingest.analysis import vision_config
from facetrail.media.image import decode_image
from facetrail.vision import VisionBackend, VisionConfig, intel_reid, load_backend, model_files
from facetrail.vision.backend import analyses_in_threads
from facetrail.vision.composite import MODEL_IDS, VisionModel, YuNetDlibBackend, YuNetIntelBackend
from facetrail.vision.pipeline import analyze_faces
from facetrail.vision.runtimes import openvino
from facetrail.vision.yunet import YUNET_S, YuNetDetector
from tests.conftest import labelled_people, sample_bytes

PIPELINES = ["yunet-dlib", "yunet-intel", "yunet-n-intel"]
_loaded: dict[str, VisionBackend] = {}


def backend(name: str) -> VisionBackend:
    if name not in _loaded:
        _loaded[name] = load_backend(VisionConfig(vision_model=name))
    return _loaded[name]


def pixels(name: str) -> np.ndarray:
    return decode_image(sample_bytes(name), max_pixels=64_000_000).pixels


def test_each_name_loads_its_own_pipeline_and_template_space() -> None:
    assert isinstance(backend("yunet-dlib"), YuNetDlibBackend)
    assert isinstance(backend("yunet-intel"), YuNetIntelBackend)
    dlib = load_backend(VisionConfig(vision_model="dlib"))
    ids = {backend(n).model_id for n in PIPELINES} | {dlib.model_id}
    assert len(ids) == 4 and ids == set(MODEL_IDS.values())
    assert load_backend().model_id == MODEL_IDS[VisionModel.YUNET_INTEL]  # the default
    assert backend("yunet-dlib").template_dim == 128 and backend("yunet-intel").template_dim == 256
    with pytest.raises(InvalidValueError, match="unknown vision model 'arcface'"):
        load_backend(VisionConfig(vision_model="arcface"))
    with pytest.raises(InvalidValueError, match="ONNX embedding model goes with vision_model 'dlib'"):
        load_backend(VisionConfig(vision_model="yunet-intel", model=Path("model.onnx")))


def test_the_default_is_yunet_intel_and_an_onnx_model_selects_dlib(monkeypatch: pytest.MonkeyPatch) -> None:
    """An ONNX embedder runs behind dlib's detector: set alone, it selects the dlib pipeline; with another
    pipeline named, loading the backend is refused (above)."""
    for name in ("FACETRAIL_VISION_MODEL", "FACETRAIL_MODEL"):
        monkeypatch.delenv(name, raising=False)
    assert get_settings().vision_model == "yunet-intel" and vision_config(get_settings()).vision_model == "yunet-intel"
    assert get_settings(model=Path("m.onnx")).vision_model == "dlib"
    monkeypatch.setenv("FACETRAIL_MODEL", "m.onnx")
    assert get_settings().vision_model == "dlib"
    monkeypatch.setenv("FACETRAIL_VISION_MODEL", "yunet-intel")
    assert get_settings().vision_model == "yunet-intel"
    with pytest.raises(InvalidValueError, match="ONNX embedding model goes with vision_model 'dlib'"):
        load_backend(vision_config(get_settings()))


@pytest.mark.parametrize("pipeline", PIPELINES)
def test_every_labelled_face_is_found_and_nothing_else(pipeline: str) -> None:
    for name, people in sorted(labelled_people().items()):
        found = backend(pipeline).detect(pixels(name))
        # obama_and_biden.jpg also shows a child bystander, whom labelled_people leaves out.
        extra = 1 if name == "obama_and_biden.jpg" else 0
        assert len(found) == len(people) + extra, f"{pipeline} on {name}: {len(found)} faces for {people}"
        for det in found:
            assert len(det.landmarks) == 5 and det.box.area > 0
            inside = [det.box.left - 1 <= p.x <= det.box.right + 1 and det.box.top - 1 <= p.y <= det.box.bottom + 1
                      for p in det.landmarks]
            assert sum(inside) >= 4, f"{pipeline} on {name}: landmarks {det.landmarks} far outside {det.box}"


@pytest.mark.parametrize("pipeline", PIPELINES)
def test_same_person_is_closer_than_different_people(pipeline: str) -> None:
    b = backend(pipeline)

    def template(name: str) -> np.ndarray:
        img = pixels(name)
        faces = analyze_faces(b, img, with_crops=False)
        assert faces, name
        vector = faces[0].template
        assert vector.shape == (b.template_dim,) and vector.dtype == np.float32 and np.all(np.isfinite(vector))
        return vector

    obama = [template(n) for n in ("obama.jpg", "obama2.jpg", "obama3.jpg")]
    others = [template(n) for n in ("biden.jpg", "kit_harington1.jpeg", "rose_leslie1.jpg")]
    same = max(float(np.linalg.norm(a - b)) for i, a in enumerate(obama) for b in obama[i + 1:])
    different = min(float(np.linalg.norm(a - b)) for a in obama for b in others)
    assert same < different, f"{pipeline}: same person up to {same:.3f}, different people from {different:.3f}"
    calibration = b.calibration()
    if calibration is not None:  # shipped with the benchmark: the same person is in a band, strangers are not
        assert calibration.model_id == b.model_id
        assert calibration.band(same).value != "none" and calibration.band(different).value == "none"


def test_yunet_points_are_eyes_nose_mouth_in_image_order() -> None:
    det = YuNetDetector(YUNET_S).detect(pixels("obama.jpg"))[0]
    left_eye, right_eye, nose, mouth_left, mouth_right = det.landmarks
    assert det.landmark_layout == "yunet5"
    assert left_eye.x < nose.x < right_eye.x and mouth_left.x < mouth_right.x
    assert max(left_eye.y, right_eye.y) < nose.y < min(mouth_left.y, mouth_right.y)


def test_detection_maps_back_from_the_scaled_copy() -> None:
    """The same face in a photo and in its 3x and 8x smaller copies: boxes agree after scaling (the photo is
    detected on a copy reduced to 640 px, the 3x smaller one at its own 640 px, the 8x smaller one, 240 px wide,
    on a copy enlarged to 416 px)."""
    big = pixels("obama-1080p.jpg")
    from PIL import Image

    detector = YuNetDetector(YUNET_S)
    a = detector.detect(big)[0].box
    for factor in (3, 8):
        small = np.asarray(Image.fromarray(big).resize((big.shape[1] // factor, big.shape[0] // factor)))
        b = detector.detect(small)[0].box
        for big_edge, small_edge in ((a.left, b.left), (a.top, b.top), (a.right, b.right), (a.bottom, b.bottom)):
            assert abs(big_edge - factor * small_edge) <= 0.05 * a.width
    assert a.right <= big.shape[1] and a.bottom <= big.shape[0]


@pytest.mark.parametrize("pipeline", PIPELINES)
def test_no_face_in_blank_or_tiny_images(pipeline: str) -> None:
    for image in (np.zeros((480, 640, 3), np.uint8), np.full((1, 1, 3), 255, np.uint8),
                  np.zeros((3000, 20, 3), np.uint8)):
        assert backend(pipeline).detect(image) == []
    assert backend(pipeline).embed(np.zeros((10, 10, 3), np.uint8), []) == []


def test_the_recogniser_compiled_without_snippets_gives_the_same_templates() -> None:
    """The compile options that make the recogniser load faster change no template (the bands were calibrated on
    templates computed with OpenVINO's defaults)."""
    faces = [(img, backend("yunet-intel").detect(img)) for img in map(pixels, ("obama.jpg", "two_people.jpg",
                                                                              "kit_with_rose.jpg"))]
    shipped = intel_reid.IntelReidEmbedder()
    defaults = intel_reid.IntelReidEmbedder()
    core = openvino().Core()
    model = core.read_model(str(model_files.verified(intel_reid.MODEL_XML)),
                            str(model_files.verified(intel_reid.MODEL_BIN)))
    options = {k: v for k, v in intel_reid.COMPILE_OPTIONS.items() if k != "SNIPPETS_MODE"}
    defaults._request = core.compile_model(model, "CPU", {**options, "INFERENCE_NUM_THREADS": 1}).create_infer_request()
    ours = np.stack([t for img, detections in faces for t in shipped.embed(img, detections)])
    theirs = np.stack([t for img, detections in faces for t in defaults.embed(img, detections)])
    assert len(ours) == 5 and np.array_equal(ours, theirs)


def test_the_recogniser_in_bf16_and_in_f32_gives_templates_that_mix() -> None:
    """OpenVINO computes in bf16 where the CPU has it (AVX512-BF16, AMX), in f32 elsewhere, and the precision is left
    to it: one collection may hold templates of both. They must stay as close as on LFW (View 2's 7,701 faces:
    0.018 apart at the median, 0.035 at most, the same accuracy and false-match rates at the bands), far inside
    the bands' steps (about 0.08)."""
    faces = [(img, backend("yunet-intel").detect(img)) for img in map(pixels, ("obama.jpg", "two_people.jpg",
                                                                              "kit_with_rose.jpg", "biden.jpg"))]
    shipped, f32 = intel_reid.IntelReidEmbedder(), intel_reid.IntelReidEmbedder()
    core = openvino().Core()
    model = core.read_model(str(model_files.verified(intel_reid.MODEL_XML)),
                            str(model_files.verified(intel_reid.MODEL_BIN)))
    f32._request = core.compile_model(model, "CPU", {**intel_reid.COMPILE_OPTIONS, "INFERENCE_NUM_THREADS": 1,
                                                     "INFERENCE_PRECISION_HINT": "f32"}).create_infer_request()
    ours = np.stack([t for img, detections in faces for t in shipped.embed(img, detections)])
    exact = np.stack([t for img, detections in faces for t in f32.embed(img, detections)])
    assert len(ours) == 6 and float(np.linalg.norm(ours - exact, axis=1).max()) < 0.05
    between = np.linalg.norm(ours[:, None] - exact[None], axis=2) - np.linalg.norm(exact[:, None] - exact[None], axis=2)
    assert float(np.abs(between).max()) < 0.05  # a template of one precision against the other's, as in a search


def test_intel_refuses_dlib_landmarks() -> None:
    img = pixels("obama.jpg")
    dlib_detection = load_backend(VisionConfig(vision_model="dlib")).detect(img)[0]
    with pytest.raises(InvalidValueError, match="aligns on YuNet's five points"):
        backend("yunet-intel").embed(img, [dlib_detection])


def test_shipped_files_match_their_checksums_and_licences_ship_beside_them() -> None:
    for name, digest in model_files.SHA256.items():
        assert model_files.sha256_of(model_files.MODELS / name) == digest
    shipped = {p.name for p in model_files.MODELS.iterdir()}
    assert {"PROVENANCE.md", "LICENSE.opencv_zoo.yunet.MIT.txt", "LICENSE.libfacedetection.train.txt",
            "LICENSE.open_model_zoo.Apache-2.0.txt"} <= shipped


@pytest.mark.parametrize("name", ["face_detection_yunet_2023mar.onnx", "face-reidentification-retail-0095.bin"])
def test_a_changed_model_file_is_refused(name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = tmp_path / "models"
    shutil.copytree(model_files.MODELS, folder)
    damaged = bytearray((folder / name).read_bytes())
    damaged[len(damaged) // 2] ^= 0x01
    (folder / name).write_bytes(bytes(damaged))
    monkeypatch.setattr(model_files, "MODELS", folder)
    fresh = YuNetIntelBackend(VisionModel.YUNET_INTEL)  # nothing loaded yet
    with pytest.raises(ModelUnavailableError, match=f"{name} has SHA-256 .* it was changed or damaged"):
        fresh.embed(pixels("obama.jpg"), fresh.detect(pixels("obama.jpg")))
    (folder / name).unlink()
    with pytest.raises(ModelUnavailableError, match="is missing"):
        model_files.verified(name)
    with pytest.raises(InvalidValueError, match="not a model file facetrail ships"):
        model_files.verified("other.onnx")


def test_pose_from_yunet_points_agrees_with_dlib() -> None:
    """The live check reads the head's turn (yaw) from the landmarks: YuNet's points (eye centres, nose tip)
    must give the same reading as dlib's (eye corners, nose base) on the same faces."""
    for name in ("obama.jpg", "kit_harington1.jpeg", "rose_leslie2.jpg", "alex_lacamoire1.jpg"):
        img = pixels(name)
        dlib_yaw = analyze_faces(load_backend(), img, with_crops=False)[0].quality.yaw
        yunet_yaw = analyze_faces(backend("yunet-intel"), img, with_crops=False)[0].quality.yaw
        assert abs(dlib_yaw - yunet_yaw) < 0.25, f"{name}: dlib {dlib_yaw}, YuNet {yunet_yaw}"


def test_only_the_pipelines_that_compute_outside_the_gil_analyse_in_threads() -> None:
    assert analyses_in_threads(VisionConfig())  # the default, yunet-intel
    assert analyses_in_threads(VisionConfig(vision_model="yunet-n-intel"))
    assert not analyses_in_threads(VisionConfig(vision_model="dlib"))
    assert not analyses_in_threads(VisionConfig(vision_model="yunet-dlib"))


def test_threads_of_a_vision_process_give_the_results_of_one_thread(monkeypatch: pytest.MonkeyPatch) -> None:
    """A vision process analyses a chunk of images on several threads, each with its own backend: the faces and
    templates are those of one thread, image by image, and a bad image is that image's error alone."""
    config = VisionConfig()
    images = [sample_bytes(name) for name in ("obama.jpg", "two_people.jpg", "biden.jpg", "kit_harington1.jpeg")]
    images.insert(2, b"not an image")
    monkeypatch.setattr(photo, "_WorkerState", type("State", (), {"config": None, "threads": None,
                                                                  "local": threading.local()}))
    photo.init_worker(config, threads=3)
    together = photo.analyze_many(photo.analyze_in_worker, images)
    alone = [photo.analyze_photo(load_backend(config), config, data) for data in images if data != b"not an image"]
    assert isinstance(together.pop(2), Exception)
    for one, other in zip(together, alone, strict=True):
        assert isinstance(one, photo.ImageAnalysis)
        assert [f.detection.box for f in one.faces] == [f.detection.box for f in other.faces]
        for a, b in zip(one.faces, other.faces, strict=True):
            np.testing.assert_allclose(a.template, b.template, atol=1e-5)


FIRST_USE_IN_TWO_THREADS = """
import sys, threading
from facetrail.media.image import decode_image
from facetrail.vision import VisionConfig, load_backend
from facetrail.vision import intel_reid
from facetrail.vision.pipeline import analyze_faces
from facetrail.vision.runtimes import openvino
pixels = decode_image(open(sys.argv[1], "rb").read(), max_pixels=50_000_000).pixels
start, found = threading.Barrier(2), []
def analyse():
    backend = load_backend(VisionConfig(vision_model="yunet-intel"))
    start.wait()
    found.append(len(analyze_faces(backend, pixels, with_crops=False)))
threads = [threading.Thread(target=analyse, daemon=True) for _ in range(2)]
for t in threads:
    t.start()
for t in threads:
    t.join(60)
print(found, intel_reid._bindings_primed)
"""


def test_two_threads_first_use_of_the_recogniser_at_once_in_a_fresh_process() -> None:
    """The vision process's two threads reach the recogniser's first inference together: OpenVINO's numpy bindings
    are set up once, by one thread (their set-up from two at once deadlocked about one ingestion in fifty)."""
    import subprocess
    import sys

    from tests.conftest import SAMPLES

    done = subprocess.run([sys.executable, "-c", FIRST_USE_IN_TWO_THREADS, str(SAMPLES / "obama.jpg")],
                          capture_output=True, text=True, timeout=120)
    assert done.stdout.split() == ["[1,", "1]", "True"], done.stdout + done.stderr[-2000:]
