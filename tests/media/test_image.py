"""Safe decoding: every mode to correct RGB, and a clear MediaError for every kind of bad input."""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image, ImageOps

from facetrail.errors import MediaError
from facetrail.media.image import decode_image
from tests.conftest import sample_bytes

LIMIT = 64_000_000


def encode(img: Image.Image, fmt: str, **kwargs: object) -> bytes:
    out = io.BytesIO()
    img.save(out, format=fmt, **kwargs)
    return out.getvalue()


def test_jpeg_sample_decodes_to_rgb() -> None:
    image = decode_image(sample_bytes("obama.jpg"), max_pixels=LIMIT)
    assert image.pixels.dtype == np.uint8 and image.pixels.shape == (image.height, image.width, 3)
    assert image.format == "JPEG"


def test_32bit_png_alpha_is_composited_on_white() -> None:
    rgba = Image.new("RGBA", (4, 4), (255, 0, 0, 0))  # fully transparent red
    pixels = decode_image(encode(rgba, "PNG"), max_pixels=LIMIT).pixels
    assert (pixels == 255).all()
    image = decode_image(sample_bytes("32bit.png"), max_pixels=LIMIT)
    assert image.pixels.shape[2] == 3


def test_palette_with_transparency() -> None:
    img = Image.new("P", (4, 4), 0)
    img.putpalette([0, 0, 255] + [0] * 765)
    pixels = decode_image(encode(img, "PNG", transparency=0), max_pixels=LIMIT).pixels
    assert (pixels == 255).all()
    opaque = decode_image(encode(img, "PNG"), max_pixels=LIMIT).pixels
    assert tuple(opaque[0, 0]) == (0, 0, 255)


def test_cmyk_jpeg_converts() -> None:
    img = Image.new("CMYK", (8, 8), (0, 255, 255, 0))  # red in CMYK
    pixels = decode_image(encode(img, "JPEG"), max_pixels=LIMIT).pixels
    assert pixels[4, 4, 0] > 200 and pixels[4, 4, 1] < 60


def test_16bit_greyscale_is_scaled_not_clipped() -> None:
    values = np.full((4, 4), 32768, dtype=np.uint16)
    img = Image.fromarray(values)
    pixels = decode_image(encode(img, "PNG"), max_pixels=LIMIT).pixels
    assert 120 <= int(pixels[0, 0, 0]) <= 135


@pytest.mark.parametrize("mode", ["L", "1", "LA", "I", "F"])
def test_other_modes(mode: str) -> None:
    img = Image.new(mode, (5, 3))
    fmt = "TIFF" if mode in ("I", "F") else "PNG"
    image = decode_image(encode(img, fmt), max_pixels=LIMIT)
    assert image.pixels.shape == (3, 5, 3)


@pytest.mark.parametrize("fmt", ["WEBP", "BMP", "TIFF", "GIF"])
def test_other_formats(fmt: str) -> None:
    img = Image.new("RGB", (6, 4), (10, 200, 30))
    assert decode_image(encode(img, fmt), max_pixels=LIMIT).pixels.shape == (4, 6, 3)


def test_animation_uses_first_frame() -> None:
    frames = [Image.new("RGB", (4, 4), c) for c in ((255, 0, 0), (0, 0, 255))]
    data = encode(frames[0], "GIF", save_all=True, append_images=frames[1:])
    pixels = decode_image(data, max_pixels=LIMIT).pixels
    assert pixels[0, 0, 0] > 200 and pixels[0, 0, 2] < 50


def test_exif_orientation_is_applied() -> None:
    img = Image.new("RGB", (20, 10), (0, 0, 0))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise on display
    image = decode_image(encode(img, "JPEG", exif=exif.tobytes()), max_pixels=LIMIT)
    assert (image.width, image.height) == (10, 20)


@pytest.mark.parametrize("orientation", range(1, 9))
def test_each_exif_orientation_gives_the_upright_pixels(orientation: int) -> None:
    """The turn is made in place (no copy of an upright photo), with the same pixels as Pillow's own turn."""
    ys, xs = np.mgrid[0:6, 0:10]
    img = Image.fromarray(np.stack([xs * 25, ys * 40, xs * ys * 4], axis=-1).astype(np.uint8))  # no symmetry
    exif = Image.Exif()
    exif[0x0112] = orientation
    data = encode(img, "PNG", exif=exif.tobytes())  # lossless, so the pixels can be compared exactly
    expected = np.asarray(ImageOps.exif_transpose(Image.open(io.BytesIO(data))).convert("RGB"))
    pixels = decode_image(data, max_pixels=LIMIT).pixels
    assert pixels.shape == ((6, 10, 3) if orientation <= 4 else (10, 6, 3))
    np.testing.assert_array_equal(pixels, expected)
    if orientation != 1:
        assert pixels.shape != (6, 10, 3) or not np.array_equal(pixels, np.asarray(img))  # turned


# An EXIF block whose orientation (6) reads, but whose other tags cannot be written back once the photo is turned
# (one of a few byte flips in a valid block): Pillow turns the photo, then fails.
UNWRITABLE_EXIF = bytes.fromhex(
    "4578696600004d4d002a000000080006010f0002000000060000005601240002000000060000005c0112000300000001000600"
    "00011a0005000000010000006201310002000000037377000087690004000000010000006a000000004d616b6572004d6f6465"
    "6c0000000048000000010002900300020000001400000088920a0005000000010000009c00000000323032303a30313a303120"
    "30303a30303a3030000000003200000001")


def test_exif_that_cannot_be_rewritten_leaves_the_photo_as_it_always_decoded() -> None:
    """The frame decoded must not change between versions: stored face boxes (erasure's redaction, access requests'
    crops) refer to it."""
    img = Image.fromarray(np.arange(6 * 10 * 3, dtype=np.uint8).reshape(6, 10, 3))
    data = encode(img, "PNG", exif=UNWRITABLE_EXIF)
    with pytest.raises(Exception):  # noqa: B017, PT011 - whatever Pillow raises for it
        ImageOps.exif_transpose(Image.open(io.BytesIO(data)))
    np.testing.assert_array_equal(decode_image(data, max_pixels=LIMIT).pixels, np.asarray(img))


def test_malformed_exif_keeps_the_picture() -> None:
    img = Image.new("RGB", (8, 8), (1, 2, 3))
    data = encode(img, "JPEG", exif=b"Exif\x00\x00MM\x00*\x00\x00\x00\x08\xff\xff")
    assert decode_image(data, max_pixels=LIMIT).pixels.shape == (8, 8, 3)


def test_empty_file() -> None:
    with pytest.raises(MediaError, match="empty"):
        decode_image(b"", max_pixels=LIMIT)


def test_not_an_image() -> None:
    with pytest.raises(MediaError, match="not an image"):
        decode_image(b"%PDF-1.4 this is no photo", max_pixels=LIMIT)


def test_truncated_jpeg() -> None:
    data = sample_bytes("obama.jpg")
    with pytest.raises(MediaError, match="corrupt or truncated"):
        decode_image(data[: len(data) // 3], max_pixels=LIMIT)


def test_corrupt_png() -> None:
    data = bytearray(encode(Image.new("RGB", (64, 64), (9, 9, 9)), "PNG"))
    data[60:80] = b"\x00" * 20
    with pytest.raises(MediaError):
        decode_image(bytes(data), max_pixels=LIMIT)


def png_bomb(width: int, height: int) -> bytes:
    """A tiny PNG whose header claims a huge canvas (the pixels are a few compressed bytes)."""
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    raw = zlib.compress(b"\x00" * 1024)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", raw) + chunk(b"IEND", b"")


@pytest.mark.parametrize("size", [(9000, 9000), (50_000, 50_000)])
def test_decompression_bomb_is_refused(size: tuple[int, int]) -> None:
    with pytest.raises(MediaError, match="decompression bomb"):
        decode_image(png_bomb(*size), max_pixels=LIMIT)


def test_unsupported_format_is_named() -> None:
    data = encode(Image.new("RGB", (4, 4)), "ICO")
    with pytest.raises(MediaError, match="unsupported image format ICO"):
        decode_image(data, max_pixels=LIMIT)
