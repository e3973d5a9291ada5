"""Signed checkpoints in the transparency-log "signed note" format, with Ed25519 keys.

A checkpoint (C2SP tlog-checkpoint) is a few lines of text, then a blank line, then signature lines:

    facetrail-audit                               the log's identity (origin): the signing key's name
    1234                                          tree size: entries 1..1234 are covered
    3q2+7w...=                                    base64 of the RFC 9162 root hash over them
    time 2026-12-01T00:00:00Z                     when it was made (an extension line)

    — facetrail-audit AbCd...                    base64(4-byte key id || 64-byte Ed25519 signature)

Keys are written as in Go's golang.org/x/mod/sumdb/note, so other transparency tools can read them:
signer `PRIVATE+KEY+<name>+<id>+<base64(0x01 || seed)>`, verifier `<name>+<id>+<base64(0x01 || public)>`,
the id being the first 4 bytes of SHA-256(name || "\\n" || 0x01 || public key), in hex.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from dataclasses import dataclass
from typing import Protocol

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat, PublicFormat

from facetrail.errors import InvalidValueError

ED25519 = 0x01
SIG_PREFIX = "\u2014 "  # an em dash and a space start every signature line
NAME_PATTERN = re.compile(r"^[^\s+\u2014]+$")


class CheckpointSigner(Protocol):
    """Who signs checkpoints: a local Ed25519 key, or a KMS hook's `sign` (the key never enters the process)."""

    @property
    def name(self) -> str: ...

    @property
    def public_key(self) -> bytes: ...

    def sign(self, message: bytes) -> bytes: ...


@dataclass(frozen=True)
class Verifier:
    name: str
    public_key: bytes

    @property
    def key_id(self) -> bytes:
        return key_id(self.name, self.public_key)

    def text(self) -> str:
        return f"{self.name}+{self.key_id.hex()}+{base64.b64encode(bytes([ED25519]) + self.public_key).decode()}"


@dataclass(frozen=True)
class Checkpoint:
    origin: str
    size: int
    root: bytes
    time: str
    text: str
    """The whole signed note, as it must be kept."""

    def as_dict(self) -> dict[str, object]:
        return {"origin": self.origin, "size": self.size, "root": self.root.hex(), "time": self.time,
                "checkpoint": self.text}


class LocalSigner:
    """An Ed25519 key held in this process (from a key file or the environment)."""

    def __init__(self, name: str, private: Ed25519PrivateKey, origin: str) -> None:
        self.name = name
        self._private = private
        self.origin = origin
        self.public_key = private.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)

    def sign(self, message: bytes) -> bytes:
        return self._private.sign(message)


def key_id(name: str, public_key: bytes) -> bytes:
    return hashlib.sha256(name.encode() + b"\n" + bytes([ED25519]) + public_key).digest()[:4]


def check_name(name: str) -> str:
    if not NAME_PATTERN.match(name):
        raise InvalidValueError("name", f"{name!r}: a key name is non-empty, without spaces or '+'")
    return name


def new_signer_text(name: str) -> tuple[str, str]:
    """A new key pair as (signer text, verifier text)."""
    check_name(name)
    private = Ed25519PrivateKey.generate()
    seed = private.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())
    public = private.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    kid = key_id(name, public).hex()
    signer = f"PRIVATE+KEY+{name}+{kid}+{base64.b64encode(bytes([ED25519]) + seed).decode()}"
    return signer, Verifier(name, public).text()


def _key_fields(text: str, origin: str, parts: int) -> list[str]:
    fields = text.strip().split("+", parts - 1)  # the base64 at the end may hold '+' itself
    if len(fields) != parts:
        raise InvalidValueError(origin, "not a facetrail/transparency-log key (name+id+base64)")
    return fields


def _key_bytes(name: str, kid: str, material: str, origin: str) -> bytes:
    check_name(name)
    try:
        raw = base64.b64decode(material, validate=True)
    except (binascii.Error, ValueError):
        raise InvalidValueError(origin, "the key is not valid base64") from None
    if len(raw) != 33 or raw[0] != ED25519:
        raise InvalidValueError(origin, "not an Ed25519 key")
    if not re.fullmatch(r"[0-9a-f]{8}", kid):
        raise InvalidValueError(origin, "the key id is not 8 hex digits")
    return raw[1:]


def parse_signer(text: str, origin: str) -> LocalSigner:
    fields = _key_fields(text, origin, 5)
    if fields[:2] != ["PRIVATE", "KEY"]:
        raise InvalidValueError(origin, "not a private signing key (it should start PRIVATE+KEY+)")
    name, kid, material = fields[2:]
    seed = _key_bytes(name, kid, material, origin)
    signer = LocalSigner(name, Ed25519PrivateKey.from_private_bytes(seed), origin)
    if key_id(name, signer.public_key).hex() != kid:
        raise InvalidValueError(origin, "the key id does not match the key (damaged key file?)")
    return signer


def parse_verifier(text: str, origin: str) -> Verifier:
    name, kid, material = _key_fields(text, origin, 3)
    verifier = Verifier(name, _key_bytes(name, kid, material, origin))
    if verifier.key_id.hex() != kid:
        raise InvalidValueError(origin, "the key id does not match the key (damaged public key?)")
    return verifier


def body_text(origin: str, size: int, root: bytes, time: str) -> str:
    return f"{check_name(origin)}\n{size}\n{base64.b64encode(root).decode()}\ntime {time}\n"


def sign_checkpoint(signer: CheckpointSigner, *, size: int, root: bytes, time: str) -> Checkpoint:
    body = body_text(signer.name, size, root, time)
    signature = signer.sign(body.encode())
    line = base64.b64encode(key_id(signer.name, signer.public_key) + signature).decode()
    return Checkpoint(signer.name, size, root, time, f"{body}\n{SIG_PREFIX}{signer.name} {line}\n")


def parse_checkpoints(text: str, origin: str) -> list[tuple[str, list[str]]]:
    """Split a text holding one or more signed notes (e.g. a file checkpoints are appended to) into
    (body, signature lines)."""
    notes: list[tuple[str, list[str]]] = []
    lines = text.replace("\r\n", "\n").split("\n")
    i = 0
    while i < len(lines):
        if not lines[i].strip():
            i += 1
            continue
        start = i
        while i < len(lines) and lines[i] != "":
            i += 1
        body = "\n".join(lines[start:i]) + "\n"
        i += 1
        signatures = []
        while i < len(lines) and lines[i].startswith(SIG_PREFIX):
            signatures.append(lines[i])
            i += 1
        if not signatures:
            raise InvalidValueError(origin, f"line {start + 1}: a checkpoint without a signature line")
        notes.append((body, signatures))
    if not notes:
        raise InvalidValueError(origin, "no checkpoint in it")
    return notes


def open_checkpoint(body: str, signatures: list[str], verifier: Verifier, origin: str) -> Checkpoint:
    """Check the signature by `verifier` and read the checkpoint's fields."""
    _check_signature(body, signatures, verifier, origin)
    lines = body.rstrip("\n").split("\n")
    if len(lines) < 3:
        raise InvalidValueError(origin, "a checkpoint has an origin, a size and a root hash line")
    name, size_text, root_text = lines[:3]
    if name != verifier.name:
        raise InvalidValueError(origin, f"the checkpoint is for log {name!r}, the key for {verifier.name!r}")
    if not size_text.isdigit():
        raise InvalidValueError(origin, f"tree size {size_text!r} is not a number")
    try:
        root = base64.b64decode(root_text, validate=True)
    except (binascii.Error, ValueError):
        root = b""
    if len(root) != 32:
        raise InvalidValueError(origin, "the root hash line is not base64 of 32 bytes")
    time = next((line[5:] for line in lines[3:] if line.startswith("time ")), "")
    signed = f"{body}\n" + "\n".join(signatures) + "\n"
    return Checkpoint(name, int(size_text), root, time, signed)


def _check_signature(body: str, signatures: list[str], verifier: Verifier, origin: str) -> None:
    prefix = f"{SIG_PREFIX}{verifier.name} "
    for line in signatures:
        if not line.startswith(prefix):
            continue
        try:
            raw = base64.b64decode(line[len(prefix):], validate=True)
        except (binascii.Error, ValueError):
            continue
        if raw[:4] != verifier.key_id or len(raw) != 68:
            continue
        try:
            Ed25519PublicKey.from_public_bytes(verifier.public_key).verify(raw[4:], body.encode())
        except InvalidSignature:
            raise InvalidValueError(origin, "the checkpoint's signature is wrong: it was altered, or not made "
                                    "by this key") from None
        return
    raise InvalidValueError(origin, f"no signature by key {verifier.name}+{verifier.key_id.hex()} on it")
