"""The model files shipped inside facetrail (`vision/models/`, with their licences and PROVENANCE.md), each
checked against its SHA-256 before it is loaded: a changed or truncated file is refused, never used
(ModelUnavailableError)."""

from __future__ import annotations

import hashlib
from pathlib import Path

from facetrail.errors import InvalidValueError, ModelUnavailableError

MODELS = Path(__file__).with_name("models")

SHA256: dict[str, str] = {
    "face_detection_yunet_2023mar.onnx": "8f2383e4dd3cfbb4553ea8718107fc0423210dc964f9f4280604804ed2552fa4",
    "yunet_n_640_640.onnx": "25a606a145a5b6d7271ae138fbd00eba91dad8b83222ae3f2c7ecd0f4a7b0e31",
    "face-reidentification-retail-0095.xml": "ce53d2c9c08c0bd1c1660fb8a5b6d0e3e4ec19eb92f1036d2d83a85e83082dce",
    "face-reidentification-retail-0095.bin": "241229ca3d206321868d46ce74a3c0b06c49cea58db7dc70b2e842ff287545d1",
}


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def verified(name: str, folder: Path | None = None) -> Path:
    """The path of shipped model file `name` in `folder` (default MODELS), after checking its SHA-256 against
    the manifest."""
    if name not in SHA256:
        raise InvalidValueError("model", f"{name} is not a model file facetrail ships")
    path = (folder or MODELS) / name
    if not path.is_file():
        raise ModelUnavailableError(f"model file {path} is missing; reinstall facetrail")
    found = sha256_of(path)
    if found != SHA256[name]:
        raise ModelUnavailableError(f"model file {path} has SHA-256 {found}, not the shipped {SHA256[name]}: it "
                                    "was changed or damaged; reinstall facetrail")
    return path
