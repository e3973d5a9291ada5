"""The dlib backend on the real sample photos."""

from __future__ import annotations

import numpy as np
import pytest

from facetrail.errors import InvalidValueError
from facetrail.media.image import decode_image
from facetrail.vision import VisionConfig, load_backend
from facetrail.vision.dlib_backend import DlibBackend, upsample_times
from facetrail.vision.pipeline import analyze_faces
from tests.conftest import labelled_people, sample_bytes


@pytest.fixture(scope="module")
def backend() -> DlibBackend:
    b = load_backend(VisionConfig(vision_model="dlib"))
    assert isinstance(b, DlibBackend)
    return b


def pixels(name: str) -> np.ndarray:
    return decode_image(sample_bytes(name), max_pixels=64_000_000).pixels


@pytest.mark.parametrize("name,people", sorted(labelled_people().items()))
def test_every_labelled_face_is_detected(backend: DlibBackend, name: str, people: list[str]) -> None:
    found = backend.detect(pixels(name))
    assert len(found) >= len(people), f"{name}: {len(found)} faces for {people}"
    for det in found:
        assert len(det.landmarks) == 5
        assert det.box.width > 0 and det.box.height > 0


def test_group_photos(backend: DlibBackend) -> None:
    assert len(backend.detect(pixels("two_people.jpg"))) == 2
    assert len(backend.detect(pixels("obama_and_biden.jpg"))) >= 2


def test_faces_come_largest_first_with_templates(backend: DlibBackend) -> None:
    faces = analyze_faces(backend, pixels("kit_with_rose.jpg"))
    areas = [f.detection.box.area for f in faces]
    assert areas == sorted(areas, reverse=True)
    for face in faces:
        assert face.template.shape == (128,) and face.template.dtype == np.float32
        assert face.crop_jpeg[:2] == b"\xff\xd8"
        assert face.quality.size_px >= 40 and face.quality.sharpness > 0


def test_same_person_is_closer_than_different_people(backend: DlibBackend) -> None:
    def template(name: str) -> np.ndarray:
        img = pixels(name)
        return backend.embed(img, backend.detect(img)[:1])[0]

    obama_a, obama_b, biden = template("obama.jpg"), template("obama2.jpg"), template("biden.jpg")
    assert np.linalg.norm(obama_a - obama_b) < 0.6 < np.linalg.norm(obama_a - biden)


def test_no_face_in_a_blank_image(backend: DlibBackend) -> None:
    assert backend.detect(np.full((300, 300, 3), 128, dtype=np.uint8)) == []
    assert backend.embed(np.zeros((10, 10, 3), dtype=np.uint8), []) == []


def test_upsampling_policy_small_photos_more_large_none() -> None:
    assert upsample_times(250, 250, budget_pixels=4_000_000, max_upsample=2) == 2
    assert upsample_times(640, 480, budget_pixels=4_000_000, max_upsample=2) == 1
    assert upsample_times(1920, 1080, budget_pixels=4_000_000, max_upsample=2) == 0
    assert upsample_times(100, 100, budget_pixels=4_000_000, max_upsample=1) == 1


def test_small_face_in_large_photo_is_found_by_upsampling(backend: DlibBackend) -> None:
    """A 60 px face pasted in a 700x700 canvas needs one upsampling (the HOG window is 80 px)."""
    from PIL import Image

    face = Image.fromarray(pixels("obama_small.jpg")).resize((107, 80))
    canvas = Image.new("RGB", (700, 700), (128, 128, 128))
    canvas.paste(face.resize((80, 60)), (300, 300))
    assert len(backend.detect(np.asarray(canvas))) == 1


def test_unknown_detector_is_rejected() -> None:
    with pytest.raises(InvalidValueError, match="detector"):
        load_backend(VisionConfig(detector="haar", vision_model="dlib"))


def test_cnn_detector_is_selectable() -> None:
    cnn = load_backend(VisionConfig(detector="cnn", max_upsample=0, vision_model="dlib"))
    found = cnn.detect(pixels("obama_small.jpg"))
    assert len(found) == 1 and found[0].detector == "cnn"
    assert cnn.embed(pixels("obama_small.jpg"), found)[0].shape == (128,)


def test_fallback_finds_a_face_the_first_pass_misses() -> None:
    """A face too small for the budgeted upsampling is found by the fallback passes, and not without them."""
    from PIL import Image

    small = Image.fromarray(pixels("obama_small.jpg")).resize((120, 90))
    canvas = np.asarray(Image.new("RGB", (1100, 1000), (128, 128, 128)))
    canvas = canvas.copy()
    canvas[400:490, 500:620] = np.asarray(small)
    strict = load_backend(VisionConfig(detector_fallback=False, vision_model="dlib"))
    assert strict.detect(canvas) == []
    found = load_backend(VisionConfig(detector_fallback=True, vision_model="dlib")).detect(canvas)
    assert len(found) == 1


def test_threads_analysing_at_once_get_the_serial_results() -> None:
    """The server analyses queries in many threads at once: dlib's models keep state, so each thread must get a
    set of its own (sharing one corrupted the heap). Results must equal a serial run, bit for bit."""
    from concurrent.futures import ThreadPoolExecutor

    shared = DlibBackend()
    names = ["obama.jpg", "biden.jpg", "two_people.jpg", "kit_harington3.jpg", "obama_small.jpg", "rose_leslie1.jpg"]
    images = {n: pixels(n) for n in names}

    def analyse(name: str) -> list[tuple[tuple[int, int, int, int], bytes]]:
        faces = analyze_faces(shared, images[name], with_crops=False)
        return [(tuple(f.detection.box.as_dict().values()), f.template.tobytes()) for f in faces]  # type: ignore[misc]

    serial = {n: analyse(n) for n in names}
    with ThreadPoolExecutor(6) as pool:
        for _ in range(3):
            assert dict(zip(names * 2, pool.map(analyse, names * 2), strict=True)) == serial
