"""Backups of a data directory (store, blobs, index) that can never bring back an erased person."""
