"""Data-subject rights (GDPR Art. 12, 15-21): requests, identity verification, access, erasure, objection,
restriction and opt-out, without time windows, frequency caps or partial answers."""
