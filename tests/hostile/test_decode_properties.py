"""Property: whatever the bytes, decode_image returns an RGB uint8 array or raises MediaError, nothing else."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from facetrail.errors import MediaError
from facetrail.media.image import decode_image
from tests.hostile.corpus import small_image

LIMIT = 4_000_000
SEEDS = {fmt: small_image(fmt, (24, 16)) for fmt in ("JPEG", "PNG", "GIF", "WEBP", "TIFF", "BMP")}
BOUNDED = settings(max_examples=300, deadline=5000, database=None, suppress_health_check=[HealthCheck.too_slow])


def decodes_or_refuses(data: bytes) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Pillow warns about corrupt EXIF while it recovers; not our concern here
        try:
            image = decode_image(data, max_pixels=LIMIT)
        except MediaError as exc:
            assert str(exc).strip()
            return
    pixels = image.pixels
    assert isinstance(pixels, np.ndarray) and pixels.dtype == np.uint8
    assert pixels.ndim == 3 and pixels.shape[2] == 3 and pixels.shape[0] > 0 and pixels.shape[1] > 0
    assert pixels.shape[0] * pixels.shape[1] <= LIMIT


@BOUNDED
@given(st.binary(max_size=4096))
def test_arbitrary_bytes(data: bytes) -> None:
    decodes_or_refuses(data)


@BOUNDED
@given(st.sampled_from(sorted(SEEDS)), st.binary(max_size=64))
def test_known_magic_with_arbitrary_tail(fmt: str, tail: bytes) -> None:
    decodes_or_refuses(SEEDS[fmt][:16] + tail)


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    data = bytearray(SEEDS[draw(st.sampled_from(sorted(SEEDS)))])
    for _ in range(draw(st.integers(1, 8))):
        position = draw(st.integers(0, len(data) - 1))
        data[position] = draw(st.integers(0, 255))
    if draw(st.booleans()):
        data = data[: draw(st.integers(0, len(data)))]
    return bytes(data)


@BOUNDED
@given(mutated())
def test_mutated_valid_images(data: bytes) -> None:
    decodes_or_refuses(data)


@pytest.mark.parametrize("fmt", sorted(SEEDS))
def test_seeds_decode(fmt: str) -> None:
    assert decode_image(SEEDS[fmt], max_pixels=LIMIT).pixels.shape == (16, 24, 3)
