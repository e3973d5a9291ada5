"""The metadata store (SQLAlchemy), its migrations, and the blob store for crops and images."""
