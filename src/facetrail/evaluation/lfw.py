"""Labeled Faces in the Wild: image paths and the View 1 / View 2 pair protocols."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Pair:
    a: str  # image key "Name/Name_0001"
    b: str
    same: bool
    fold: int


def image_key(name: str, number: int) -> str:
    return f"{name}/{name}_{number:04d}"


def image_path(root: Path, key: str) -> Path:
    return root / "images" / f"{key}.jpg"


def identity(key: str) -> str:
    return key.split("/", 1)[0]


def read_pairs(path: Path) -> list[Pair]:
    """Pairs of a View 1 file (header: N; N same then N different) or View 2 (header: folds N; per fold
    N same then N different). Folds are numbered from 0; View 1 files are one fold."""
    lines = [line.split() for line in path.read_text().splitlines() if line.strip()]
    header = [int(v) for v in lines[0]]
    folds, per = (header[0], header[1]) if len(header) == 2 else (1, header[0])
    pairs: list[Pair] = []
    for i, fields in enumerate(lines[1:]):
        fold = i // (2 * per)
        if len(fields) == 3:
            pairs.append(Pair(image_key(fields[0], int(fields[1])), image_key(fields[0], int(fields[2])), True, fold))
        elif len(fields) == 4:
            pairs.append(Pair(image_key(fields[0], int(fields[1])), image_key(fields[2], int(fields[3])), False, fold))
        else:
            raise ValueError(f"{path}:{i + 2}: not a pair line")
    if len(pairs) != folds * 2 * per:
        raise ValueError(f"{path}: expected {folds * 2 * per} pairs, read {len(pairs)}")
    return pairs


def all_images(root: Path) -> list[str]:
    """Every image key of the data set, sorted by person then number."""
    return sorted(f"{p.parent.name}/{p.stem}" for p in (root / "images").glob("*/*.jpg"))


def pair_images(pairs: list[Pair]) -> list[str]:
    return sorted({key for pair in pairs for key in (pair.a, pair.b)})
