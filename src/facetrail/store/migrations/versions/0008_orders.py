"""Enforcement orders, jurisdiction per image, erasure causes and retired sources.

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-30

Images stored before this revision get their source's declared jurisdictions (basis `source-declared`):
their EXIF position, if any, was not read then and their bytes are sealed now.
"""

import json

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "image_jurisdictions",
        sa.Column("image_id", sa.Integer, sa.ForeignKey("images.id"), primary_key=True),
        sa.Column("code", sa.String(2), primary_key=True),
        sa.Column("basis", sa.String(20), primary_key=True),
    )
    op.create_index("ix_image_jurisdictions_code", "image_jurisdictions", ["code"])
    op.create_table(
        "enforcement_orders",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("authority", sa.String(200), nullable=False),
        sa.Column("reference", sa.String(200), nullable=False),
        sa.Column("received_on", sa.Date, nullable=False),
        sa.Column("jurisdictions", sa.JSON, nullable=False),
        sa.Column("source_ids", sa.JSON, nullable=False),
        sa.Column("cease", sa.Boolean, nullable=False),
        sa.Column("erase", sa.Boolean, nullable=False),
        sa.Column("deadline", sa.Date, nullable=False),
        sa.Column("daily_penalty", sa.Integer, nullable=False),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("answer_access_first", sa.Boolean, nullable=False),
        sa.Column("recorded_at", sa.DateTime, nullable=False),
        sa.Column("recorded_by", sa.String(200), nullable=False),
        sa.Column("items_refused", sa.Integer, nullable=False),
        sa.Column("job_state", sa.String(20), nullable=False),
        sa.Column("job_started_at", sa.DateTime, nullable=True),
        sa.Column("complied_at", sa.DateTime, nullable=True),
    )
    with op.batch_alter_table("erasures") as batch:
        batch.add_column(sa.Column("cause", sa.String(60), nullable=True))
    op.create_index("ix_erasures_cause", "erasures", ["cause"])
    with op.batch_alter_table("sources") as batch:
        batch.add_column(sa.Column("retired_at", sa.DateTime, nullable=True))
        batch.add_column(sa.Column("retirement", sa.String(30), nullable=True))
    _declared_jurisdictions()


def _declared_jurisdictions() -> None:
    conn = op.get_bind()
    declared = {source_id: json.loads(codes) if isinstance(codes, str) else codes
                for source_id, codes in conn.execute(sa.text("SELECT id, jurisdictions FROM sources"))}
    rows = [{"image_id": image_id, "code": code, "basis": "source-declared"}
            for image_id, source_id in conn.execute(sa.text("SELECT id, source_id FROM images"))
            for code in declared.get(source_id) or []]
    if rows:
        conn.execute(sa.text("INSERT INTO image_jurisdictions (image_id, code, basis) VALUES (:image_id, :code, "
                             ":basis)"), rows)


def downgrade() -> None:
    with op.batch_alter_table("sources") as batch:
        batch.drop_column("retirement")
        batch.drop_column("retired_at")
    op.drop_index("ix_erasures_cause", "erasures")
    with op.batch_alter_table("erasures") as batch:
        batch.drop_column("cause")
    op.drop_table("enforcement_orders")
    op.drop_index("ix_image_jurisdictions_code", "image_jurisdictions")
    op.drop_table("image_jurisdictions")
