"""Data-subject rights: requests and their events, the suppression list, erasure plans, restriction.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-26
"""

import sqlalchemy as sa
from alembic import op

from facetrail.store.models import UTCDateTime

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("faces") as batch:
        batch.add_column(sa.Column("restricted", sa.Boolean, nullable=False, server_default=sa.false()))
    op.create_table(
        "rights_requests",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("kind", sa.String(20), nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("email", sa.String(320), nullable=False),
        sa.Column("received_at", UTCDateTime, nullable=False),
        sa.Column("due_at", UTCDateTime, nullable=False),
        sa.Column("status_token_hash", sa.String(64), nullable=False),
        sa.Column("intake_ip_hash", sa.String(64), nullable=False),
        sa.Column("details", sa.JSON, nullable=False),
        sa.Column("code_hash", sa.String(64), nullable=True),
        sa.Column("code_expires_at", UTCDateTime, nullable=True),
        sa.Column("code_attempts", sa.Integer, nullable=False),
        sa.Column("email_verified_at", UTCDateTime, nullable=True),
        sa.Column("selfie_key", sa.String(200), nullable=True),
        sa.Column("selfie_checked_at", UTCDateTime, nullable=True),
        sa.Column("matched_face_ids", sa.JSON, nullable=False),
        sa.Column("manual_check", sa.String(20), nullable=False),
        sa.Column("extension_months", sa.Integer, nullable=False),
        sa.Column("extension_reasons", sa.Text, nullable=True),
        sa.Column("extension_sent_at", UTCDateTime, nullable=True),
        sa.Column("refusal_justification", sa.Text, nullable=True),
        sa.Column("unfounded_justification", sa.Text, nullable=True),
        sa.Column("answer", sa.JSON, nullable=True),
        sa.Column("package_key", sa.String(200), nullable=True),
        sa.Column("package_token_hash", sa.String(64), nullable=True),
        sa.Column("package_expires_at", UTCDateTime, nullable=True),
        sa.Column("closed_at", UTCDateTime, nullable=True),
    )
    op.create_index("ix_rights_requests_status", "rights_requests", ["status"])
    op.create_index("ix_rights_requests_email", "rights_requests", ["email"])
    op.create_index("ix_rights_requests_due_at", "rights_requests", ["due_at"])
    op.create_table(
        "request_events",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("request_id", sa.String(32), sa.ForeignKey("rights_requests.id"), nullable=False),
        sa.Column("at", UTCDateTime, nullable=False),
        sa.Column("from_status", sa.String(20), nullable=True),
        sa.Column("to_status", sa.String(20), nullable=False),
        sa.Column("actor", sa.String(100), nullable=False),
        sa.Column("note", sa.Text, nullable=False),
    )
    op.create_index("ix_request_events_request_id", "request_events", ["request_id"])
    op.create_table(
        "suppressions",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("request_id", sa.String(32), nullable=True),
        sa.Column("model_id", sa.String(64), nullable=False),
        sa.Column("purposes", sa.JSON, nullable=False),
        sa.Column("template", sa.LargeBinary, nullable=False),
        sa.Column("created_at", UTCDateTime, nullable=False),
    )
    op.create_index("ix_suppressions_request_id", "suppressions", ["request_id"])
    op.create_table(
        "erasures",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("request_id", sa.String(32), nullable=True),
        sa.Column("state", sa.String(20), nullable=False),
        sa.Column("plan", sa.JSON, nullable=False),
        sa.Column("receipt", sa.JSON, nullable=True),
        sa.Column("created_at", UTCDateTime, nullable=False),
        sa.Column("completed_at", UTCDateTime, nullable=True),
    )
    op.create_index("ix_erasures_request_id", "erasures", ["request_id"])
    op.create_index("ix_erasures_state", "erasures", ["state"])


def downgrade() -> None:
    for table in ("erasures", "suppressions", "request_events", "rights_requests"):
        op.drop_table(table)
    with op.batch_alter_table("faces") as batch:
        batch.drop_column("restricted")
