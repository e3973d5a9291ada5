"""The blob store: sealed blobs kept by a BlobStorage (the data directory's files by default)."""

from __future__ import annotations

from pathlib import Path

import pytest

from facetrail.errors import KeyUnavailableError
from facetrail.runtime import Facetrail
from facetrail.store.blobs import BlobStore, DirectoryStorage


def test_blobs_are_sealed_files_under_their_kind(ft: Facetrail) -> None:
    blobs = ft.blobs
    key = blobs.put("crops/ab-1.jpg", b"crop pixels", ft.vault.new_key("face"))
    path = blobs.root / "crops" / "ab" / "ab-1.jpg"
    assert isinstance(blobs.storage, DirectoryStorage) and blobs.storage.path(key) == path
    assert path.is_file() and b"crop pixels" not in path.read_bytes() and blobs.raw(key) == path.read_bytes()
    assert path.stat().st_mode & 0o077 == 0
    assert blobs.get(key) == b"crop pixels" and blobs.exists(key)
    assert ft.vault.keyring.existing([blobs.key_id(key)])
    assert not list(path.parent.glob(".*"))  # no temporary file left beside it


def test_a_shredded_blob_is_gone_with_its_key(blob_ft: Facetrail) -> None:
    """On either storage (tests/store/conftest.py: the data directory, a bucket)."""
    ft = blob_ft
    blobs = ft.blobs
    key = blobs.put("packages/p1.zip", b"package", ft.vault.new_key("package"))
    sealed = blobs.raw(key)
    assert sealed is not None
    key_id = blobs.key_id(key)
    blobs.shred(key)
    assert not blobs.exists(key) and blobs.raw(key) is None
    assert ft.vault.keyring.existing([key_id]) == set()
    with pytest.raises(KeyUnavailableError):  # a copy of the file taken before opens with nothing
        ft.vault.open("packages", sealed)
    blobs.shred(key)  # shredding again is not an error
    blobs.delete(key)


def test_a_missing_blob_and_a_bad_key_are_errors(ft: Facetrail, tmp_path: Path) -> None:
    blobs = BlobStore(tmp_path / "blobs", ft.vault)
    with pytest.raises(FileNotFoundError, match="crops/none.jpg"):
        blobs.get("crops/none.jpg")
    with pytest.raises(FileNotFoundError):
        blobs.key_id("crops/none.jpg")
    for bad in ("../etc/passwd", "crops/../../x", "Crops/x", "crops/a/b", ""):
        with pytest.raises(ValueError, match="invalid blob key"):
            blobs.put(bad, b"x", ft.vault.new_key("face"))
        with pytest.raises(ValueError, match="invalid blob key"):
            blobs.raw(bad)
    assert not any(p.is_file() for p in (tmp_path / "blobs").rglob("*"))
