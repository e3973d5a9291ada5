"""URL-list sources: the URLs a source declares, and where and when a fetched image came from.

Revision ID: 0012_url_sources
Revises: 0010
Create Date: 2026-12-01
"""

import sqlalchemy as sa
from alembic import op

from facetrail.store.models import UTCDateTime

revision = "0012_url_sources"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "source_urls",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("source_id", sa.Integer, sa.ForeignKey("sources.id"), nullable=False),
        sa.Column("url", sa.String(2000), nullable=False),
        sa.Column("declared_at", UTCDateTime, nullable=False),
        sa.Column("declared_by", sa.String(200), nullable=False),
        sa.UniqueConstraint("source_id", "url", name="uq_source_urls_source_url"),
    )
    op.create_index("ix_source_urls_source_id", "source_urls", ["source_id"])
    with op.batch_alter_table("images") as batch:
        batch.add_column(sa.Column("origin_url", sa.Text, nullable=True))
        batch.add_column(sa.Column("fetched_at", UTCDateTime, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("images") as batch:
        batch.drop_column("fetched_at")
        batch.drop_column("origin_url")
    op.drop_index("ix_source_urls_source_id", "source_urls")
    op.drop_table("source_urls")
