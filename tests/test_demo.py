"""`facetrail demo` (what `make run` runs): it serves, and the curl it prints returns results."""

from __future__ import annotations

import json
import shlex
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_demo_serves_and_its_curl_returns_results(tmp_path: Path) -> None:
    port = free_port()
    data = tmp_path / "demo"
    proc = subprocess.Popen([sys.executable, "-m", "facetrail.cli", "demo", "--data", str(data), "--port", str(port)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        assert proc.stdout is not None
        curl = None
        deadline = time.monotonic() + 120
        lines = []
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            lines.append(line)
            if line.startswith("curl "):
                curl = line.strip()
            if "Uvicorn running" in line or "Application startup complete" in line:
                break
            if proc.poll() is not None:
                pytest.fail("demo exited:\n" + "".join(lines))
        assert curl is not None, "".join(lines)
        result = subprocess.run(shlex.split(curl), capture_output=True, text=True, timeout=60, check=True)
        body = json.loads(result.stdout)
        assert body["results"], body
        assert "obama" in body["results"][0]["original_name"]
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_demo_refuses_to_wipe_a_real_data_directory(tmp_path: Path) -> None:
    (tmp_path / "precious.txt").write_text("keep me")
    result = subprocess.run([sys.executable, "-m", "facetrail.cli", "demo", "--data", str(tmp_path), "--no-serve"],
                            capture_output=True, text=True)
    assert result.returncode == 2 and "not a facetrail demo" in result.stderr + result.stdout
    assert (tmp_path / "precious.txt").exists()
