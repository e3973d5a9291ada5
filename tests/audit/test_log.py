"""The audit log: intact chains verify; any edited, deleted or reordered row is named."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import create_engine
from sqlalchemy.exc import DBAPIError
from typer.testing import CliRunner

from facetrail.cli.main import app
from facetrail.runtime import Facetrail, local_actor
from tests.audit.insider import store_url, unguarded
from tests.cli.test_cli import init
from tests.conftest import add_source


@pytest.fixture
def logged(tmp_path: Path) -> Path:
    """A data directory with a handful of audit entries."""
    data = tmp_path / "data"
    ft = Facetrail.open(data, create=True, workers=1)
    for i in range(3):
        add_source(ft, name=f"source {i}")
    ft.accounts.create(local_actor(), name="ivy", role="investigator")
    ft.close()
    return data


def tamper(data: Path, *statements: str) -> None:
    """Change the database behind facetrail's back, as an attacker with file access could."""
    with unguarded(data) as conn:
        for statement in statements:
            conn.exec_driver_sql(statement)


def verify(data: Path) -> tuple[int, str]:
    result = CliRunner().invoke(app, ["--data", str(data), "audit", "verify"])
    return result.exit_code, result.output


def test_fresh_store_verifies(tmp_path: Path) -> None:
    code, output = verify(init(tmp_path / "new"))
    assert code == 0 and "intact: 1 entries" in output, output  # its creation


def test_a_mistyped_path_is_not_an_intact_log(tmp_path: Path) -> None:
    """It used to be created on the spot and reported as "audit log intact: 0 entries"."""
    code, output = verify(tmp_path / "typo")
    assert code == 1 and "no facetrail data directory at" in output and "intact" not in output
    assert not (tmp_path / "typo").exists()


def test_intact_log_verifies_and_verification_is_logged(logged: Path) -> None:
    assert verify(logged)[0] == 0
    ft = Facetrail.open(logged)
    entries = ft.read_audit(local_actor(), limit=100)
    assert [e.action for e in entries][-1] == "audit.verify"
    assert [e.action for e in entries][:5] == ["data.create"] + ["source.add"] * 3 + ["account.add"]
    ft.close()


@pytest.mark.parametrize("statement", ["UPDATE audit_log SET actor = 'someone else' WHERE seq = 1",
                                       "DELETE FROM audit_log WHERE seq = 2"])
def test_the_database_refuses_edits(logged: Path, statement: str) -> None:
    engine = create_engine(store_url(logged))
    try:
        with engine.begin() as conn, pytest.raises(DBAPIError, match="append-only"):
            conn.exec_driver_sql(statement)
        with engine.connect() as conn:
            assert conn.exec_driver_sql("SELECT count(*) FROM audit_log").scalar() == 5
    finally:
        engine.dispose()


def test_edited_row_is_named(logged: Path) -> None:
    tamper(logged, "UPDATE audit_log SET details = '{\"source_id\":99}' WHERE seq = 2")
    code, output = verify(logged)
    assert code == 1 and "entry 2" in output and "edited" in output


def test_deleted_row_is_named(logged: Path) -> None:
    tamper(logged, "DELETE FROM audit_log WHERE seq = 2")
    code, output = verify(logged)
    assert code == 1 and "entry 2" in output


def test_deleted_last_row_is_caught_by_the_head_anchor(logged: Path) -> None:
    tamper(logged, "DELETE FROM audit_log WHERE seq = (SELECT MAX(seq) FROM audit_log)")
    code, output = verify(logged)
    assert code == 1 and "truncated" in output


def test_swapped_rows_are_named(logged: Path) -> None:
    tamper(
        logged,
        "UPDATE audit_log SET seq = -2 WHERE seq = 2",
        "UPDATE audit_log SET seq = 2 WHERE seq = 3",
        "UPDATE audit_log SET seq = 3 WHERE seq = -2",
    )
    code, output = verify(logged)
    assert code == 1 and "entry 2" in output


def test_rewritten_chain_without_anchor_still_fails_on_content(logged: Path) -> None:
    (logged / "audit.head").unlink()
    tamper(logged, "UPDATE audit_log SET actor = 'mallory' WHERE seq = 1")
    code, output = verify(logged)
    assert code == 1 and "entry 1" in output


def test_threads_committing_at_once_keep_the_head_and_the_chain(tmp_path: Path) -> None:
    """Each commit moves the head anchor after it; many threads committing at once must neither collide on the
    anchor's file nor move it backwards."""
    from concurrent.futures import ThreadPoolExecutor

    ft = Facetrail.open(tmp_path / "data", create=True, workers=1)

    def record(i: int) -> None:
        with ft.db.write() as session, session.begin():
            ft.audit.record(session, actor="t", action="test", details={"i": i})

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(record, range(200)))
    with ft.db.read() as session:
        assert ft.audit.verify(session).ok
    head = ft.audit.read_head()
    assert head is not None and head[0] == 201  # the data directory's creation, then 200
    assert not list((tmp_path / "data").glob(".audit.head.*.tmp"))
    ft.close()
