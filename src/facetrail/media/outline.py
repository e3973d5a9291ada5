"""A stored image with one face outlined: what an investigator opens from a search result."""

from __future__ import annotations

from PIL import Image, ImageDraw

from facetrail.media.geometry import Box
from facetrail.media.image import decode_image
from facetrail.media.redact import encode

OUTLINE = (255, 196, 0)  # amber: visible on skin, sky and dark backgrounds alike


def outline_face(data: bytes, box: Box, *, max_pixels: int) -> bytes:
    """The image (decoded upright, as its boxes were measured) as a JPEG with `box` outlined, the line's width
    in proportion to the image. Raises MediaError if the bytes no longer decode."""
    image = Image.fromarray(decode_image(data, max_pixels=max_pixels).pixels)
    width = max(2, round(max(image.size) / 250))
    region = box.clipped(image.width, image.height)
    ImageDraw.Draw(image).rectangle((region.left, region.top, region.right - 1, region.bottom - 1),
                                    outline=OUTLINE, width=width)
    return encode(image)
