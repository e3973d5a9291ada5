"""Where something is in a decoded image: rectangles in pixels of the upright image (see image.py)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Box:
    """A rectangle in pixels of an upright image (a face's, once detected): [left, right) x [top, bottom)."""

    left: int
    top: int
    right: int
    bottom: int

    @property
    def width(self) -> int:
        return self.right - self.left

    @property
    def height(self) -> int:
        return self.bottom - self.top

    @property
    def area(self) -> int:
        return max(0, self.width) * max(0, self.height)

    def clipped(self, width: int, height: int) -> Box:
        """This box limited to an image of the given size."""
        return Box(
            left=max(0, min(self.left, width)),
            top=max(0, min(self.top, height)),
            right=max(0, min(self.right, width)),
            bottom=max(0, min(self.bottom, height)),
        )

    def expanded(self, factor: float) -> Box:
        """This box grown by `factor` of its size on every side (0.25 adds a quarter each way)."""
        dx, dy = round(self.width * factor), round(self.height * factor)
        return Box(self.left - dx, self.top - dy, self.right + dx, self.bottom + dy)

    def as_dict(self) -> dict[str, int]:
        return {"left": self.left, "top": self.top, "right": self.right, "bottom": self.bottom}
