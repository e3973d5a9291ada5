"""`facetrail demo` (what `make run` runs): it serves, the curl it prints returns results, and running it again
never damages the directory a running demo holds."""

from __future__ import annotations

import hashlib
import json
import shlex
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx2 as httpx
import pytest
from bench.load import free_port


def demo_command(data: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "facetrail.cli", "demo", "--data", str(data), *args]


@contextmanager
def running_demo(data: Path, port: int) -> Iterator[tuple[subprocess.Popen[str], str]]:
    """A demo server in a subprocess, once it answers; yields it and the curl command it printed."""
    proc = subprocess.Popen(demo_command(data, "--port", str(port)), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    try:
        assert proc.stdout is not None
        curl = None
        deadline = time.monotonic() + 180
        lines = []
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            lines.append(line)
            if line.startswith("curl "):
                curl = line.strip()
            if "Application startup complete" in line:
                break
            if proc.poll() is not None:
                pytest.fail("demo exited:\n" + "".join(lines))
        assert curl is not None, "".join(lines)
        assert httpx.get(f"http://127.0.0.1:{port}/health", timeout=10).status_code == 200
        yield proc, curl
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def search_and_crop(curl: str) -> list[tuple[int, float]]:
    """Run the printed curl; then fetch the first result's crop with the same key. Returns (face, distance)s."""
    result = subprocess.run(shlex.split(curl), capture_output=True, text=True, timeout=60, check=True)
    body = json.loads(result.stdout)
    assert body["results"], body
    assert "obama" in body["results"][0]["original_name"]
    words = shlex.split(curl)
    auth = words[words.index("-H") + 1]
    base = words[-1].rsplit("/v1/", 1)[0]
    crop = httpx.get(base + body["results"][0]["crop"], headers={"Authorization": auth.split(": ", 1)[1]},
                     timeout=30)
    assert crop.status_code == 200 and crop.content[:2] == b"\xff\xd8", crop.text[:200]
    return [(r["face_id"], r["distance"]) for r in body["results"]]


def fingerprint(data: Path) -> dict[str, str]:
    """What must not change under a running server: its master key and keyring."""
    return {name: hashlib.sha256((data / name).read_bytes()).hexdigest()
            for name in ("keys/master.key", "keys/keyring.db")}


def test_demo_serves_and_its_curl_returns_results(tmp_path: Path) -> None:
    with running_demo(tmp_path / "demo", free_port()) as (_proc, curl):
        search_and_crop(curl)


def test_a_second_demo_never_damages_the_one_running(tmp_path: Path) -> None:
    """The issue: a second `make run` wiped the live directory, printed a key the server refused, then failed
    on the port; the first server then answered 404 for crops."""
    data, port = tmp_path / "demo", free_port()
    with running_demo(data, port) as (proc, curl):
        first = search_and_crop(curl)
        before = fingerprint(data)
        # Same port: refused before anything is touched, naming the cause.
        again = subprocess.run(demo_command(data, "--port", str(port)), capture_output=True, text=True,
                               timeout=120)
        assert again.returncode == 1, again.stdout + again.stderr
        assert f"cannot listen on 127.0.0.1:{port}" in again.stderr
        # Another port: the directory is held by the running demo, which is named.
        other = subprocess.run(demo_command(data, "--port", str(free_port())), capture_output=True, text=True,
                               timeout=120)
        assert other.returncode == 1, other.stdout + other.stderr
        assert f"in use by pid {proc.pid}" in other.stderr and "demo" in other.stderr
        # Without a server of its own, too.
        quiet = subprocess.run(demo_command(data, "--no-serve"), capture_output=True, text=True, timeout=120)
        assert quiet.returncode == 1 and f"pid {proc.pid}" in quiet.stderr
        # Nothing changed: the same keys, the key it printed still works, crops are still served.
        assert fingerprint(data) == before
        assert search_and_crop(curl) == first
        # A port in use is reported before a new directory is made.
        fresh = tmp_path / "fresh"
        refused = subprocess.run(demo_command(fresh, "--port", str(port)), capture_output=True, text=True,
                                 timeout=120)
        assert refused.returncode == 1 and not fresh.exists()


def test_a_stopped_demo_is_reused_not_wiped(tmp_path: Path) -> None:
    data, port = tmp_path / "demo", free_port()
    with running_demo(data, port) as (_proc, first_curl):
        first = search_and_crop(first_curl)
    before = fingerprint(data)
    reused = subprocess.run([*demo_command(data, "--no-serve"), "--json"], capture_output=True, text=True,
                            timeout=300)
    assert reused.returncode == 0, reused.stderr
    body = json.loads(reused.stdout)
    assert body["report"]["images_added"] == 0 and body["report"]["images_skipped"] > 0  # the samples, kept
    assert body["investigator"] == "demo-investigator-2" and body["source_id"] == 1
    assert fingerprint(data) == before
    with running_demo(data, port) as (_proc, third_curl):
        assert search_and_crop(third_curl) == first
        assert search_and_crop(first_curl) == first  # the first run's key still works


def test_demo_refuses_a_directory_it_did_not_create(tmp_path: Path) -> None:
    (tmp_path / "precious.txt").write_text("keep me")
    result = subprocess.run([*demo_command(tmp_path, "--no-serve")], capture_output=True, text=True)
    assert result.returncode == 2 and "not a facetrail demo" in result.stderr + result.stdout
    assert sorted(p.name for p in tmp_path.iterdir()) == ["precious.txt"]
