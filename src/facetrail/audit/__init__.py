"""The append-only, hash-chained audit log (hard rule 4)."""

from facetrail.audit.log import AuditLog, VerifyResult

__all__ = ["AuditLog", "VerifyResult"]
