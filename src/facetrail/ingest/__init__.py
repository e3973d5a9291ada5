"""Ingestion: from a source's inputs to stored images, faces, templates and index entries."""
