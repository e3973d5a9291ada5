"""A throwaway Milvus server for the tests of the distributed stack (--index-engine milvus): milvus-lite's own gRPC
server in a process of its own, on loopback, over a temporary folder removed at the end.

Every facetrail process of a test (the test itself, the commands and workers it starts) reaches it through one URI,
as a cluster is reached; each data directory has a collection prefix of its own (its collections are
`<prefix>_<model>_...`), as each deployment sharing a cluster must. The server keeps a collection's files in
`<folder>/collections/<collection>/` (segments, index files and its write-ahead log).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from pymilvus import MilvusClient

START_TIMEOUT_S = 120
MESSAGE_BYTES = 256 * 1024 * 1024  # as milvus-lite's own server (and Milvus standalone)
# milvus-lite's server, with a Milvus server's keepalive policy: pymilvus pings every 10 s even between calls, which
# gRPC's default policy punishes (GOAWAY "too many pings", then calls fail) after a few idle seconds; a Milvus
# server allows pings 5 s apart without calls.
SERVER = f"""
import signal, sys, threading
from concurrent import futures
import grpc
from pymilvus.grpc_gen import milvus_pb2_grpc
from milvus_lite.adapter.grpc.servicer import MilvusServicer
from milvus_lite.db import MilvusLite

data_dir, port = sys.argv[1], sys.argv[2]
db = MilvusLite(data_dir)
server = grpc.server(futures.ThreadPoolExecutor(max_workers=10), options=[
    ("grpc.max_receive_message_length", {MESSAGE_BYTES}), ("grpc.max_send_message_length", {MESSAGE_BYTES}),
    ("grpc.keepalive_permit_without_calls", 1), ("grpc.http2.min_recv_ping_interval_without_data_ms", 5000),
    ("grpc.http2.max_ping_strikes", 0)])
milvus_pb2_grpc.add_MilvusServiceServicer_to_server(MilvusServicer(db), server)
server.add_insecure_port("127.0.0.1:" + port)
server.start()
stop = threading.Event()
signal.signal(signal.SIGTERM, lambda *_: stop.set())
stop.wait()
server.stop(grace=2).wait()
db.close()
"""
SERVER_FILES = "milvus-server/"  # how collection_files names the server's files (tests/rights/biden.py files_holding)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class MilvusServer:
    """A running server: its `uri` and the `folder` holding its files."""

    def __init__(self, folder: Path, port: int) -> None:
        self.folder = folder
        self.port = port
        self.uri = f"http://127.0.0.1:{port}"
        self._process: subprocess.Popen[bytes] | None = None
        self._client: MilvusClient | None = None

    def start(self) -> None:
        log = open(self.folder / "server.log", "wb")  # noqa: SIM115  # the server's, closed with it
        self._process = subprocess.Popen([sys.executable, "-c", SERVER, str(self.folder / "data"), str(self.port)],
                                         stdout=log, stderr=subprocess.STDOUT)
        log.close()
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            try:
                self._client = MilvusClient(uri=self.uri, timeout=5)
                return
            except Exception as exc:  # not listening yet (pymilvus raises several kinds)
                if self._process.poll() is not None or time.monotonic() > deadline:
                    self.stop()
                    log_text = (self.folder / "server.log").read_text(errors="replace")[-2000:]
                    raise RuntimeError(f"the milvus-lite server did not start: {exc}\n{log_text}") from exc
                time.sleep(0.3)

    def stop(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None
        if self._process is not None and self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()

    @property
    def client(self) -> MilvusClient:
        assert self._client is not None, "the server is not started"
        return self._client

    def collections(self, prefix: str) -> list[str]:
        """The collections of the data directories whose prefix is `prefix` or starts with `prefix_`."""
        return [name for name in self.client.list_collections() if name.startswith(f"{prefix}_")]

    def folders(self, prefix: str) -> list[Path]:
        """Where the server keeps those collections' files."""
        return [self.folder / "data" / "collections" / name for name in self.collections(prefix)]

    def drop(self, prefix: str) -> None:
        """Drop those collections and their aliases (a test's, when it ends)."""
        for name in self.collections(prefix):
            for alias in self.client.list_aliases(name).get("aliases", []):
                self.client.drop_alias(alias)
            self.client.drop_collection(name)


_running: list[MilvusServer] = []  # the session's server, while it runs


def milvus_running() -> bool:
    """Whether the session's Milvus server runs (an --index-engine milvus run)."""
    return bool(_running)


def collection_files() -> list[tuple[str, Path]]:
    """The files the session's Milvus server keeps for the running test's data directories (the collections of
    its prefix, FACETRAIL_MILVUS_COLLECTION_PREFIX), each with its name under SERVER_FILES; none without one."""
    prefix = os.environ.get("FACETRAIL_MILVUS_COLLECTION_PREFIX")
    if not _running or prefix is None:
        return []
    root = _running[0].folder / "data"
    return [(SERVER_FILES + str(path.relative_to(root)), path)
            for folder in _running[0].folders(prefix) for path in folder.rglob("*") if path.is_file()]


@contextmanager
def running_server() -> Iterator[MilvusServer]:
    folder = Path(tempfile.mkdtemp(prefix="facetrail-milvus-"))
    try:
        server = MilvusServer(folder, _free_port())
        server.start()
        _running.append(server)
        try:
            yield server
        finally:
            _running.remove(server)
            server.stop()
    finally:
        shutil.rmtree(folder, ignore_errors=True)
