"""Encryption at rest: each face, stored image and suppression entry names its data key.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-26

Records written before this revision hold cleartext templates and blobs; `store.sealing` seals them the
first time the data directory is opened with this version.
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

TABLES = ("faces", "images", "suppressions")


def upgrade() -> None:
    for table in TABLES:
        with op.batch_alter_table(table) as batch:
            batch.add_column(sa.Column("key_id", sa.String(32), nullable=True))
    for table in TABLES:
        op.create_index(f"ix_{table}_key_id", table, ["key_id"])


def downgrade() -> None:
    for table in TABLES:
        op.drop_index(f"ix_{table}_key_id", table)
    for table in TABLES:
        with op.batch_alter_table(table) as batch:
            batch.drop_column("key_id")
