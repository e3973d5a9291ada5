"""The items of an ingestion batch: files, folders (recursive), zip archives and uploads.

Nothing is extracted to disk: zip members are read into memory under size limits, so a member
named `../../etc/passwd` is only ever a label. Enumeration never fails the batch; what cannot be
read becomes an item whose `error` says why.
"""

from __future__ import annotations

import io
import os
import zipfile
import zlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import IO

from facetrail.errors import MediaError

Opener = Callable[[], IO[bytes]]

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".jpe", ".png", ".webp", ".gif", ".bmp", ".tif", ".tiff", ".mpo"})


@dataclass(frozen=True)
class Limits:
    max_file_bytes: int
    max_zip_member_bytes: int
    max_zip_members: int


@dataclass
class InputItem:
    """One candidate image: `name` is its original path (or archive!member), `read` returns its bytes."""

    name: str
    read: Callable[[], bytes]
    error: str | None = None


def from_paths(paths: Iterable[Path], limits: Limits) -> Iterator[InputItem]:
    """Items for files, folders (recursively, image suffixes only) and zip archives, in sorted order."""
    for path in paths:
        if not path.exists():
            yield InputItem(str(path), _nothing, error="no such file or folder")
        elif path.is_dir():
            for root, dirs, files in os.walk(path):
                dirs.sort()
                for name in sorted(files):
                    child = Path(root) / name
                    suffix = child.suffix.lower()
                    if suffix == ".zip":
                        yield from _zip_items(str(child), partial(_open_binary, child), limits)
                    elif suffix in IMAGE_SUFFIXES:
                        yield _file_item(child, limits)
        elif path.suffix.lower() == ".zip" or _looks_like_zip(path):
            yield from _zip_items(str(path), partial(_open_binary, path), limits)
        else:
            # A file named explicitly is tried whatever its suffix: the decoder decides.
            yield _file_item(path, limits)


def from_upload(name: str, data: bytes, limits: Limits) -> Iterator[InputItem]:
    """Items for one uploaded file, expanding a zip archive into its members."""
    if data[:4] == b"PK\x03\x04":
        yield from _zip_items(name, partial(io.BytesIO, data), limits)
    else:
        yield InputItem(name, lambda: data)


def _open_binary(path: Path) -> IO[bytes]:
    return path.open("rb")


def _nothing() -> bytes:
    return b""


def _file_item(path: Path, limits: Limits) -> InputItem:
    def read() -> bytes:
        size = path.stat().st_size
        if size > limits.max_file_bytes:
            raise MediaError(f"file too large ({size} bytes; the limit is {limits.max_file_bytes})")
        with path.open("rb") as fh:
            return fh.read(limits.max_file_bytes + 1)

    return InputItem(str(path), read)


def _looks_like_zip(path: Path) -> bool:
    try:
        with path.open("rb") as fh:
            return fh.read(4) == b"PK\x03\x04"
    except OSError:
        return False


def _zip_items(label: str, opener: Opener,
               limits: Limits) -> Iterator[InputItem]:
    try:
        with opener() as fh, zipfile.ZipFile(fh) as archive:
            members = [m for m in archive.infolist() if not m.is_dir()]
    except (OSError, zipfile.BadZipFile, ValueError) as exc:
        yield InputItem(label, _nothing, error=f"unreadable zip archive: {exc}")
        return
    if len(members) > limits.max_zip_members:
        yield InputItem(label, _nothing, error=f"zip archive has {len(members)} members; "
                        f"the limit is {limits.max_zip_members}")
        return
    for member in members:
        suffix = Path(member.filename).suffix.lower()
        if suffix == ".zip":
            # Not expanded (nesting is how zip bombs multiply), but not silently dropped either.
            yield InputItem(f"{label}!{member.filename}", _nothing,
                            error="nested zip archive not expanded (extract it and ingest it on its own)")
            continue
        if suffix not in IMAGE_SUFFIXES:
            continue
        yield InputItem(f"{label}!{member.filename}", _member_reader(opener, member.filename, limits))


def _member_reader(opener: Opener, member: str,
                   limits: Limits) -> Callable[[], bytes]:
    def read() -> bytes:
        try:
            with opener() as fh, zipfile.ZipFile(fh) as archive, archive.open(member) as stream:
                # Read at most one byte past the limit: a zip bomb's declared size may lie.
                data = stream.read(limits.max_zip_member_bytes + 1)
        except (OSError, zipfile.BadZipFile, ValueError, RuntimeError, EOFError, NotImplementedError,
                zlib.error) as exc:
            raise MediaError(f"cannot read archive member: {exc}") from exc
        if len(data) > limits.max_zip_member_bytes:
            raise MediaError(f"archive member larger than {limits.max_zip_member_bytes} bytes (zip bomb?)")
        return data

    return read
