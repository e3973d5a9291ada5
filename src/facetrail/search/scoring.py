"""From template distance to the 0-100 score shown to staff.

dlib templates are compared by Euclidean distance: 0 for identical faces; dlib's authors put the
same-person threshold at 0.6. The score is linear in distance: score = 100 * (1 - d / 1.2),
clipped to 0..100, so d = 0.6 scores 50 and anything at d >= 1.2 scores 0. Higher = more similar.
"""

from __future__ import annotations

MAX_DISTANCE = 1.2


def score_from_distance(distance: float) -> float:
    return round(100.0 * max(0.0, min(1.0, 1.0 - distance / MAX_DISTANCE)), 1)
