"""A corpus of hostile inputs, generated in memory (no binary file is committed).

Each entry is a function returning (file name, bytes). `MALFORMED` must each be refused with one clear error;
`TOLERATED` are hostile but decodable (a polyglot's image part, an image with broken EXIF): they are read as the
image they are and nothing else (their other content is never interpreted).
"""

from __future__ import annotations

import io
import struct
import zipfile
import zlib
from collections.abc import Callable

import numpy as np
from PIL import Image

Entry = Callable[[], tuple[str, bytes]]


def small_image(fmt: str, size: tuple[int, int] = (64, 48), **save: object) -> bytes:
    """A small noisy RGB picture in `fmt` (noise so that the compressed data has some length)."""
    rng = np.random.default_rng(7)
    pixels = rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, format=fmt, **save)
    return out.getvalue()


def _png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def _zip(members: dict[str, bytes], compression: int = zipfile.ZIP_DEFLATED) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", compression=compression) as zf:
        for name, data in members.items():
            zf.writestr(zipfile.ZipInfo(name), data, compress_type=compression)
    return out.getvalue()


# --- truncated and corrupt files -------------------------------------------------------------------------------

def truncated_jpeg() -> tuple[str, bytes]:
    data = small_image("JPEG")
    return "truncated.jpg", data[: len(data) // 2]


def corrupt_jpeg() -> tuple[str, bytes]:
    data = small_image("JPEG")
    # Keep the SOI marker, wreck the tables and frame header after it.
    return "corrupt.jpg", data[:2] + b"\xff\xdb\x00\x05\x99" + bytes(range(256)) * 4 + data[600:]


def truncated_png() -> tuple[str, bytes]:
    data = small_image("PNG")
    return "truncated.png", data[: len(data) // 2]


def corrupt_png() -> tuple[str, bytes]:
    data = bytearray(small_image("PNG"))
    start = data.index(b"IDAT") + 8
    data[start:start + 64] = bytes(64)  # the zlib stream is broken (and the chunk CRC no longer matches)
    return "corrupt.png", bytes(data)


def truncated_gif() -> tuple[str, bytes]:
    data = small_image("GIF")
    return "truncated.gif", data[:20]


def corrupt_gif() -> tuple[str, bytes]:
    data = small_image("GIF")
    return "corrupt.gif", data[:13] + b"\x2c" + b"\xff" * 9 + b"\x00" * 40


def truncated_tiff() -> tuple[str, bytes]:
    data = small_image("TIFF")
    return "truncated.tiff", data[: len(data) // 3]


def corrupt_tiff() -> tuple[str, bytes]:
    # A header whose first IFD lies past the end of the file.
    return "corrupt.tif", b"II*\x00" + struct.pack("<I", 0x7FFFFFF0) + b"\x00" * 32


def truncated_webp() -> tuple[str, bytes]:
    data = small_image("WEBP")
    return "truncated.webp", data[: len(data) // 2]


def corrupt_webp() -> tuple[str, bytes]:
    data = small_image("WEBP")
    return "corrupt.webp", data[:20] + b"\xde\xad\xbe\xef" * 16 + data[84:]


# --- decompression bombs and huge dimensions --------------------------------------------------------------------

def png_bomb() -> tuple[str, bytes]:
    header = struct.pack(">IIBBBBB", 100_000, 100_000, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\x00" * 1024 * 1024, 9)
    return "bomb.png", (b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", header) + _png_chunk(b"IDAT", idat)
                        + _png_chunk(b"IEND", b""))


def png_just_over_limit() -> tuple[str, bytes]:
    # Between the limit and twice it, where Pillow only warns: 9000 x 9000 = 81M > 64M pixels.
    header = struct.pack(">IIBBBBB", 9000, 9000, 8, 0, 0, 0, 0)
    return "over-limit.png", (b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", header)
                              + _png_chunk(b"IDAT", zlib.compress(b"\x00" * 4096)) + _png_chunk(b"IEND", b""))


def gif_bomb() -> tuple[str, bytes]:
    screen = b"GIF89a" + struct.pack("<HHBBB", 65535, 65535, 0, 0, 0)
    frame = b"\x2c" + struct.pack("<HHHHB", 0, 0, 65535, 65535, 0) + b"\x08" + b"\x02\x4c\x01\x00" + b"\x3b"
    return "bomb.gif", screen + frame


def tiff_bomb() -> tuple[str, bytes]:
    entries = [  # tag, type (3 short, 4 long), count, value
        (256, 4, 1, 100_000), (257, 4, 1, 100_000), (258, 3, 1, 8), (259, 3, 1, 1), (262, 3, 1, 1),
        (273, 4, 1, 8 + 2 + 12 * 8 + 4), (278, 4, 1, 100_000), (279, 4, 1, 16),
    ]
    ifd = struct.pack("<H", len(entries))
    for tag, kind, count, value in entries:
        ifd += struct.pack("<HHII", tag, kind, count, value) if kind == 4 else \
            struct.pack("<HHIHH", tag, kind, count, value, 0)
    return "bomb.tiff", b"II*\x00" + struct.pack("<I", 8) + ifd + b"\x00\x00\x00\x00" + b"\x00" * 16


def webp_bomb() -> tuple[str, bytes]:
    # An extended (VP8X) header claiming a 16384 x 16384 canvas, with a tiny lossless bitstream after it.
    vp8x = b"VP8X" + struct.pack("<I", 10) + b"\x00\x00\x00\x00" + (16383).to_bytes(3, "little") * 2
    inner = small_image("WEBP", (8, 8), lossless=True)[12:]
    body = b"WEBP" + vp8x + inner
    return "bomb.webp", b"RIFF" + struct.pack("<I", len(body)) + body


def jpeg_huge_dimensions() -> tuple[str, bytes]:
    data = bytearray(small_image("JPEG"))
    sof = data.index(b"\xff\xc0")
    data[sof + 5:sof + 9] = struct.pack(">HH", 65500, 65500)  # height, width
    return "huge.jpg", bytes(data)


# --- polyglots, malformed metadata, wrong container -------------------------------------------------------------

def html_with_gif_header() -> tuple[str, bytes]:
    return "polyglot.gif", (b"GIF89a/*<html><body><script>alert(document.domain)</script></body></html>*/"
                            b"=1;alert(1);")


def mp4_as_image() -> tuple[str, bytes]:
    ftyp = struct.pack(">I", 24) + b"ftypisom" + struct.pack(">I", 512) + b"isomiso2"
    moov = struct.pack(">I", 0x7FFFFFFF) + b"moov" + b"\x00" * 64  # a box claiming 2 GiB
    return "clip.jpg", ftyp + moov


def jpeg_with_zip_appended() -> tuple[str, bytes]:
    return "jpeg-zip-polyglot.jpg", small_image("JPEG") + _zip({"payload.jpg": b"not really\n"})


def malformed_exif() -> tuple[str, bytes]:
    # Orientation tag with a wrong type and a count that runs off the segment; offsets pointing nowhere.
    tiff = (b"MM\x00*" + struct.pack(">I", 8) + struct.pack(">H", 3)
            + struct.pack(">HHII", 0x0112, 7, 0xFFFFFF, 0xFFFFFFF0)
            + struct.pack(">HHII", 0x8769, 4, 1, 0x7FFFFFFF)
            + struct.pack(">HHII", 0x8825, 4, 1, 2) + b"\xff\xff\xff\xff")
    return "bad-exif.jpg", small_image("JPEG", exif=b"Exif\x00\x00" + tiff)


# --- archives --------------------------------------------------------------------------------------------------

def zip_bomb() -> tuple[str, bytes]:
    return "zip-bomb.zip", _zip({"huge.jpg": b"\x00" * 64 * 1024 * 1024})


def nested_zip(depth: int = 12) -> tuple[str, bytes]:
    data = _zip({"core.jpg": b"\x00" * 1024 * 1024})
    for level in range(depth):
        data = _zip({f"level{level}.zip": data})
    return "nested.zip", data


def zip_traversal() -> tuple[str, bytes]:
    return "traversal.zip", _zip({"../../escaped.jpg": b"\xff\xd8\xff not an image"})


def zip_absolute_path() -> tuple[str, bytes]:
    return "absolute.zip", _zip({"/tmp/facetrail-absolute.jpg": b"\x89PNG\r\n\x1a\n garbage"})


MALFORMED: list[Entry] = [
    truncated_jpeg, corrupt_jpeg, truncated_png, corrupt_png, truncated_gif, corrupt_gif, truncated_tiff,
    corrupt_tiff, truncated_webp, corrupt_webp, png_bomb, png_just_over_limit, gif_bomb, tiff_bomb, webp_bomb,
    jpeg_huge_dimensions, html_with_gif_header, mp4_as_image, zip_bomb, nested_zip, zip_traversal,
    zip_absolute_path,
]
TOLERATED: list[Entry] = [jpeg_with_zip_appended, malformed_exif]
ARCHIVES = {"zip-bomb.zip", "nested.zip", "traversal.zip", "absolute.zip"}


def corpus() -> list[tuple[str, bytes]]:
    return [entry() for entry in MALFORMED + TOLERATED]
