"""The first schema: sources, images, faces, accounts, searches, the audit log and meta.

Revision ID: 0001
Revises:
Create Date: 2026-11-26
"""

import sqlalchemy as sa
from alembic import op

from facetrail.store.models import UTCDateTime

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

APPEND_ONLY_SQLITE = """
CREATE TRIGGER audit_log_no_{op} BEFORE {OP} ON audit_log
BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END
"""

APPEND_ONLY_POSTGRES = [
    """CREATE FUNCTION audit_log_append_only() RETURNS trigger AS $$
    BEGIN RAISE EXCEPTION 'the audit log is append-only'; END $$ LANGUAGE plpgsql""",
    """CREATE TRIGGER audit_log_append_only BEFORE UPDATE OR DELETE ON audit_log
    FOR EACH ROW EXECUTE FUNCTION audit_log_append_only()""",
]


def upgrade() -> None:
    op.create_table(
        "sources",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("name", sa.String(200), nullable=False, unique=True),
        sa.Column("controller", sa.String(200), nullable=False),
        sa.Column("purposes", sa.JSON, nullable=False),
        sa.Column("legal_basis", sa.String(40), nullable=False),
        sa.Column("art9_condition", sa.String(4), nullable=False),
        sa.Column("evidence_ref", sa.String(500), nullable=False),
        sa.Column("jurisdictions", sa.JSON, nullable=False),
        sa.Column("retention_days", sa.Integer, nullable=False),
        sa.Column("description", sa.Text, nullable=False),
        sa.Column("created_at", UTCDateTime, nullable=False),
        sa.Column("created_by", sa.String(200), nullable=False),
    )
    op.create_table(
        "images",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("source_id", sa.Integer, sa.ForeignKey("sources.id"), nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("original_name", sa.Text, nullable=False),
        sa.Column("size_bytes", sa.Integer, nullable=False),
        sa.Column("width", sa.Integer, nullable=False),
        sa.Column("height", sa.Integer, nullable=False),
        sa.Column("format", sa.String(16), nullable=False),
        sa.Column("face_count", sa.Integer, nullable=False),
        sa.Column("blob_key", sa.String(200), nullable=True),
        sa.Column("ingested_at", UTCDateTime, nullable=False),
        sa.UniqueConstraint("source_id", "sha256", name="uq_images_source_sha256"),
    )
    op.create_index("ix_images_source_id", "images", ["source_id"])
    op.create_index("ix_images_sha256", "images", ["sha256"])
    op.create_table(
        "faces",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("image_id", sa.Integer, sa.ForeignKey("images.id"), nullable=False),
        sa.Column("source_id", sa.Integer, sa.ForeignKey("sources.id"), nullable=False),
        sa.Column("ordinal", sa.Integer, nullable=False),
        sa.Column("box_left", sa.Integer, nullable=False),
        sa.Column("box_top", sa.Integer, nullable=False),
        sa.Column("box_right", sa.Integer, nullable=False),
        sa.Column("box_bottom", sa.Integer, nullable=False),
        sa.Column("landmarks", sa.JSON, nullable=False),
        sa.Column("detector", sa.String(16), nullable=False),
        sa.Column("detector_score", sa.Float, nullable=False),
        sa.Column("size_px", sa.Integer, nullable=False),
        sa.Column("sharpness", sa.Float, nullable=False),
        sa.Column("yaw", sa.Float, nullable=False),
        sa.Column("model_id", sa.String(64), nullable=False),
        sa.Column("template", sa.LargeBinary, nullable=False),
        sa.Column("crop_key", sa.String(200), nullable=True),
        sa.Column("created_at", UTCDateTime, nullable=False),
    )
    op.create_index("ix_faces_image_id", "faces", ["image_id"])
    op.create_index("ix_faces_source_model", "faces", ["source_id", "model_id"])
    op.create_table(
        "accounts",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("name", sa.String(100), nullable=False, unique=True),
        sa.Column("role", sa.String(20), nullable=False),
        sa.Column("key_id", sa.String(32), nullable=False, unique=True),
        sa.Column("key_hash", sa.String(64), nullable=False),
        sa.Column("created_at", UTCDateTime, nullable=False),
        sa.Column("disabled_at", UTCDateTime, nullable=True),
    )
    op.create_table(
        "searches",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("actor", sa.String(100), nullable=False),
        sa.Column("role", sa.String(20), nullable=False),
        sa.Column("purpose", sa.String(100), nullable=False),
        sa.Column("case_ref", sa.String(200), nullable=False),
        sa.Column("query_sha256", sa.String(64), nullable=False),
        sa.Column("created_at", UTCDateTime, nullable=False),
    )
    op.create_table(
        "search_results",
        sa.Column("search_id", sa.String(32), sa.ForeignKey("searches.id"), primary_key=True),
        sa.Column("rank", sa.Integer, primary_key=True),
        sa.Column("face_id", sa.Integer, nullable=False),
        sa.Column("score", sa.Float, nullable=False),
    )
    op.create_index("ix_search_results_face_id", "search_results", ["face_id"])
    op.create_table(
        "audit_log",
        sa.Column("seq", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("at", sa.String(40), nullable=False),
        sa.Column("actor", sa.String(100), nullable=False),
        sa.Column("action", sa.String(60), nullable=False),
        sa.Column("details", sa.Text, nullable=False),
        sa.Column("prev_hash", sa.String(64), nullable=False),
        sa.Column("hash", sa.String(64), nullable=False),
    )
    op.create_table(
        "meta",
        sa.Column("key", sa.String(60), primary_key=True),
        sa.Column("value", sa.Text, nullable=False),
    )
    if op.get_bind().dialect.name == "sqlite":
        for name in ("update", "delete"):
            op.execute(APPEND_ONLY_SQLITE.format(op=name, OP=name.upper()))
    elif op.get_bind().dialect.name == "postgresql":
        for statement in APPEND_ONLY_POSTGRES:
            op.execute(statement)


def downgrade() -> None:
    for table in ("meta", "audit_log", "search_results", "searches", "accounts", "faces", "images", "sources"):
        op.drop_table(table)
