"""Decode untrusted image bytes into an upright 8-bit RGB array, or fail with a clear MediaError.

Every Pillow mode is mapped to RGB by meaning, not by truncation: alpha is composited on white,
16-bit and 32-bit greyscale are scaled down (not clipped), CMYK and palettes are converted, and
only the first frame of an animation is used. EXIF orientation is applied.
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray
from PIL import ExifTags, Image, ImageOps, UnidentifiedImageError

from facetrail.errors import MediaError

RGBArray = NDArray[np.uint8]

SUPPORTED_FORMATS = frozenset({"JPEG", "PNG", "WEBP", "GIF", "BMP", "TIFF", "MPO"})


@dataclass(frozen=True)
class DecodedImage:
    """An upright RGB image: `pixels` has shape (height, width, 3) and dtype uint8."""

    pixels: RGBArray
    format: str

    @property
    def width(self) -> int:
        return int(self.pixels.shape[1])

    @property
    def height(self) -> int:
        return int(self.pixels.shape[0])


def decode_image(data: bytes, *, max_pixels: int) -> DecodedImage:
    """Decode `data`; raise MediaError naming the cause for anything that is not a sound image."""
    if not data:
        raise MediaError("empty file (0 bytes)")
    with warnings.catch_warnings():
        # Pillow only warns between max_pixels and 2x; we treat the warning as the error it is.
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            return _decode(data, max_pixels)
        except MediaError:
            raise
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
            raise MediaError(f"decompression bomb refused: {exc}") from exc
        except UnidentifiedImageError as exc:
            raise MediaError("not an image, or an unsupported format") from exc
        except (OSError, SyntaxError, ValueError, EOFError) as exc:
            # Pillow reports truncation and corruption as OSError/SyntaxError/ValueError.
            raise MediaError(f"corrupt or truncated image: {exc}") from exc
        except MemoryError as exc:
            raise MediaError("image too large to decode") from exc


def _decode(data: bytes, max_pixels: int) -> DecodedImage:
    # Pillow checks this module-level limit while opening; every caller passes the configured value.
    Image.MAX_IMAGE_PIXELS = max_pixels
    with Image.open(io.BytesIO(data)) as img:
        fmt = img.format or "unknown"
        if fmt not in SUPPORTED_FORMATS:
            raise MediaError(f"unsupported image format {fmt}")
        width, height = img.size
        if width <= 0 or height <= 0:
            raise MediaError("image has no pixels")
        if width * height > max_pixels:
            raise MediaError(
                f"decompression bomb refused: {width}x{height} exceeds {max_pixels} pixels"
            )
        img.seek(0)  # first frame of an animation
        img.load()
        upright = _apply_orientation(img)
        rgb = to_rgb(upright)
        pixels = np.asarray(rgb, dtype=np.uint8)
    if pixels.ndim != 3 or pixels.shape[2] != 3:
        raise MediaError(f"unexpected decoded shape {pixels.shape}")
    return DecodedImage(pixels=np.ascontiguousarray(pixels), format=fmt)


TURNS = frozenset(range(2, 9))
"""The EXIF orientations that turn or mirror a photo (1 is upright; any other value means nothing)."""


def _apply_orientation(img: Image.Image) -> Image.Image:
    """`img` turned upright. A photo that needs no turn is returned as it is (Pillow would copy it). One whose EXIF
    cannot be read, or cannot be rewritten after the turn, is returned as it is too: the same frame as it has always
    been decoded to, which the faces' stored boxes (erasure's redaction, access requests' crops) refer to."""
    try:
        if img.getexif().get(ExifTags.Base.Orientation, 1) not in TURNS:
            return img
        return ImageOps.exif_transpose(img)
    except Exception:  # malformed EXIF must not cost us the picture itself
        return img


def to_rgb(img: Image.Image) -> Image.Image:
    """Convert any Pillow mode to 8-bit RGB by meaning (see module doc)."""
    mode = img.mode
    if mode == "RGB":
        return img
    if mode in ("I;16", "I;16L", "I;16B", "I;16N", "I", "F"):
        return _high_depth_to_rgb(img)
    if mode == "P":
        img = img.convert("RGBA") if "transparency" in img.info else img.convert("RGB")
        mode = img.mode
    if mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return img.convert("RGB")


def _high_depth_to_rgb(img: Image.Image) -> Image.Image:
    values = np.asarray(img, dtype=np.float64)
    if img.mode.startswith("I;16"):
        scaled = values / 257.0
    else:
        low, high = float(np.nanmin(values)), float(np.nanmax(values))
        if high <= 255 and low >= 0:
            scaled = values
        elif high > low:
            scaled = (values - low) * (255.0 / (high - low))
        else:
            scaled = np.zeros_like(values)
    grey = np.clip(np.nan_to_num(scaled), 0, 255).astype(np.uint8)
    return Image.fromarray(grey).convert("RGB")


def encode_jpeg(pixels: RGBArray, *, quality: int = 85) -> bytes:
    """Encode an RGB array as JPEG bytes (used for face crops)."""
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, format="JPEG", quality=quality)
    return out.getvalue()
