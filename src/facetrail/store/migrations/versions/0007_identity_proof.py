"""Identity proof: live-presence challenges, the DPO's evidence per request, and per-purpose disclosure policy.

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-30
"""

import sqlalchemy as sa
from alembic import op

from facetrail.store.models import UTCDateTime

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "identity_challenges",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("request_id", sa.String(32), sa.ForeignKey("rights_requests.id"), nullable=False, index=True),
        sa.Column("nonce", sa.String(64), nullable=False, unique=True),
        sa.Column("poses", sa.JSON, nullable=False),
        sa.Column("issued_at", UTCDateTime, nullable=False),
        sa.Column("expires_at", UTCDateTime, nullable=False),
        sa.Column("used_at", UTCDateTime, nullable=True),
        sa.Column("outcome", sa.String(20), nullable=True),
    )
    with op.batch_alter_table("rights_requests") as batch:
        batch.add_column(sa.Column("evidence", sa.JSON, nullable=True))
        batch.add_column(sa.Column("evidence_key_id", sa.String(32), nullable=True))
        batch.add_column(sa.Column("staff_answer", sa.JSON, nullable=True))
    op.create_table(
        "disclosure_policies",
        sa.Column("purpose", sa.String(100), primary_key=True),
        sa.Column("case_refs", sa.String(20), nullable=False),
        sa.Column("legal_ground", sa.Text, nullable=False),
        sa.Column("set_by", sa.String(200), nullable=False),
        sa.Column("set_at", UTCDateTime, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("disclosure_policies")
    with op.batch_alter_table("rights_requests") as batch:
        batch.drop_column("staff_answer")
        batch.drop_column("evidence_key_id")
        batch.drop_column("evidence")
    op.drop_table("identity_challenges")
