"""Encryption at rest: a master key outside the database wraps one data key per record (envelope
encryption); destroying a record's data key makes every copy of its ciphertext unreadable."""
