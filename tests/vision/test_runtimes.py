"""The inference runtimes leave nothing outside the data directory: a process that analyses photos with them,
imported as facetrail imports them (vision/runtimes.py), writes nothing in its home directory, where both would
otherwise keep a device identifier and their usage reports."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.conftest import ROOT, SAMPLES, files_under, home_env

ANALYSE = """
import json, sys
from facetrail.ingest.photo import analyze_photo
from facetrail.vision.backend import VisionConfig, load_backend
config = VisionConfig()
faces = analyze_photo(load_backend(config), config, open(sys.argv[1], "rb").read()).faces
print(json.dumps({"faces": len(faces)}))
"""

PLAIN_IMPORTS = """
import onnxruntime, openvino
"""


def in_home(home: Path, code: str, *args: str) -> str:
    """Run `code` in a fresh interpreter whose home directory is `home`."""
    proc = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, env=home_env(home),
                          cwd=ROOT, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout


def test_analysing_a_photo_writes_nothing_in_the_home_directory(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    out = in_home(home, ANALYSE, str(SAMPLES / "obama.jpg"))
    assert json.loads(out) == {"faces": 1}  # both runtimes ran: YuNet (ONNX Runtime) and the recogniser (OpenVINO)
    assert files_under(home) == []


def test_the_runtimes_imported_plainly_would_write_there(tmp_path: Path) -> None:
    """The hazard, in the pinned versions: imported as any program imports them, both write their identifiers in
    the home directory. (This keeps the test above honest: it looks where the files would be.)"""
    home = tmp_path / "home"
    home.mkdir()
    in_home(home, PLAIN_IMPORTS)
    found = files_under(home)
    assert any(path.startswith(".cache/Microsoft") for path in found), found  # ONNX Runtime's device id, events
    assert any(path.startswith("intel") for path in found), found  # OpenVINO's usage-report identifier
