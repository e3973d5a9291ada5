"""An S3-compatible server for the blob storage tests: moto's server (an emulation of the S3 API, not AWS S3
itself), run as a process of its own on the loopback interface and reached over HTTP like any S3 endpoint."""

from __future__ import annotations

import itertools
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import pytest

from facetrail.runtime import Facetrail
from facetrail.store.s3 import S3Storage

REGION = "us-east-1"
CREDENTIALS = {"aws_access_key_id": "facetrail-test", "aws_secret_access_key": "facetrail-test-secret"}
_BUCKETS = itertools.count(1)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass(frozen=True)
class S3Server:
    endpoint: str

    def client(self) -> Any:
        """A plain boto3 client of the server: what an operator (or an attacker with the bucket) sees."""
        return boto3.client("s3", endpoint_url=self.endpoint, region_name=REGION, **CREDENTIALS)

    def objects(self, bucket: str) -> dict[str, bytes]:
        """Every object in the bucket, with its bytes as the server returns them."""
        client = self.client()
        found: dict[str, bytes] = {}
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket):
            for item in page.get("Contents", []):
                found[item["Key"]] = client.get_object(Bucket=bucket, Key=item["Key"])["Body"].read()
        return found

    def settings(self, bucket: str, prefix: str = "ft") -> dict[str, object]:
        """Settings overrides that keep a data directory's blobs in `bucket`."""
        return {"blob_url": f"s3://{bucket}/{prefix}", "s3_endpoint_url": self.endpoint, "s3_region": REGION,
                "s3_access_key_id": CREDENTIALS["aws_access_key_id"],
                "s3_secret_access_key": CREDENTIALS["aws_secret_access_key"]}

    def storage(self, bucket: str, prefix: str = "ft") -> S3Storage:
        return S3Storage(bucket, prefix, endpoint_url=self.endpoint, region=REGION,
                         access_key_id=CREDENTIALS["aws_access_key_id"],
                         secret_access_key=CREDENTIALS["aws_secret_access_key"])


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    port = free_port()
    log = tmp_path_factory.mktemp("moto") / "server.log"
    moto_server = Path(sys.executable).with_name("moto_server")
    with open(log, "wb") as out:
        process = subprocess.Popen([str(moto_server), "-H", "127.0.0.1", "-p", str(port)], stdout=out,
                                   stderr=subprocess.STDOUT, env={**os.environ, "MOTO_CALL_RESET_API": "false"})
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"moto_server did not start: {log.read_text()}") from None
                time.sleep(0.2)
        yield S3Server(f"http://127.0.0.1:{port}")
    finally:
        process.terminate()
        process.wait(timeout=30)


@pytest.fixture
def bucket(s3_server: S3Server) -> str:
    """A new, empty bucket on the test server."""
    name = f"facetrail-test-{os.getpid()}-{next(_BUCKETS)}"
    s3_server.client().create_bucket(Bucket=name)
    return name


@pytest.fixture(params=["directory", "s3"])
def blob_ft(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Facetrail]:
    """An empty Facetrail with its blobs in the data directory, then one with them in a bucket of the test server."""
    overrides: dict[str, object] = {}
    if request.param == "s3":
        server: S3Server = request.getfixturevalue("s3_server")
        overrides = server.settings(request.getfixturevalue("bucket"))
    instance = Facetrail.open(tmp_path / "data", create=True, workers=1, **overrides)
    yield instance
    instance.close()
