"""Reading uploaded files into memory under a size limit."""

from __future__ import annotations

from fastapi import UploadFile
from starlette.formparsers import MultiPartParser

# Starlette spools an uploaded file to a temporary file past 1 MB. A query photo must never touch
# the disk (hard rule 5), so uploads up to this size stay in memory; larger ones are refused.
IN_MEMORY_LIMIT = 100 * 1024 * 1024


def keep_uploads_in_memory(limit: int = IN_MEMORY_LIMIT) -> None:
    MultiPartParser.spool_max_size = limit


def read_upload(upload: UploadFile, max_bytes: int) -> tuple[bytes, str | None]:
    """The upload's bytes, or an error text if it is larger than `max_bytes`."""
    data = upload.file.read(max_bytes + 1)
    if len(data) > max_bytes:
        return b"", f"file too large (the limit is {max_bytes} bytes)"
    return data, None
