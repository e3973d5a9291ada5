"""Opening the vault for a data directory, and rotating its master key."""

from __future__ import annotations

import os
from pathlib import Path

from facetrail.config import Settings
from facetrail.crypto.keyring import Keyring, WrongMasterKeyError
from facetrail.crypto.master import (
    LocalMasterKey,
    MasterKey,
    from_environment,
    from_hook,
    new_key_bytes,
    read_key_file,
    write_key_file,
)
from facetrail.crypto.vault import Vault
from facetrail.errors import InvalidValueError, KeyUnavailableError
from facetrail.fsutil import fsync_dir


def keyring_path(data: Path) -> Path:
    return data / "keys" / "keyring.db"


def load_master_key(settings: Settings, *, may_create: bool = False) -> MasterKey:
    """The master key from the KMS hook, the environment or the key file (in that order of precedence).
    A key file is created only for a new data directory (`may_create`)."""
    if settings.kms:
        return from_hook(settings.kms, settings)
    if settings.master_key is not None:
        return from_environment(settings.master_key.get_secret_value())
    path = settings.master_key_file
    if may_create and not path.exists():
        write_key_file(path, new_key_bytes())
    return read_key_file(path)


def open_vault(settings: Settings) -> Vault:
    path = keyring_path(settings.data)
    master = load_master_key(settings, may_create=not path.exists())
    try:
        keyring = Keyring(path, master)
    except WrongMasterKeyError as exc:
        keyring = _finish_rotation(settings, exc)
    return Vault(keyring)


def _finish_rotation(settings: Settings, exc: WrongMasterKeyError) -> Keyring:
    """A rotation re-wrapped the keyring and was cut off before its new key file replaced the old one."""
    path = settings.master_key_file
    pending = _pending(path)
    if settings.kms or settings.master_key is not None or not pending.exists():
        raise exc
    new = read_key_file(pending)
    if new.key_id != exc.expected:
        raise exc
    os.replace(pending, path)
    fsync_dir(path.parent)
    return Keyring(keyring_path(settings.data), new)


def rotate_master_key(settings: Settings, vault: Vault, *, new_key_file: Path | None = None) -> dict[str, object]:
    """Re-wrap every data key under a new master key; the data itself is not re-encrypted.

    With the default key file, the new key replaces it (written beside it first, so a crash half-way is
    finished on the next open). With a key from the environment, the new key goes to `new_key_file`, and
    the operator puts it in the environment. A KMS rotates its keys itself."""
    if settings.kms:
        raise InvalidValueError("kms", "a KMS-held master key is rotated in the KMS")
    old_id = vault.keyring.master.key_id
    if settings.master_key is not None:
        if new_key_file is None:
            raise InvalidValueError("new_key_file", "the master key comes from the environment: name a file "
                                    "for the new key, then put it in FACETRAIL_MASTER_KEY")
        if new_key_file.exists():
            raise InvalidValueError("new_key_file", f"{new_key_file} exists already; name a new file")
        write_key_file(new_key_file, new_key_bytes())
        count = vault.keyring.rewrap(read_key_file(new_key_file))
        return {"rewrapped": count, "old_master_id": old_id, "new_master_id": vault.keyring.master.key_id,
                "key_file": str(new_key_file)}
    path = settings.master_key_file
    pending = _pending(path)
    if not pending.exists():
        write_key_file(pending, new_key_bytes())
    new: LocalMasterKey = read_key_file(pending)
    if new.key_id == old_id:
        raise KeyUnavailableError(f"{pending} holds the current master key")
    count = vault.keyring.rewrap(new)
    os.replace(pending, path)
    fsync_dir(path.parent)
    return {"rewrapped": count, "old_master_id": old_id, "new_master_id": new.key_id, "key_file": str(path)}


def _pending(path: Path) -> Path:
    return path.with_name(path.name + ".new")
