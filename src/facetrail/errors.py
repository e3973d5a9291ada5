"""The error hierarchy: one root, a few per-area subclasses. Edges translate these into responses."""

from __future__ import annotations


class FacetrailError(Exception):
    """Root of every error facetrail raises on purpose."""


class InvalidValueError(FacetrailError):
    """A value given by a user is not acceptable; `field` names which one."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message

    def __reduce__(self) -> tuple[type[InvalidValueError], tuple[str, str]]:
        """Pickled as its two arguments (a vision process sends its errors back pickled)."""
        return type(self), (self.field, self.message)


class NotFoundError(FacetrailError):
    """A referenced object (source, account, search, face) does not exist."""


class MediaError(FacetrailError):
    """A file could not be decoded safely (corrupt, truncated, not an image, too large, a bomb)."""


class NoFaceError(FacetrailError):
    """A query photo holds no detectable face, or the chosen face does not exist."""


class AuthenticationError(FacetrailError):
    """No credentials, or credentials that match no active account."""


class PermissionDeniedError(FacetrailError):
    """An authenticated account lacks the role for the action."""


class ModelUnavailableError(FacetrailError):
    """A vision model cannot be loaded: a model file facetrail ships is missing, changed or damaged. Nothing can
    be analysed until the installation is repaired, so an ingestion stops rather than failing every image."""


class IndexCorruptError(FacetrailError):
    """The vector index file is unreadable or fails its checksum; it will be rebuilt from the store."""


class AuditChainError(FacetrailError):
    """The audit log's hash chain is broken."""


class RateLimitedError(FacetrailError):
    """Too many requests from one address or for one e-mail address; try again later."""


class ConflictError(FacetrailError):
    """The action does not fit the object's current state (e.g. a closed request)."""


class KeyUnavailableError(FacetrailError):
    """Encrypted data cannot be read: the master key is missing or wrong, or the record's data key was
    destroyed (crypto-shredded by an erasure)."""


class ShuttingDownError(FacetrailError):
    """The service is stopping: work in progress was interrupted cleanly (what was committed stays); retry later."""


class FetchError(FacetrailError):
    """A listed URL could not be fetched: refused (address, robots.txt, size, type) or failed (timeout, HTTP)."""
