"""The items of an ingestion batch: files, folders (recursive), zip archives and uploads.

Nothing is extracted to disk: zip members are read into memory under size limits, so a member
named `../../etc/passwd` is only ever a label. Enumeration never fails the batch; what cannot be
read becomes an item whose `error` says why, and a file found in a folder or archive that is not an
image is an item whose `skipped` says why, so that nothing is left out silently.
"""

from __future__ import annotations

import io
import os
import zipfile
import zlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from functools import partial
from pathlib import Path
from typing import IO

from facetrail.errors import MediaError

Opener = Callable[[], IO[bytes]]

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".jpe", ".png", ".webp", ".gif", ".bmp", ".tif", ".tiff", ".mpo"})
VIDEO_SUFFIXES = frozenset({".mp4", ".m4v", ".mov", ".avi", ".mkv", ".webm", ".mpg", ".mpeg", ".wmv", ".3gp",
                            ".mts", ".m2ts", ".flv", ".ogv"})


@dataclass(frozen=True)
class Limits:
    max_file_bytes: int
    max_zip_member_bytes: int
    max_zip_members: int


@dataclass(frozen=True)
class Origin:
    """Where a fetched item's bytes came from: the URL that answered (after any redirect) and when."""

    url: str
    fetched_at: datetime


@dataclass
class InputItem:
    """One candidate image or video: `name` is its original path (or archive!member, or listed URL), `read` returns its
    bytes. `error` says why it cannot be read; `skipped` why it is not an image to ingest (a video, a text file);
    `origin`, set when an item of a URL-list source is read, where and when it was fetched."""

    name: str
    read: Callable[[], bytes]
    error: str | None = None
    skipped: str | None = None
    origin: Origin | None = None


def skip_reason(suffix: str) -> str:
    """Why a file with this suffix, found in a folder or an archive, is not ingested."""
    return f"not an image or video file type ({suffix or 'no suffix'})"


def from_paths(paths: Iterable[Path], limits: Limits) -> Iterator[InputItem]:
    """Items for files, folders (recursively; other files than images are skipped items) and zip archives, in
    sorted order."""
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
                    elif suffix in IMAGE_SUFFIXES or suffix in VIDEO_SUFFIXES:
                        yield _file_item(child, limits)
                    else:
                        yield InputItem(str(child), _nothing, skipped=skip_reason(suffix))
        elif path.suffix.lower() == ".zip" or _looks_like_zip(path):
            yield from _zip_items(str(path), partial(_open_binary, path), limits)
        else:
            # A file named explicitly is tried whatever its suffix: the decoder decides.
            yield _file_item(path, limits)


def count_items(paths: Iterable[Path], limits: Limits) -> int:
    """How many items `from_paths` yields for these paths (a progress total), walking them without holding any."""
    return sum(1 for _ in from_paths(paths, limits))


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


def _zip_items(label: str, opener: Opener, limits: Limits) -> Iterator[InputItem]:
    try:
        with opener() as fh, zipfile.ZipFile(fh) as archive:
            members = [m for m in archive.infolist() if not m.is_dir()]
    except (OSError, zipfile.BadZipFile, ValueError) as exc:
        yield InputItem(label, _nothing, error=f"unreadable zip archive: {exc}")
        return
    if len(members) > limits.max_zip_members:
        yield InputItem(label, _nothing, error=f"zip archive has {len(members)} members; the limit is "
                        f"{limits.max_zip_members} per archive (FACETRAIL_MAX_ZIP_MEMBERS): split it")
        return
    wanted = []
    for member in members:
        name = f"{label}!{member.filename}"
        suffix = Path(member.filename).suffix.lower()
        if suffix == ".zip":
            # Not expanded (nesting is how zip bombs multiply), but not silently dropped either.
            yield InputItem(name, _nothing, error="nested zip archive not expanded (extract it and ingest it on "
                            "its own)")
        elif suffix in IMAGE_SUFFIXES or suffix in VIDEO_SUFFIXES:
            wanted.append(member)
        else:
            yield InputItem(name, _nothing, skipped=skip_reason(suffix))
    shared = _SharedArchive(opener, len(wanted))
    for member in wanted:
        yield InputItem(f"{label}!{member.filename}", partial(shared.read, member, limits.max_zip_member_bytes))


class _SharedArchive:
    """One zip archive, opened once for all its members and closed after the last one is read.

    Opening a zip parses its whole central directory, so opening it again for each member made an archive of
    n members cost n^2. It is opened on the first read (not while listing: a folder of many archives holds one
    open at a time, as members are read in order) and read member by member through the same handle."""

    def __init__(self, opener: Opener, members: int) -> None:
        self._opener = opener
        self._unread = members
        self._file: IO[bytes] | None = None
        self._archive: zipfile.ZipFile | None = None

    def read(self, member: zipfile.ZipInfo, limit: int) -> bytes:
        try:
            if self._archive is None:
                self._file = self._opener()
                self._archive = zipfile.ZipFile(self._file)
            with self._archive.open(member) as stream:
                # Read at most one byte past the limit: a zip bomb's declared size may lie.
                data = stream.read(limit + 1)
        except (OSError, zipfile.BadZipFile, ValueError, RuntimeError, EOFError, NotImplementedError,
                zlib.error) as exc:
            raise MediaError(f"cannot read archive member: {exc}") from exc
        finally:
            self._unread -= 1
            if self._unread <= 0:
                self.close()
        if len(data) > limit:
            raise MediaError(f"archive member larger than {limit} bytes (zip bomb?)")
        return data

    def close(self) -> None:
        archive, handle, self._archive, self._file = self._archive, self._file, None, None
        if archive is not None:
            archive.close()
        if handle is not None:
            handle.close()


def is_video_name(name: str) -> bool:
    """Whether the item's name (a path, archive!member or URL) has a video suffix."""
    return Path(name.split("?", 1)[0]).suffix.lower() in VIDEO_SUFFIXES
