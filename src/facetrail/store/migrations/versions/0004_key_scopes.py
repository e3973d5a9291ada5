"""API keys scoped by purpose and with an expiry.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-26
"""

import sqlalchemy as sa
from alembic import op

from facetrail.store.models import UTCDateTime

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("accounts") as batch:
        batch.add_column(sa.Column("purposes", sa.JSON, nullable=True))
        batch.add_column(sa.Column("expires_at", UTCDateTime, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("accounts") as batch:
        batch.drop_column("expires_at")
        batch.drop_column("purposes")
