"""Vector indexes over face templates: one interface, true deletion, rebuildable from the store."""

from facetrail.index.base import Hit, IndexStore, VectorIndex

__all__ = ["Hit", "IndexStore", "VectorIndex"]
