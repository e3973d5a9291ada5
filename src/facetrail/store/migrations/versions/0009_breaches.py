"""The breach register (GDPR Art. 33/34): breaches and their append-only history of updates.

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-30
"""

import sqlalchemy as sa
from alembic import op

from facetrail.store.models import UTCDateTime

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

APPEND_ONLY_SQLITE = """
CREATE TRIGGER breach_updates_no_{op} BEFORE {OP} ON breach_updates
BEGIN SELECT RAISE(ABORT, 'the history of a breach is append-only'); END
"""

APPEND_ONLY_POSTGRES = [
    """CREATE FUNCTION breach_updates_append_only() RETURNS trigger AS $$
    BEGIN RAISE EXCEPTION 'the history of a breach is append-only'; END $$ LANGUAGE plpgsql""",
    """CREATE TRIGGER breach_updates_append_only BEFORE UPDATE OR DELETE ON breach_updates
    FOR EACH ROW EXECUTE FUNCTION breach_updates_append_only()""",
]


def upgrade() -> None:
    op.create_table(
        "breaches",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("title", sa.String(200), nullable=False),
        sa.Column("nature", sa.Text, nullable=False),
        sa.Column("data_categories", sa.JSON, nullable=False),
        sa.Column("subject_categories", sa.JSON, nullable=False),
        sa.Column("approx_subjects", sa.Integer, nullable=True),
        sa.Column("approx_records", sa.Integer, nullable=True),
        sa.Column("consequences", sa.Text, nullable=False),
        sa.Column("measures", sa.Text, nullable=False),
        sa.Column("occurred_at", UTCDateTime, nullable=True),
        sa.Column("aware_at", UTCDateTime, nullable=False),
        sa.Column("scope", sa.JSON, nullable=False),
        sa.Column("authority_status", sa.String(20), nullable=False),
        sa.Column("authority_notified_at", UTCDateTime, nullable=True),
        sa.Column("authority_reference", sa.String(200), nullable=True),
        sa.Column("delay_reasons", sa.Text, nullable=True),
        sa.Column("subjects_status", sa.String(20), nullable=False),
        sa.Column("subjects_notified_at", UTCDateTime, nullable=True),
        sa.Column("notification_note", sa.Text, nullable=True),
        sa.Column("closed_at", UTCDateTime, nullable=True),
        sa.Column("recorded_at", UTCDateTime, nullable=False),
        sa.Column("recorded_by", sa.String(100), nullable=False),
    )
    op.create_table(
        "breach_updates",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("breach_id", sa.Integer, sa.ForeignKey("breaches.id"), nullable=False),
        sa.Column("at", UTCDateTime, nullable=False),
        sa.Column("actor", sa.String(100), nullable=False),
        sa.Column("changes", sa.JSON, nullable=False),
        sa.Column("note", sa.Text, nullable=False),
    )
    op.create_index("ix_breach_updates_breach_id", "breach_updates", ["breach_id"])
    dialect = op.get_bind().dialect.name
    if dialect == "sqlite":
        for name in ("update", "delete"):
            op.execute(APPEND_ONLY_SQLITE.format(op=name, OP=name.upper()))
    elif dialect == "postgresql":
        for statement in APPEND_ONLY_POSTGRES:
            op.execute(statement)


def downgrade() -> None:
    op.drop_table("breach_updates")
    op.drop_table("breaches")
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP FUNCTION breach_updates_append_only()")
