"""People: identities that clustering groups faces into, and each face's person.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-27
"""

import sqlalchemy as sa
from alembic import op

from facetrail.store.models import UTCDateTime

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "people",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("source_id", sa.Integer, sa.ForeignKey("sources.id"), nullable=False),
        sa.Column("model_id", sa.String(64), nullable=False),
        sa.Column("name", sa.String(200), nullable=True),
        sa.Column("created_at", UTCDateTime, nullable=False),
        sa.Column("updated_at", UTCDateTime, nullable=False),
    )
    op.create_index("ix_people_source_id", "people", ["source_id"])
    # SQLite cannot add a foreign key to an existing table: batch mode copies `faces` into a new
    # table that has it (on PostgreSQL the same calls become plain ALTER TABLE statements).
    with op.batch_alter_table("faces") as batch:
        batch.add_column(sa.Column("person_id", sa.Integer, nullable=True))
        batch.create_foreign_key("fk_faces_person_id_people", "people", ["person_id"], ["id"])
        batch.create_index("ix_faces_person_id", ["person_id"])


def downgrade() -> None:
    with op.batch_alter_table("faces") as batch:
        batch.drop_index("ix_faces_person_id")
        batch.drop_constraint("fk_faces_person_id_people", type_="foreignkey")
        batch.drop_column("person_id")
    op.drop_index("ix_people_source_id", table_name="people")
    op.drop_table("people")
