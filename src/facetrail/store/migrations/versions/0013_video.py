"""Videos: the videos ingested, their tracks (one person in one shot), key frames and faces tied to them.

Revision ID: 0013_video
Revises: 0012_url_sources
Create Date: 2026-12-01
"""

import sqlalchemy as sa
from alembic import op

from facetrail.store.models import UTCDateTime

revision = "0013_video"
down_revision = "0012_url_sources"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "videos",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("source_id", sa.Integer, sa.ForeignKey("sources.id"), nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("original_name", sa.Text, nullable=False),
        sa.Column("size_bytes", sa.Integer, nullable=False),
        sa.Column("container", sa.String(60), nullable=False),
        sa.Column("codec", sa.String(40), nullable=False),
        sa.Column("width", sa.Integer, nullable=False),
        sa.Column("height", sa.Integer, nullable=False),
        sa.Column("duration_s", sa.Float, nullable=False),
        sa.Column("fps", sa.Float, nullable=False),
        sa.Column("frames_decoded", sa.Integer, nullable=False),
        sa.Column("frames_analysed", sa.Integer, nullable=False),
        sa.Column("faces_detected", sa.Integer, nullable=False),
        sa.Column("ingested_at", UTCDateTime, nullable=False),
        sa.Column("source_version", sa.Integer, nullable=False),
        sa.Column("origin_url", sa.Text, nullable=True),
        sa.Column("fetched_at", UTCDateTime, nullable=True),
        sa.UniqueConstraint("source_id", "sha256", name="uq_videos_source_sha256"),
    )
    op.create_index("ix_videos_source_id", "videos", ["source_id"])
    op.create_index("ix_videos_sha256", "videos", ["sha256"])
    op.create_table(
        "tracks",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("video_id", sa.Integer, sa.ForeignKey("videos.id"), nullable=False),
        sa.Column("source_id", sa.Integer, sa.ForeignKey("sources.id"), nullable=False),
        sa.Column("ordinal", sa.Integer, nullable=False),
        sa.Column("shot", sa.Integer, nullable=False),
        sa.Column("ranges", sa.JSON, nullable=False),
        sa.Column("sightings", sa.Integer, nullable=False),
        sa.Column("best_face_id", sa.Integer, nullable=True),
        sa.Column("templates", sa.Integer, nullable=False),
    )
    op.create_index("ix_tracks_video_id", "tracks", ["video_id"])
    op.create_index("ix_tracks_source_id", "tracks", ["source_id"])
    # ADD COLUMN with its reference, no table rebuild (which SQLite's foreign keys to `images` and `faces` refuse
    # once they hold rows); SQLite accepts a REFERENCES clause on a column added with a NULL default.
    if op.get_bind().dialect.name == "sqlite":
        op.execute("ALTER TABLE images ADD COLUMN video_id INTEGER REFERENCES videos (id)")
        op.execute("ALTER TABLE faces ADD COLUMN track_id INTEGER REFERENCES tracks (id)")
    else:
        op.add_column("images", sa.Column("video_id", sa.Integer, sa.ForeignKey("videos.id"), nullable=True))
        op.add_column("faces", sa.Column("track_id", sa.Integer, sa.ForeignKey("tracks.id"), nullable=True))
    op.add_column("images", sa.Column("frame_time", sa.Float, nullable=True))
    op.create_index("ix_images_video_id", "images", ["video_id"])
    op.create_index("ix_faces_track_id", "faces", ["track_id"])


def downgrade() -> None:
    op.drop_index("ix_faces_track_id", "faces")
    with op.batch_alter_table("faces") as batch:
        batch.drop_column("track_id")
    op.drop_index("ix_images_video_id", "images")
    with op.batch_alter_table("images") as batch:
        batch.drop_column("frame_time")
        batch.drop_column("video_id")
    op.drop_index("ix_tracks_source_id", "tracks")
    op.drop_index("ix_tracks_video_id", "tracks")
    op.drop_table("tracks")
    op.drop_index("ix_videos_sha256", "videos")
    op.drop_index("ix_videos_source_id", "videos")
    op.drop_table("videos")
