"""The session-end check (tests/conftest.py): a test run that leaves a process behind fails, naming it, and the
process is ended; a run that leaves nothing passes. Checked on inner pytest runs in subprocesses."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.conftest import ROOT

CONFTEST = "from tests.conftest import pytest_sessionfinish, pytest_sessionstart  # noqa: F401\n"
# `sh` starts `sleep` in the background and exits at once: the sleep is orphaned, as the workers of a killed
# command were. It writes its pid where the outer test can find it.
ORPHAN = """
import subprocess
def test_leaves_an_orphan():
    subprocess.run(["sh", "-c", "sleep 300 & echo $! > pid"], check=True)
"""
CLEAN = """
import subprocess
def test_waits_for_its_child():
    subprocess.run(["sh", "-c", "sleep 0.1"], check=True)
"""


def run_inner(tmp_path: Path, test: str) -> subprocess.CompletedProcess[str]:
    (tmp_path / "conftest.py").write_text(CONFTEST)
    (tmp_path / "test_inner.py").write_text(test)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "FACETRAIL_TEST_CHILDREN_GRACE_S": "1"}
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--rootdir", str(tmp_path),
                           str(tmp_path / "test_inner.py")], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=120)


def test_a_process_left_behind_fails_the_run(tmp_path: Path) -> None:
    result = run_inner(tmp_path, ORPHAN)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "1 passed" in result.stdout and "outlived them" in result.stdout and "sleep 300" in result.stdout
    orphan = int((tmp_path / "pid").read_text())
    assert not Path(f"/proc/{orphan}").exists(), "the check did not end the process it found"


def test_a_run_that_leaves_nothing_passes(tmp_path: Path) -> None:
    result = run_inner(tmp_path, CLEAN)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "outlived" not in result.stdout
