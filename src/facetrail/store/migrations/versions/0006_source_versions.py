"""Sources are edited, never silently rewritten: contacts, a version number and the history of legal terms; each
image records the version of its source's legal terms it was ingested under.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-30

Each existing source gets its version 1, with the terms it was registered with, and each existing image version 1.
"""

import sqlalchemy as sa
from alembic import op

from facetrail.store.models import UTCDateTime

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

NO_UPDATE_SQLITE = """
CREATE TRIGGER source_versions_no_update BEFORE UPDATE ON source_versions
BEGIN SELECT RAISE(ABORT, 'source versions are never rewritten; make a new version'); END
"""

NO_UPDATE_POSTGRES = [
    """CREATE FUNCTION source_versions_no_update() RETURNS trigger AS $$
    BEGIN RAISE EXCEPTION 'source versions are never rewritten; make a new version'; END $$ LANGUAGE plpgsql""",
    """CREATE TRIGGER source_versions_no_update BEFORE UPDATE ON source_versions
    FOR EACH ROW EXECUTE FUNCTION source_versions_no_update()""",
]


def upgrade() -> None:
    with op.batch_alter_table("sources") as batch:
        batch.add_column(sa.Column("version", sa.Integer, nullable=False, server_default="1"))
        batch.add_column(sa.Column("controller_contact", sa.String(500), nullable=False, server_default=""))
        batch.add_column(sa.Column("representative", sa.String(500), nullable=False, server_default=""))
    with op.batch_alter_table("images") as batch:
        batch.add_column(sa.Column("source_version", sa.Integer, nullable=False, server_default="1"))
    op.create_table(
        "source_versions",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("source_id", sa.Integer, sa.ForeignKey("sources.id"), nullable=False, index=True),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("purposes", sa.JSON, nullable=False),
        sa.Column("legal_basis", sa.String(40), nullable=False),
        sa.Column("art9_condition", sa.String(4), nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("created_at", UTCDateTime, nullable=False),
        sa.Column("created_by", sa.String(200), nullable=False),
        sa.UniqueConstraint("source_id", "version", name="uq_source_versions_version"),
    )
    op.execute("INSERT INTO source_versions (source_id, version, purposes, legal_basis, art9_condition, reason, "
               "created_at, created_by) SELECT id, 1, purposes, legal_basis, art9_condition, 'registered', "
               "created_at, created_by FROM sources")
    dialect = op.get_bind().dialect.name
    if dialect == "sqlite":
        op.execute(NO_UPDATE_SQLITE)
    elif dialect == "postgresql":
        for statement in NO_UPDATE_POSTGRES:
            op.execute(statement)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER IF EXISTS source_versions_no_update ON source_versions")
        op.execute("DROP FUNCTION IF EXISTS source_versions_no_update()")
    op.drop_table("source_versions")
    with op.batch_alter_table("images") as batch:
        batch.drop_column("source_version")
    with op.batch_alter_table("sources") as batch:
        batch.drop_column("representative")
        batch.drop_column("controller_contact")
        batch.drop_column("version")
