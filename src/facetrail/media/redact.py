"""Hiding faces in pictures: irreversibly, for erasure and for other people's faces in an access package.

A region is first reduced to a coarse mosaic (8 cells across), then blurred: the result keeps the scene
readable but holds no detail a face could be recovered or recognised from. `fill` blacks regions out.
"""

from __future__ import annotations

import io
from collections.abc import Sequence

from PIL import Image, ImageDraw, ImageFilter

from facetrail.media.geometry import Box

MOSAIC_CELLS = 8
MARGIN = 0.2


def hide_regions(image: Image.Image, boxes: Sequence[Box], *, fill: bool = False) -> Image.Image:
    """A copy of `image` (RGB) with every box, grown by a margin, mosaicked and blurred (or blacked out)."""
    out = image.convert("RGB").copy()
    draw = ImageDraw.Draw(out)
    for box in boxes:
        region = box.expanded(MARGIN).clipped(out.width, out.height)
        if region.width < 1 or region.height < 1:
            continue
        if fill:
            draw.rectangle((region.left, region.top, region.right - 1, region.bottom - 1), fill=(0, 0, 0))
            continue
        area = (region.left, region.top, region.right, region.bottom)
        patch = out.crop(area)
        cells = (max(1, min(MOSAIC_CELLS, patch.width)), max(1, min(MOSAIC_CELLS, patch.height)))
        mosaic = patch.resize(cells, Image.Resampling.BOX).resize(patch.size, Image.Resampling.NEAREST)
        out.paste(mosaic.filter(ImageFilter.GaussianBlur(max(2, region.width // 16))), area)
    return out


def encode(image: Image.Image, fmt: str = "JPEG") -> bytes:
    """Re-encode without any metadata (no EXIF, no embedded thumbnail that could still show a face)."""
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, quality=90) if fmt == "JPEG" else image.save(buffer, format=fmt)
    return buffer.getvalue()


def redact_image_bytes(data: bytes, boxes: Sequence[Box], *, source_format: str, max_pixels: int,
                       fill: bool) -> bytes:
    """Decode stored image bytes (upright, as their boxes were measured), hide the boxes and re-encode:
    JPEG stays JPEG, everything else becomes PNG. Raises MediaError if the bytes no longer decode."""
    from facetrail.media.image import decode_image

    pixels = decode_image(data, max_pixels=max_pixels).pixels
    hidden = hide_regions(Image.fromarray(pixels), boxes, fill=fill)
    return encode(hidden, "JPEG" if source_format in ("JPEG", "MPO") else "PNG")
