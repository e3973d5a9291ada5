"""Where the checkpoint signing key comes from: never the data directory.

In order of precedence: a key file (`FACETRAIL_AUDIT_SIGNING_KEY_FILE`, mode 0600, outside the data
directory), the environment (`FACETRAIL_AUDIT_SIGNING_KEY`), or the KMS hook (`FACETRAIL_KMS`) when its object
also offers `sign(message) -> bytes` and `signing_public_key` (raw Ed25519, 32 bytes), and optionally
`signing_key_name`. Whoever can write the data directory must not be able to sign: that is the whole point.
"""

from __future__ import annotations

import os
from pathlib import Path

from facetrail.audit.note import CheckpointSigner, Verifier, check_name, new_signer_text, parse_signer, parse_verifier
from facetrail.config import Settings
from facetrail.crypto.master import from_hook
from facetrail.errors import InvalidValueError, KeyUnavailableError
from facetrail.fsutil import fsync_dir

DEFAULT_NAME = "facetrail-audit"


class KmsSigner:
    """A KMS hook that signs: the private key stays in the KMS."""

    def __init__(self, hook: object) -> None:
        self._hook = hook
        self.name = check_name(str(getattr(hook, "signing_key_name", DEFAULT_NAME)))
        public = getattr(hook, "signing_public_key")  # noqa: B009  # the hook is duck-typed
        if not isinstance(public, bytes) or len(public) != 32:
            raise KeyUnavailableError("the KMS hook's signing_public_key is not 32 raw Ed25519 bytes")
        self.public_key = public

    def sign(self, message: bytes) -> bytes:
        signature: bytes = self._hook.sign(message)  # type: ignore[attr-defined]  # checked in load_signer
        return signature


def load_signer(settings: Settings) -> CheckpointSigner | None:
    """The configured signer, or None when checkpoints cannot be signed here."""
    if settings.audit_signing_key_file is not None:
        return read_signer_file(settings.audit_signing_key_file, settings.data)
    if settings.audit_signing_key is not None:
        return parse_signer(settings.audit_signing_key.get_secret_value(), "FACETRAIL_AUDIT_SIGNING_KEY")
    if settings.kms:
        hook = from_hook(settings.kms, settings)
        if callable(getattr(hook, "sign", None)) and hasattr(hook, "signing_public_key"):
            return KmsSigner(hook)
    return None


def _outside_data(path: Path, data: Path, field: str) -> None:
    resolved, home = path.resolve(), data.resolve()
    if resolved == home or home in resolved.parents:
        raise InvalidValueError(field, f"{path} is inside the data directory {data}: whoever can write the data "
                                "directory could then sign a rewritten log. Keep the key elsewhere.")


def read_signer_file(path: Path, data: Path) -> CheckpointSigner:
    _outside_data(path, data, "audit_signing_key_file")
    try:
        mode = path.stat().st_mode & 0o777
        text = path.read_text()
    except OSError as exc:
        raise KeyUnavailableError(f"audit signing key {path}: {exc.strerror or exc}") from None
    if mode & 0o077:
        raise KeyUnavailableError(f"audit signing key {path} is readable by others (mode {mode:o}): chmod 600 it")
    return parse_signer(text, str(path))


def write_key_pair(path: Path, data: Path, name: str) -> tuple[Path, str]:
    """Create a signing key file (0600, never overwritten) and its public key beside it (`.pub`); return the
    public key file and the public key."""
    check_name(name)
    _outside_data(path, data, "key_file")
    signer, verifier = new_signer_text(name)
    public_path = path.with_name(path.name + ".pub")
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise InvalidValueError("key_file", f"{path} exists; a signing key is never overwritten") from None
    try:
        os.write(fd, signer.encode() + b"\n")
        os.fsync(fd)
    finally:
        os.close(fd)
    public_path.write_text(verifier + "\n")
    fsync_dir(path.parent)
    return public_path, verifier


def read_verifier(path: Path) -> Verifier:
    try:
        text = path.read_text()
    except OSError as exc:
        raise InvalidValueError("public_key", f"{path}: {exc.strerror or exc}") from None
    return parse_verifier(text, str(path))


def verifier_of(signer: CheckpointSigner) -> Verifier:
    return Verifier(signer.name, signer.public_key)
