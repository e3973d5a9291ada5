"""A throwaway PostgreSQL server for the tests: a new cluster in a temporary folder, on loopback, started with
Debian's server binaries (package `postgresql`) and removed at the end.

PostgreSQL refuses to run as root; as root (CI), the cluster belongs to and runs as the unprivileged `nobody`.
The cluster trusts local connections (loopback only, a fresh random port) and trades durability for speed
(fsync off): it holds nothing but test data.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg
from psycopg import sql

SUPERUSER = "facetrail"
RUN_AS = "nobody"  # when the tests run as root


class PostgresUnavailable(RuntimeError):
    """The server binaries are not installed (Debian package `postgresql`)."""


def server_bin() -> Path:
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"),
                   key=lambda p: int(p.parent.parent.name) if p.parent.parent.name.isdigit() else 0)
    if not found:
        raise PostgresUnavailable("PostgreSQL server binaries not found under /usr/lib/postgresql/*/bin: "
                                  "install the Debian package `postgresql`")
    return found[-1].parent


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Cluster:
    """A running server: `url(name)` is the SQLAlchemy URL of one of its databases."""

    def __init__(self, folder: Path, port: int, as_root: bool) -> None:
        self.folder = folder
        self.data = folder / "cluster"
        self.port = port
        self._as_root = as_root
        self._bin = server_bin()

    def _run(self, *args: str) -> None:
        command = [str(self._bin / args[0]), *args[1:]]
        if self._as_root:
            command = ["runuser", "-u", RUN_AS, "--", *command]
        subprocess.run(command, check=True, capture_output=True, cwd=self.folder)

    def start(self) -> None:
        self._run("initdb", "-D", str(self.data), "-U", SUPERUSER, "--auth=trust", "--encoding=UTF8",
                  "--no-sync", "--locale=C")
        options = (f"-c listen_addresses=127.0.0.1 -c port={self.port} -c unix_socket_directories='' "
                   "-c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=200 "
                   "-c shared_buffers=64MB")
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.folder / "server.log"), "-o", options, "-w",
                  "-t", "60", "start")

    def stop(self) -> None:
        self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop")

    def url(self, database: str) -> str:
        return f"postgresql+psycopg://{SUPERUSER}@127.0.0.1:{self.port}/{database}"

    def admin(self) -> psycopg.Connection[tuple[object, ...]]:
        return psycopg.connect(host="127.0.0.1", port=self.port, user=SUPERUSER, dbname="postgres", autocommit=True)

    def create(self, name: str, template: str = "template0") -> str:
        """A new database `name`, a copy of `template` (which must have no open connection); its URL."""
        with self.admin() as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
            conn.execute(sql.SQL("CREATE DATABASE {} TEMPLATE {} STRATEGY FILE_COPY").format(
                sql.Identifier(name), sql.Identifier(template)))
        return self.url(name)

    def drop(self, name: str) -> None:
        with self.admin() as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))

    def checkpoint(self) -> None:
        """Write every dirty page to the cluster's files (what a scan of its files must see)."""
        with self.admin() as conn:
            conn.execute("CHECKPOINT")


@contextmanager
def running_cluster() -> Iterator[Cluster]:
    as_root = os.geteuid() == 0
    folder = Path(tempfile.mkdtemp(prefix="facetrail-pg-"))
    try:
        if as_root:
            shutil.chown(folder, RUN_AS)
        cluster = Cluster(folder, _free_port(), as_root)
        cluster.start()
        try:
            yield cluster
        finally:
            cluster.stop()
    finally:
        shutil.rmtree(folder, ignore_errors=True)
