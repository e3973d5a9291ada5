"""Blobs on S3-compatible object storage: the BlobStorage that keeps sealed blobs as objects in a bucket.

Selected with `blob_url = s3://bucket/prefix`; the object of blob `<kind>/<name>` is `<prefix>/<kind>/<name>`.
BlobStore seals every blob before it reaches a storage, so the bucket only ever holds ciphertext, and erasure
crypto-shreds it (the data key is destroyed) before the object is deleted. One PUT replaces an object whole or
not at all, so a crash never leaves part of a blob under a real key.

Versioning: on a bucket with versioning on, a deleted or overwritten object keeps its old versions. Those hold
sealed bytes only, and their data keys are destroyed by the erasure, so they cannot be opened; the bucket's
lifecycle rules should still expire noncurrent versions. Backups of the bucket are its versioning and
replication, not `facetrail backup`.

boto3 comes with the `s3` extra (pip install 'facetrail[s3]'); only blobs.blob_storage imports this module, and
only when a bucket is configured.
"""

from __future__ import annotations

import re
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    HTTPClientError,
    NoCredentialsError,
)
from botocore.exceptions import ConnectionError as EndpointUnreachable

from facetrail.config import Settings
from facetrail.errors import FacetrailError, InvalidValueError

_URL = re.compile(r"^s3://(?P<bucket>[a-z0-9][a-z0-9.-]{1,61}[a-z0-9])(?:/(?P<prefix>[A-Za-z0-9_.\-/]*))?$")
_MISSING = {"404", "NoSuchKey", "NotFound"}


class BlobStorageError(FacetrailError):
    """The object storage could not be reached, or refused a request."""


def parse_blob_url(url: str) -> tuple[str, str]:
    """(bucket, prefix) of `s3://bucket/prefix` (the prefix without slashes at either end; may be empty)."""
    match = _URL.match(url)
    if match is None:
        raise InvalidValueError("blob_url", f"{url!r} is not s3://bucket/prefix (a bucket name of 3-63 lower-case "
                                "letters, digits, dots and hyphens)")
    prefix = (match["prefix"] or "").strip("/")
    if ".." in prefix.split("/") or "//" in prefix:
        raise InvalidValueError("blob_url", f"{url!r}: the prefix has an empty or '..' part")
    return match["bucket"], prefix


class S3Storage:
    """Sealed blobs as objects `<prefix>/<kind>/<name>` in a bucket of an S3-compatible service."""

    def __init__(self, bucket: str, prefix: str = "", *, endpoint_url: str | None = None, region: str | None = None,
                 access_key_id: str | None = None, secret_access_key: str | None = None) -> None:
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.endpoint = endpoint_url or "the AWS S3 endpoint"
        # Credentials: the ones given, else boto3's own chain (AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY, profiles).
        self.client: Any = boto3.client(
            "s3", endpoint_url=endpoint_url, region_name=region, aws_access_key_id=access_key_id,
            aws_secret_access_key=secret_access_key,
            config=Config(connect_timeout=5, read_timeout=60, retries={"max_attempts": 3, "mode": "standard"}))
        self._check_bucket()

    @classmethod
    def from_settings(cls, settings: Settings) -> S3Storage:
        assert settings.blob_url is not None
        bucket, prefix = parse_blob_url(settings.blob_url)
        secret = settings.s3_secret_access_key
        return cls(bucket, prefix, endpoint_url=settings.s3_endpoint_url, region=settings.s3_region,
                   access_key_id=settings.s3_access_key_id,
                   secret_access_key=None if secret is None else secret.get_secret_value())

    def object_key(self, key: str) -> str:
        return f"{self.prefix}/{key}" if self.prefix else key

    def _where(self) -> str:
        return f"bucket {self.bucket!r} at {self.endpoint}"

    def _fail(self, action: str, exc: Exception) -> BlobStorageError:
        if isinstance(exc, ClientError):
            code = str(exc.response.get("Error", {}).get("Code", ""))
            if code in ("NoSuchBucket",) or (action == "open" and code in ("404", "NotFound")):
                return BlobStorageError(f"blob storage: there is no {self._where()} (create it, or correct "
                                        "blob_url / s3_endpoint_url)")
            if code in ("403", "AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch"):
                return BlobStorageError(f"blob storage: {self._where()} refused the credentials ({code}) "
                                        f"to {action}")
            return BlobStorageError(f"blob storage: {action} in {self._where()} failed: {code or exc}")
        if isinstance(exc, NoCredentialsError):
            return BlobStorageError(f"blob storage: no credentials for {self._where()}: set s3_access_key_id and "
                                    "s3_secret_access_key, or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY")
        if isinstance(exc, EndpointUnreachable | HTTPClientError):
            return BlobStorageError(f"blob storage: {self.endpoint} cannot be reached ({action}, bucket "
                                    f"{self.bucket!r}): {exc}")
        return BlobStorageError(f"blob storage: {action} in {self._where()} failed: {exc}")

    def _check_bucket(self) -> None:
        try:
            self.client.head_bucket(Bucket=self.bucket)
        except (BotoCoreError, ClientError) as exc:
            raise self._fail("open", exc) from exc

    def write(self, key: str, data: bytes) -> None:
        try:  # one PUT: the object is replaced whole or not at all
            self.client.put_object(Bucket=self.bucket, Key=self.object_key(key), Body=data)
        except (BotoCoreError, ClientError) as exc:
            raise self._fail(f"write {key}", exc) from exc

    def read(self, key: str, size: int | None = None) -> bytes | None:
        if size is not None and size <= 0:
            return b"" if self.exists(key) else None
        extra = {} if size is None else {"Range": f"bytes=0-{size - 1}"}
        try:
            response = self.client.get_object(Bucket=self.bucket, Key=self.object_key(key), **extra)
            body: bytes = response["Body"].read()
        except ClientError as exc:
            code = str(exc.response.get("Error", {}).get("Code", ""))
            if code in _MISSING:
                return None
            if code == "InvalidRange":  # an empty object: a range has nothing to return
                return b""
            raise self._fail(f"read {key}", exc) from exc
        except BotoCoreError as exc:
            raise self._fail(f"read {key}", exc) from exc
        return body if size is None else body[:size]

    def exists(self, key: str) -> bool:
        try:
            self.client.head_object(Bucket=self.bucket, Key=self.object_key(key))
        except ClientError as exc:
            if str(exc.response.get("Error", {}).get("Code", "")) in _MISSING:
                return False
            raise self._fail(f"look up {key}", exc) from exc
        except BotoCoreError as exc:
            raise self._fail(f"look up {key}", exc) from exc
        return True

    def delete(self, key: str) -> None:
        try:  # S3 answers a delete of a missing object with success
            self.client.delete_object(Bucket=self.bucket, Key=self.object_key(key))
        except (BotoCoreError, ClientError) as exc:
            raise self._fail(f"delete {key}", exc) from exc

