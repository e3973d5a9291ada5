"""Reading uploaded files into memory under a size limit."""

from __future__ import annotations

from fastapi import UploadFile
from starlette.formparsers import MultiPartParser

from facetrail.sources.inputs import InputItem, Limits, from_upload

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


def upload_items(files: list[UploadFile], limits: Limits) -> list[InputItem]:
    """Uploaded images or zip archives as the items an ingestion takes; a file over the size limit is an item
    with its error (reported per file, the batch goes on)."""
    items: list[InputItem] = []
    for upload in files:
        name = upload.filename or "upload"
        data, error = read_upload(upload, limits.max_file_bytes)
        if error:
            items.append(InputItem(name, bytes, error=error))
        else:
            items.extend(from_upload(name, data, limits))
    return items
