"""Face alignment for embedding models: a similarity transform from landmarks to a template, and the warp.

Coordinates are pixels of the image they refer to, x to the right and y down, with the centre of pixel (i, j)
at (i, j): the convention of dlib's landmarks and of the published alignment templates (which were made with
OpenCV's warpAffine). Matrices are 2x3 and map column vectors (x, y, 1) of the source image to the target.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from numpy.typing import NDArray
from PIL import Image

from facetrail.errors import InvalidValueError
from facetrail.vision.types import Point

Points = NDArray[np.float64]
"""An (n, 2) array of (x, y) pixel positions."""

ARCFACE_TEMPLATE_112: tuple[tuple[float, float], ...] = (
    (38.2946, 51.6963),  # eye centre on the image's left (the person's right eye)
    (73.5318, 51.5014),  # eye centre on the image's right
    (56.0252, 71.7366),  # nose tip
    (41.5493, 92.3655),  # mouth corner on the image's left
    (70.7299, 92.2041),  # mouth corner on the image's right
)
"""The five-point template of insightface's ArcFace models, in pixels of a 112x112 crop, in the order above."""

# The 68-point annotation (iBUG 300-W) as dlib's predictor numbers it, zero-based.
_LEFT_EYE = slice(36, 42)  # the eye on the image's left
_RIGHT_EYE = slice(42, 48)
_NOSE_TIP = 30
_MOUTH_LEFT = 48
_MOUTH_RIGHT = 54


def five_points_from_68(points: Sequence[Point]) -> Points:
    """The template's five points from a 68-point shape: eye centres (mean of each eye's six contour points),
    nose tip, mouth corners; in ARCFACE_TEMPLATE_112's order, as a (5, 2) array."""
    if len(points) != 68:
        raise ValueError(f"expected 68 landmarks, got {len(points)}")
    xy = np.array([(p.x, p.y) for p in points], dtype=np.float64)
    return np.stack([xy[_LEFT_EYE].mean(axis=0), xy[_RIGHT_EYE].mean(axis=0),
                     xy[_NOSE_TIP], xy[_MOUTH_LEFT], xy[_MOUTH_RIGHT]])


def similarity_transform(source: Points, target: Points) -> NDArray[np.float64]:
    """The rotation, uniform scale and translation (no reflection, no shear) that maps `source` points onto
    `target` points with the least squared error (Umeyama, 1991), as a 2x3 matrix.

    A similarity keeps the face's proportions: the template fixes where the face goes, not its shape, so a
    wide mouth stays wide instead of being squeezed onto the template's mouth corners.
    """
    src = np.asarray(source, dtype=np.float64)
    dst = np.asarray(target, dtype=np.float64)
    if src.shape != dst.shape or src.ndim != 2 or src.shape[1] != 2 or len(src) < 2:
        raise ValueError(f"need two matching (n >= 2, 2) point arrays, got {src.shape} and {dst.shape}")
    src_mean, dst_mean = src.mean(axis=0), dst.mean(axis=0)
    src_c, dst_c = src - src_mean, dst - dst_mean
    src_var = float((src_c**2).sum() / len(src))
    if src_var < 1e-12:
        raise ValueError("the source points coincide; no transform is defined")
    u, s, vt = np.linalg.svd(dst_c.T @ src_c / len(src))
    # Flip the weakest axis when the best orthogonal fit would be a mirror image: a face is never mirrored.
    d = np.diag([1.0, -1.0 if np.linalg.det(u) * np.linalg.det(vt) < 0 else 1.0])
    rotation = u @ d @ vt
    scale = float(np.trace(np.diag(s) @ d)) / src_var
    translation = dst_mean - scale * rotation @ src_mean
    return np.hstack([scale * rotation, translation[:, None]])


def apply_transform(matrix: NDArray[np.float64], points: Points) -> Points:
    """`points` (n, 2) mapped by a 2x3 matrix."""
    pts = np.asarray(points, dtype=np.float64)
    return pts @ matrix[:, :2].T + matrix[:, 2]


def warp_affine(pixels: Image.Image | NDArray[np.uint8], matrix: NDArray[np.float64],
                size: tuple[int, int]) -> NDArray[np.uint8]:
    """The (height, width, 3) crop of `size` (width, height) that `matrix` (source -> crop) maps the image onto.

    Bilinear sampling; what falls outside the source is black (as in the published alignment code). Pass a
    PIL image to warp several faces of one photo without converting it each time.
    """
    image = pixels if isinstance(pixels, Image.Image) else Image.fromarray(np.ascontiguousarray(pixels))
    full = np.vstack([matrix, [0.0, 0.0, 1.0]])
    try:
        inverse = np.linalg.inv(full)[:2]
    except np.linalg.LinAlgError:
        raise ValueError("the transform is singular") from None
    # Pillow samples the source at inverse(x + 0.5, y + 0.5) in a frame where pixel i's centre sits at i + 0.5;
    # shift by half a pixel on both sides so pixel centres map exactly as in the matrix's own convention.
    a = inverse[:, :2]
    offset = inverse[:, 2] - a @ np.array([0.5, 0.5]) + 0.5
    data = (a[0, 0], a[0, 1], offset[0], a[1, 0], a[1, 1], offset[1])
    warped = image.transform(size, Image.Transform.AFFINE, data, resample=Image.Resampling.BILINEAR)
    return np.asarray(warped, dtype=np.uint8)


def template_points(raw: object, size: tuple[int, int]) -> Points:
    """A template given as five [x, y] pairs in pixels of a crop of `size` (width, height), validated."""
    if not isinstance(raw, list | tuple) or len(raw) != 5:
        raise InvalidValueError("template", "must be a list of 5 [x, y] points")
    points = []
    for i, point in enumerate(raw):
        if (not isinstance(point, list | tuple) or len(point) != 2
                or not all(isinstance(v, int | float) and not isinstance(v, bool) for v in point)):
            raise InvalidValueError("template", f"point {i} must be [x, y], two numbers")
        x, y = float(point[0]), float(point[1])
        if not (0 <= x <= size[0] - 1 and 0 <= y <= size[1] - 1):
            raise InvalidValueError("template", f"point {i} ({x}, {y}) lies outside the {size[0]}x{size[1]} input")
        points.append((x, y))
    array = np.array(points, dtype=np.float64)
    if float(((array - array.mean(axis=0)) ** 2).sum()) < 1.0:
        raise InvalidValueError("template", "the points coincide")
    return array
