"""Vector indexes over face templates: one interface, true deletion, rebuildable from the store."""

from facetrail.index.base import Hit, VectorIndex
from facetrail.index.faiss_index import FaissIndex

__all__ = ["FaissIndex", "Hit", "VectorIndex"]
