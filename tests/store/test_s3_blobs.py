"""Blobs on S3-compatible object storage (store/s3.py), tested against moto's S3 server run locally on loopback
(tests/store/conftest.py). moto emulates the S3 API; it is not AWS S3, and what AWS or another S3-compatible
service does beyond that emulation (consistency under load, versioning, lifecycle rules) is not tested here."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from facetrail.accounts.roles import Actor
from facetrail.backup.archive import create_backup
from facetrail.backup.restore import restore_backup
from facetrail.errors import ConflictError, InvalidValueError, KeyUnavailableError
from facetrail.runtime import Facetrail
from facetrail.sources.inputs import from_paths
from facetrail.store.blobs import BlobStorage, DirectoryStorage
from facetrail.store.s3 import BlobStorageError, S3Storage, parse_blob_url
from tests.conftest import SAMPLES, add_source
from tests.rights.biden import BIDEN_PHOTOS, files_holding, find_biden, stored_faces
from tests.store.conftest import S3Server, free_port


@pytest.fixture(params=["directory", "s3"])
def storage(request: pytest.FixtureRequest, tmp_path: Path) -> BlobStorage:
    """Each storage in turn: the data directory's folder, and a bucket on the test server."""
    if request.param == "directory":
        return DirectoryStorage(tmp_path / "blobs")
    server: S3Server = request.getfixturevalue("s3_server")
    return server.storage(request.getfixturevalue("bucket"))


@pytest.fixture
def s3_ft(s3_server: S3Server, bucket: str, tmp_path: Path) -> Iterator[Facetrail]:
    """An empty Facetrail whose blobs are kept in `bucket`."""
    instance = Facetrail.open(tmp_path / "data", create=True, workers=1, **s3_server.settings(bucket))
    yield instance
    instance.close()


def local_blob_files(ft: Facetrail) -> list[Path]:
    """Files in the data directory's blobs folder (none when the blobs are in a bucket)."""
    return [p for p in (ft.data / "blobs").rglob("*") if p.is_file()]


def test_each_storage_writes_reads_replaces_and_deletes(storage: BlobStorage) -> None:
    assert storage.read("crops/ab-1.jpg") is None and not storage.exists("crops/ab-1.jpg")
    storage.write("crops/ab-1.jpg", b"first version of the blob")
    assert storage.exists("crops/ab-1.jpg") and not storage.exists("crops/ab-2.jpg")
    assert storage.read("crops/ab-1.jpg") == b"first version of the blob"
    assert storage.read("crops/ab-1.jpg", 5) == b"first"
    assert storage.read("crops/ab-1.jpg", 1000) == b"first version of the blob"  # a size past the end: all of it
    storage.write("crops/ab-1.jpg", b"second")  # replaced whole, nothing of the longer first version left
    assert storage.read("crops/ab-1.jpg") == b"second"
    storage.write("images/ab-1.jpg", b"same name, other kind")
    assert storage.read("images/ab-1.jpg") == b"same name, other kind"
    storage.delete("crops/ab-1.jpg")
    assert storage.read("crops/ab-1.jpg") is None and not storage.exists("crops/ab-1.jpg")
    assert storage.read("crops/ab-1.jpg", 64) is None
    storage.delete("crops/ab-1.jpg")  # deleting what is not there is no error
    assert storage.read("images/ab-1.jpg") == b"same name, other kind"


def test_objects_are_sealed_and_named_prefix_kind_name(s3_ft: Facetrail, s3_server: S3Server, bucket: str) -> None:
    blobs = s3_ft.blobs
    assert isinstance(blobs.storage, S3Storage)
    crop = blobs.put("crops/ab-1.jpg", b"crop pixels", s3_ft.vault.new_key("face"))
    package = blobs.put("packages/p1.zip", b"package", s3_ft.vault.new_key("package"))
    objects = s3_server.objects(bucket)
    assert sorted(objects) == ["ft/crops/ab-1.jpg", "ft/packages/p1.zip"]
    assert b"crop pixels" not in objects["ft/crops/ab-1.jpg"] and objects["ft/crops/ab-1.jpg"] == blobs.raw(crop)
    assert blobs.get(crop) == b"crop pixels" and blobs.get(package) == b"package"
    assert local_blob_files(s3_ft) == []
    # Shredding destroys the key, then the object; a copy of the object taken before opens with nothing.
    sealed, key_id = objects["ft/packages/p1.zip"], blobs.key_id(package)
    blobs.shred(package)
    assert sorted(s3_server.objects(bucket)) == ["ft/crops/ab-1.jpg"]
    assert s3_ft.vault.keyring.existing([key_id]) == set()
    with pytest.raises(KeyUnavailableError):
        s3_ft.vault.open("packages", sealed)


def test_erasure_leaves_no_clear_byte_of_the_person_in_the_bucket(s3_ft: Facetrail, s3_server: S3Server,
                                                                  bucket: str, actor: Actor) -> None:
    ft = s3_ft
    report = ft.ingest.ingest(actor, add_source(ft), from_paths([SAMPLES], ft.input_limits))
    assert report.faces_added == 26
    faces = stored_faces(ft, find_biden(ft, actor))
    assert len(faces) == 4
    portraits = [f for f in faces if f.image_name in BIDEN_PHOTOS]
    clear_images = [(SAMPLES / f.image_name).read_bytes() for f in portraits]
    assert [ft.blobs.get(f.image_key or "") for f in portraits] == clear_images  # kept as received, sealed
    before = s3_server.objects(bucket)
    # Every blob is in the bucket, sealed: no crop, template or image in clear in any object.
    assert all(name.startswith(("ft/crops/", "ft/images/")) for name in before) and len(before) >= 26
    for face in faces:
        assert before[f"ft/{face.crop_key}"] == ft.blobs.raw(face.crop_key)
        assert not [n for n, data in before.items() if face.crop in data or face.template in data]
    assert not [n for n, data in before.items() for image in clear_images if image in data]
    assert local_blob_files(ft) == [] and files_holding(ft.data, faces[0].crop) == []

    ft.erasure.erase(actor.name, [f.id for f in faces], request_id="REQ-S3")
    after = s3_server.objects(bucket)
    for face in faces:
        assert f"ft/{face.crop_key}" not in after and not ft.blobs.exists(face.crop_key)
        assert ft.vault.keyring.existing([face.key_id]) == set()
        with pytest.raises(KeyUnavailableError):  # an old version or copy of the crop's object opens with nothing
            ft.vault.open("crops", before[f"ft/{face.crop_key}"])
        assert not [n for n, data in after.items() if face.crop in data or face.template in data]
    for face in portraits:
        assert face.image_key is not None and f"ft/{face.image_key}" not in after
    assert not [n for n, data in after.items() for image in clear_images if image in data]
    assert len(after) < len(before)


def test_an_unreachable_server_is_an_error_naming_the_endpoint(bucket: str, tmp_path: Path) -> None:
    endpoint = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    with pytest.raises(BlobStorageError, match=f"{endpoint} cannot be reached"):
        S3Storage(bucket, "ft", endpoint_url=endpoint, region="us-east-1", access_key_id="x", secret_access_key="y")
    with pytest.raises(BlobStorageError, match=f"{endpoint} cannot be reached"):
        Facetrail.open(tmp_path / "data", create=True, workers=1, blob_url=f"s3://{bucket}/ft",
                       s3_endpoint_url=endpoint, s3_access_key_id="x", s3_secret_access_key="y",
                       s3_region="us-east-1")
    assert not (tmp_path / "data").exists()  # nothing made: `facetrail init` can simply be run again


def test_a_missing_bucket_is_an_error_naming_it(s3_server: S3Server, tmp_path: Path) -> None:
    with pytest.raises(BlobStorageError, match=f"no bucket 'no-such-bucket' at {s3_server.endpoint}"):
        s3_server.storage("no-such-bucket")
    with pytest.raises(BlobStorageError, match="no bucket 'no-such-bucket'"):
        Facetrail.open(tmp_path / "data", create=True, workers=1, **s3_server.settings("no-such-bucket"))
    assert not (tmp_path / "data").exists()


def test_a_bucket_that_disappears_makes_writes_fail_clearly(s3_ft: Facetrail, s3_server: S3Server,
                                                            bucket: str) -> None:
    s3_server.client().delete_bucket(Bucket=bucket)
    with pytest.raises(BlobStorageError, match=f"no bucket '{bucket}'"):
        s3_ft.blobs.put("crops/ab-1.jpg", b"crop pixels", s3_ft.vault.new_key("face"))


def no_aws_configuration(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")


def test_credentials_come_from_the_aws_environment_variables(s3_server: S3Server, bucket: str, tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    no_aws_configuration(monkeypatch, tmp_path)
    settings = {k: v for k, v in s3_server.settings(bucket).items() if not k.startswith("s3_access") and
                not k.startswith("s3_secret")}
    with pytest.raises(BlobStorageError, match="no credentials for bucket .* AWS_ACCESS_KEY_ID"):
        Facetrail.open(tmp_path / "data", create=True, workers=1, **settings)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "from-the-environment")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "from-the-environment-secret")
    ft = Facetrail.open(tmp_path / "data", create=True, workers=1, **settings)
    try:
        key = ft.blobs.put("crops/ab-1.jpg", b"crop pixels", ft.vault.new_key("face"))
        assert ft.blobs.get(key) == b"crop pixels" and list(s3_server.objects(bucket)) == ["ft/crops/ab-1.jpg"]
    finally:
        ft.close()


def test_blob_urls_are_checked() -> None:
    assert parse_blob_url("s3://my-bucket") == ("my-bucket", "")
    assert parse_blob_url("s3://my.bucket/a/b/") == ("my.bucket", "a/b")
    for bad in ("s3://", "s3://UPPER/x", "s3://b/x", "s3://bucket/a/../b", "s3://bucket/a//b", "http://bucket/x"):
        with pytest.raises(InvalidValueError, match="blob_url"):
            parse_blob_url(bad)


@pytest.mark.sqlite_only  # on PostgreSQL a backup is refused for the database first (tests/backup)
def test_backup_refuses_blobs_in_a_bucket(s3_ft: Facetrail, actor: Actor, tmp_path: Path) -> None:
    with pytest.raises(ConflictError, match="versioning and replication"):
        create_backup(s3_ft, actor, tmp_path / "backup.tar")
    assert not (tmp_path / "backup.tar").exists()
    (tmp_path / "backup.tar").write_bytes(b"an archive")
    with pytest.raises(ConflictError, match="S3-compatible bucket"):  # nor restored into it
        restore_backup(s3_ft.settings, tmp_path / "backup.tar", actor.name)
