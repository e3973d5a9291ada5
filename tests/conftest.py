"""Shared fixtures: the real sample photos, real dlib, FAISS and SQLite in temporary data directories."""

from __future__ import annotations

import ctypes
import itertools
import os
import shutil
import signal
import sys
import time
from collections.abc import Iterator
from multiprocessing import resource_tracker
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from alembic import command
from alembic.config import Config
from bench.load import labelled_people as labelled_people  # shared with the load test: file -> people in it
from numpy.typing import NDArray
from sqlalchemy import Engine, create_engine

from facetrail.accounts.roles import Actor
from facetrail.cli import output
from facetrail.runtime import Facetrail, local_actor
from facetrail.sources.inputs import from_paths
from facetrail.store.db import MIGRATIONS, Database
from facetrail.store.templates import open_templates
from tests.milvus import MilvusServer, milvus_running, running_server
from tests.pg import Cluster, running_cluster

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
SAMPLES = SHARED / "data" / "samples"
LFW = SHARED / "data" / "lfw" / "images"


def template_of(ft: Facetrail, sealed: bytes) -> NDArray[np.float32]:
    """A stored (sealed) template, decrypted and decoded."""
    return open_templates(ft.vault, [sealed], ft.gallery.dim)[0]


def sample_bytes(name: str) -> bytes:
    return (SAMPLES / name).read_bytes()


# What keeps the runtimes' usage reporting off without facetrail's doing (vision/runtimes.py): ONNX Runtime's own
# switch; the variables of the CI services under which it reports nothing; the generic CI=true, under which neither
# ONNX Runtime nor OpenVINO writes its identifiers (CI sets it); and where files would go instead of the home.
QUIETING = ("ORT_DISABLE_TELEMETRY", "ORT_RUNNING_UNIT_TESTS", "CI", "TF_BUILD", "GITHUB_ACTIONS", "GITLAB_CI",
            "CIRCLECI", "TRAVIS", "JENKINS_URL", "CODEBUILD_BUILD_ID", "BUILDKITE", "TEAMCITY_VERSION", "APPVEYOR",
            "BITBUCKET_BUILD_NUMBER", "XDG_CACHE_HOME", "XDG_CONFIG_HOME", "XDG_DATA_HOME")


def alembic_config() -> Config:
    """Alembic's configuration for facetrail's migrations (the product builds its own in store.db.migrate)."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    return config


def migrated_to(engine: Engine, revision: str) -> None:
    """Bring the store's schema to `revision`, as an earlier facetrail left it, for the tests of upgrades."""
    config = alembic_config()
    with engine.begin() as conn:
        config.attributes["connection"] = conn
        command.upgrade(config, revision)


def home_env(home: Path) -> dict[str, str]:
    """This process's environment for a command whose home directory is `home`, without what would keep the
    inference runtimes quiet or send their files elsewhere on its own (QUIETING)."""
    env = {k: v for k, v in os.environ.items() if k not in QUIETING}
    env["HOME"] = str(home)
    return env


def damaged_install(tmp_path: Path) -> Path:
    """A copy of the facetrail package whose recogniser weights have one byte more, as a disk error or a hand
    could leave them; put its parent first on PYTHONPATH to run facetrail from it."""
    root = tmp_path / "damaged-install"
    shutil.copytree(ROOT / "src" / "facetrail", root / "facetrail", ignore=shutil.ignore_patterns("__pycache__"))
    with (root / "facetrail" / "vision" / "models" / "face-reidentification-retail-0095.bin").open("ab") as fh:
        fh.write(b"\0")
    return root


def files_under(root: Path) -> list[str]:
    return sorted(str(path.relative_to(root)) for path in root.rglob("*"))


def add_source(ft: Facetrail, name: str = "samples", purposes: tuple[str, ...] = ("demo",)) -> int:
    source = ft.sources.add(
        local_actor(), name=name, controller="Test Controller", purposes=list(purposes), legal_basis="consent",
        art9_condition="a", evidence_ref="consent-records/1", jurisdictions=["FR", "US"], retention_days=365,
    )
    return source.id


@pytest.fixture(autouse=True)
def wide_console(monkeypatch: pytest.MonkeyPatch) -> None:
    """Rich folds long cells and messages to the terminal width (80 when there is no terminal): tests read
    what the CLI printed, not how it was laid out, so give them room for the longest sample path."""
    for console in (output.console, output.err_console):
        monkeypatch.setattr(console, "_width", 400)


@pytest.fixture
def actor() -> Actor:
    return local_actor()


@pytest.fixture
def ft(tmp_path: Path) -> Iterator[Facetrail]:
    """An empty Facetrail in a fresh data directory."""
    instance = Facetrail.open(tmp_path / "data", create=True, workers=1)
    yield instance
    instance.close()


@pytest.fixture(scope="session")
def samples_store(tmp_path_factory: pytest.TempPathFactory, pg_cluster: Cluster | None) -> Path:
    """A data directory holding all sample photos in source 1 (purpose 'demo'); copy it before changing it (on
    PostgreSQL its database is PG_SAMPLES: copy that too, store_db.copy_from)."""
    data = tmp_path_factory.mktemp("samples-store") / "data"
    url = None if pg_cluster is None else pg_cluster.create(PG_SAMPLES, PG_TEMPLATE)
    instance = Facetrail.open(data, create=True, workers=1, db_url=url, milvus_collection_prefix=MILVUS_SAMPLES)
    source_id = add_source(instance)
    report = instance.ingest.ingest(local_actor(), source_id, from_paths([SAMPLES], instance.input_limits))
    assert not report.errors, report.errors
    instance.close()
    return data


@pytest.fixture
def samples_ft(samples_store: Path, tmp_path: Path, store_db: StoreDb) -> Iterator[Facetrail]:
    """A private copy of the samples store, opened."""
    data = tmp_path / "data"
    shutil.copytree(samples_store, data)
    store_db.copy_from(PG_SAMPLES)
    store_db.url_for(data)  # this directory has the test's database: another one the test makes gets its own
    instance = Facetrail.open(data, workers=1)
    yield instance
    instance.close()


# -- nothing the tests start outlives them ------------------------------------------------------------------------
PR_SET_CHILD_SUBREAPER = 36
CHILDREN_GRACE_S = float(os.environ.get("FACETRAIL_TEST_CHILDREN_GRACE_S", "15"))


def pytest_sessionstart(session: pytest.Session) -> None:  # noqa: ARG001  # the hook's signature
    """Make the test process the subreaper of everything it starts: a process orphaned by a test (the workers of
    a command the test killed) is re-parented to it instead of to init, so the check at the end sees it."""
    if sys.platform == "linux":
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)


def _children() -> dict[int, str]:
    """The test process's living child processes (pid -> command line); zombies are reaped on the way."""
    found: dict[int, str] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            fields = stat[stat.rindex(")") + 2:].split()
            if int(fields[1]) != os.getpid():
                continue
            if fields[0] == "Z":
                os.waitpid(int(entry.name), os.WNOHANG)
                continue
            found[int(entry.name)] = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except (OSError, ValueError, ChildProcessError):
            continue  # gone meanwhile
    return found


def pytest_sessionfinish(session: pytest.Session) -> None:
    """Fail the run if a process started by a test is still alive at the end (after a grace period for those
    shutting down), and end it so that it does not outlive the run."""
    if not Path("/proc/self/stat").exists():
        return
    # This process's own multiprocessing resource tracker lives as long as it unless told to stop.
    stop_tracker = getattr(resource_tracker._resource_tracker, "_stop", None)  # Python's only way to stop it
    if stop_tracker is not None:
        stop_tracker()
    deadline = time.monotonic() + CHILDREN_GRACE_S
    survivors = _children()
    while survivors and time.monotonic() < deadline:
        time.sleep(0.25)
        survivors = _children()
    if not survivors:
        return
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    lines = [f"{len(survivors)} process(es) started by the tests outlived them:"]
    lines += [f"  pid {pid}: {command[:200]}" for pid, command in sorted(survivors.items())]
    for pid in survivors:
        try:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
        except (OSError, ChildProcessError):
            pass
    if reporter is not None:
        reporter.write_line("\n".join(lines), red=True, bold=True)
    session.exitstatus = pytest.ExitCode.TESTS_FAILED


# -- the metadata store (--db: SQLite or PostgreSQL) and the vector index engine (--index-engine) under test ----
def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--db", choices=("sqlite", "postgres"), default=os.environ.get("FACETRAIL_TEST_DB", "sqlite"),
                     help="metadata store the tests run against (postgres: a throwaway local server, tests/pg.py)")
    parser.addoption("--index-engine", choices=["faiss", "milvus"], default=None,
                     help="vector index engine of every data directory the tests open (default: the "
                          "FACETRAIL_INDEX_ENGINE setting, else faiss); milvus: a milvus-lite server shared by "
                          "every process of the run (tests/milvus.py), a collection prefix per data directory")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "sqlite_only: reads or tampers with the SQLite file itself (skipped on "
                            "PostgreSQL, where a counterpart test checks the same property)")
    config.addinivalue_line("markers", "postgres_only: checks PostgreSQL's own storage (skipped on SQLite)")
    os.environ.pop("FACETRAIL_DB_URL", None)  # the tests choose each store's database (store_db), not the shell
    engine = config.getoption("--index-engine")
    if engine is not None:  # before any Settings is read, and inherited by the processes tests start
        os.environ["FACETRAIL_INDEX_ENGINE"] = engine


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    backend = config.getoption("--db")
    skip = "sqlite_only" if backend == "postgres" else "postgres_only"
    marker = pytest.mark.skip(reason=f"{skip.replace('_only', '')} only; this run uses {backend}")
    for item in items:
        if skip in item.keywords:
            item.add_marker(marker)


@pytest.fixture(scope="session")
def pg_cluster(request: pytest.FixtureRequest) -> Iterator[Cluster | None]:
    """The PostgreSQL server of a --db postgres run (None on SQLite), with `facetrail_template`: an empty store
    brought to the newest migration, which each test's database copies."""
    if request.config.getoption("--db") != "postgres":
        yield None
        return
    with running_cluster() as cluster:
        database = Database(cluster.create(PG_TEMPLATE))
        database.migrate()
        database.dispose()
        yield cluster


@pytest.fixture(autouse=True)
def store_db(pg_cluster: Cluster | None, shared_milvus: MilvusServer | None,
             monkeypatch: pytest.MonkeyPatch) -> Iterator[StoreDb]:
    """Every test's data directories use a database of their own: on PostgreSQL a new one (FACETRAIL_DB_URL,
    also seen by the commands a test starts), on SQLite the file in the data directory. On the Milvus server
    each has collections of its own the same way (FACETRAIL_MILVUS_COLLECTION_PREFIX), dropped at the end."""
    prefix = f"t{os.getpid()}_{next(_DATABASES)}"
    if shared_milvus is not None:
        monkeypatch.setenv("FACETRAIL_MILVUS_COLLECTION_PREFIX", prefix)
    if pg_cluster is None:
        monkeypatch.delenv("FACETRAIL_DB_URL", raising=False)
        yield StoreDb(None, "", shared_milvus, prefix)
    else:
        name = f"test_{os.getpid()}_{next(_DATABASES)}"
        monkeypatch.setenv("FACETRAIL_DB_URL", pg_cluster.create(name, PG_TEMPLATE))
        yield StoreDb(pg_cluster, name, shared_milvus, prefix)
        pg_cluster.drop(name)
    if shared_milvus is not None:
        shared_milvus.drop(prefix)


class StoreDb:
    """The test's metadata store: `url` (None on SQLite: each data directory's own file)."""

    def __init__(self, cluster: Cluster | None, name: str, milvus: MilvusServer | None = None,
                 prefix: str = "") -> None:
        self.cluster = cluster
        self.name = name
        self.milvus = milvus
        self.prefix = prefix
        self._by_data: dict[Path, str] = {}
        self._prefixes: dict[Path, str] = {}

    def url_for(self, data: Path) -> str:
        """The metadata store of data directory `data` in a test that makes several: on PostgreSQL the first one
        asked for gets the test's database, each other one a new database of its own; on SQLite, its file."""
        if self.cluster is None:
            return f"sqlite:///{data / 'facetrail.db'}"
        key = data.absolute()
        if key not in self._by_data:
            name = self.name if not self._by_data else f"{self.name}_dir{next(_DATABASES)}"
            if name != self.name:
                self.cluster.create(name, PG_TEMPLATE)
            self._by_data[key] = name
        return self.cluster.url(self._by_data[key])

    def prefix_for(self, data: Path) -> str:
        """The Milvus collection prefix of data directory `data`, given out as `url_for` gives databases."""
        key = data.absolute()
        if key not in self._prefixes:
            self._prefixes[key] = self.prefix if not self._prefixes else f"{self.prefix}_d{next(_DATABASES)}"
        return self._prefixes[key]

    def settings_for(self, data: Path) -> dict[str, str]:
        """The settings that open `data` on its own store (Facetrail.open(data, **store_db.settings_for(data))):
        its database, and on the Milvus server its collection prefix."""
        settings = {"db_url": self.url_for(data)}
        if self.milvus is not None:
            settings["milvus_collection_prefix"] = self.prefix_for(data)
        return settings

    def env_for(self, data: Path) -> dict[str, str]:
        """The environment of a command run on `data` (its FACETRAIL_DB_URL on PostgreSQL, its collection prefix
        on the Milvus server)."""
        env = dict(os.environ)
        if self.cluster is not None:
            env["FACETRAIL_DB_URL"] = self.url_for(data)
        if self.milvus is not None:
            env["FACETRAIL_MILVUS_COLLECTION_PREFIX"] = self.prefix_for(data)
        return env

    def scalar(self, data: Path, query: str) -> Any:
        """One value from `data`'s metadata store, read behind facetrail's back (SQL, no facetrail code)."""
        engine = create_engine(self.url_for(data))
        try:
            with engine.connect() as conn:
                return conn.exec_driver_sql(query).scalar()
        finally:
            engine.dispose()

    def rows(self, data: Path, query: str) -> list[tuple[Any, ...]]:
        engine = create_engine(self.url_for(data))
        try:
            with engine.connect() as conn:
                return [tuple(row) for row in conn.exec_driver_sql(query)]
        finally:
            engine.dispose()

    @property
    def url(self) -> str | None:
        return None if self.cluster is None else self.cluster.url(self.name)

    def named(self, database: str) -> str | None:
        """The URL of one of the session's databases (e.g. PG_SAMPLES, to open the samples store itself); None on
        SQLite, where a data directory's database is its file."""
        return None if self.cluster is None else self.cluster.url(database)

    def save(self) -> str | None:
        """On PostgreSQL, a copy of the test's database as it is now (the database half of copying a data
        directory: give it to copy_from to go back to it); None on SQLite, where copying the directory is all."""
        if self.cluster is None:
            return None
        copy = f"{self.name}_copy{next(_DATABASES)}"
        self.cluster.create(copy, self.name)
        return copy

    def copy_from(self, template: str | None) -> None:
        """On PostgreSQL, make the test's database a copy of database `template` (a copied data directory needs
        its database copied with it); nothing to do on SQLite, where the database is a file in the directory."""
        if self.cluster is not None and template is not None:
            self.cluster.create(self.name, template)


_DATABASES = itertools.count(1)
PG_TEMPLATE = "facetrail_template"
PG_SAMPLES = "facetrail_samples"
MILVUS_SAMPLES = "samples"  # the samples store's collection prefix on the Milvus server


# -- the vector index engine the suites run on (make test-stack2) -------------------------------------------------
@pytest.fixture(scope="session", autouse=True)
def shared_milvus(request: pytest.FixtureRequest) -> Iterator[MilvusServer | None]:
    """The Milvus server of an --index-engine milvus run (None otherwise): every process of the run reaches it
    through FACETRAIL_MILVUS_URI, as a cluster is reached."""
    if request.config.getoption("--index-engine") != "milvus":
        yield None
        return
    with running_server() as server:
        os.environ["FACETRAIL_MILVUS_URI"] = server.uri
        os.environ["FACETRAIL_MILVUS_COLLECTION_PREFIX"] = f"s{os.getpid()}_{next(_DATABASES)}"
        yield server


@pytest.hookimpl(hookwrapper=True)
def pytest_fixture_setup(fixturedef: pytest.FixtureDef[Any]) -> Iterator[None]:
    """On the Milvus server, a session or module fixture that makes a data directory gets a collection prefix of
    its own (each test gets one from store_db)."""
    if fixturedef.scope != "function" and milvus_running():
        os.environ["FACETRAIL_MILVUS_COLLECTION_PREFIX"] = f"s{os.getpid()}_{next(_DATABASES)}"
    yield


@pytest.fixture(scope="session")
def index_engine() -> str:
    """The engine under test: 'faiss' or 'milvus'."""
    return os.environ.get("FACETRAIL_INDEX_ENGINE", "faiss")


@pytest.fixture
def faiss_only(index_engine: str) -> None:
    """For tests of the embedded index's file: skipped on another engine (its own tests cover it)."""
    if index_engine != "faiss":
        pytest.skip("reads the embedded FAISS index file")
