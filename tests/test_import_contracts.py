"""The import contracts of pyproject.toml (`make lint` runs them): the source tree keeps them, and a copy of it
with one import against a contract breaks that contract, so the check would stop a change that did the same."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LINT_IMPORTS = Path(sys.executable).parent / "lint-imports"
LAYERS = "One-way layers (PRODUCT.md section 4)"
ACYCLIC = "No import cycles between packages or between modules of a package"
PIXELS = "media and vision work on pixels only (no store, index, keys, audit or settings)"
INDEX_SEAM = "Only the runtime picks the index engine: everyone else sees index.base and the gallery"


def lint_imports(project: Path) -> subprocess.CompletedProcess[str]:
    """lint-imports with `project`'s pyproject.toml, analysing `project`/src/facetrail (first on the path)."""
    env = {**os.environ, "PYTHONPATH": str(project / "src")}
    return subprocess.run([str(LINT_IMPORTS), "--no-cache", "--config", str(project / "pyproject.toml")],
                          cwd=project, env=env, capture_output=True, text=True, timeout=120)


def test_the_source_tree_keeps_every_contract() -> None:
    result = lint_imports(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    report = " ".join(result.stdout.split())
    assert all(f"{name} KEPT" in report for name in (LAYERS, ACYCLIC, PIXELS, INDEX_SEAM)), report


@pytest.mark.parametrize(("module", "line", "broken", "named"), [
    # The store reaching up to the services' wiring: a layer imported from below.
    ("store/blobs.py", "from facetrail.runtime import Facetrail", LAYERS,
     "facetrail.store.blobs -> facetrail.runtime"),
    # Decoding reaching up to vision (the tie there was between media and vision).
    ("media/redact.py", "from facetrail.vision.types import Detection", LAYERS,
     "facetrail.media.redact -> facetrail.vision.types"),
    # A cycle inside vision: the seam's types importing a backend that imports them.
    ("vision/types.py", "from facetrail.vision import dlib_backend", ACYCLIC, ".types -> .dlib_backend"),
    # Pixels code reading the store, though the store lies below it.
    ("vision/quality.py", "from facetrail.store.models import Face", PIXELS,
     "facetrail.vision.quality -> facetrail.store.models"),
    # A service reaching past the index's Protocol to its FAISS implementation.
    ("rights/erasure.py", "from facetrail.index.faiss_index import FaissIndex", INDEX_SEAM,
     "facetrail.rights.erasure -> facetrail.index.faiss_index"),
    # A service reaching past it to the Milvus implementation.
    ("search/service.py", "from facetrail.index.milvus_index import MilvusIndex", INDEX_SEAM,
     "facetrail.search.service -> facetrail.index.milvus_index"),
], ids=["store-imports-runtime", "media-imports-vision", "cycle-in-vision", "vision-imports-store",
        "erasure-imports-faiss", "search-imports-milvus"])
def test_an_import_against_a_contract_breaks_it(tmp_path: Path, module: str, line: str, broken: str,
                                                named: str) -> None:
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    shutil.copytree(ROOT / "src" / "facetrail", tmp_path / "src" / "facetrail",
                    ignore=shutil.ignore_patterns("__pycache__", "*.jpg", "*.png", "*.html", "*.json"))
    target = tmp_path / "src" / "facetrail" / module
    target.write_text(target.read_text() + f"\n{line}  # noqa: E402\n")

    result = lint_imports(tmp_path)

    assert result.returncode == 1, result.stdout + result.stderr
    report = " ".join(result.stdout.split())  # lint-imports wraps long lines
    assert f"{broken} BROKEN" in report
    assert named in report.split("Broken contracts", 1)[1]
