"""The console's ingestion of a server-side folder: which folders it may read, and the batches running in the
background.

An operator may only ingest from the folders listed in the `console_folders` setting (none by default) and the
folders under them. A requested folder is resolved (`..` and symbolic links followed) and refused unless it still
lies under a listed folder; a file or archive found inside whose real path leads out of them is an error item of
the report, never read. Each batch runs in a thread of the server through the same IngestService as the CLI (so
it is audited as any ingestion: `ingest.start`, `ingest.finish`), one at a time per source, and its progress
(items done of the total) is kept here for the page that polls it.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from facetrail.accounts.roles import Action, Actor, require
from facetrail.errors import ConflictError, FacetrailError, InvalidValueError, NotFoundError
from facetrail.runtime import Facetrail
from facetrail.sources.inputs import InputItem, Limits, count_items, from_paths

MAX_CHOICES = 500  # folders offered in the picker
KEEP_FINISHED = 100  # finished batches whose page still answers (the oldest are forgotten)
CHOICE_DEPTH = 2  # levels below each allowed folder offered in the picker
OUTSIDE = "its real path is outside the folders the console may ingest from"
UNRESOLVED = "its real path cannot be resolved (a loop of symbolic links)"


def allowed_roots(folders: Iterable[Path]) -> list[Path]:
    """The configured folders, resolved; those that are not folders are left out."""
    return [root for root in (Path(f).expanduser().resolve() for f in folders) if root.is_dir()]


def _under(path: Path, roots: list[Path]) -> bool:
    return any(path == root or path.is_relative_to(root) for root in roots)


def allowed_folder(requested: str, roots: list[Path]) -> Path:
    """The folder `requested` names, resolved, if it lies under one of `roots`; else InvalidValueError."""
    if not roots:
        raise InvalidValueError("folder", "no server folder is open to the console (the console_folders setting)")
    if not requested.strip():
        raise InvalidValueError("folder", "choose a folder")
    folder = Path(requested.strip()).expanduser().resolve()
    if not _under(folder, roots):
        raise InvalidValueError("folder", f"{requested.strip()} is not under a folder the console may ingest from")
    if not folder.is_dir():
        raise InvalidValueError("folder", f"{requested.strip()} is not a folder")
    return folder


def folder_choices(roots: list[Path]) -> list[str]:
    """The allowed folders and the folders under them (CHOICE_DEPTH levels, symbolic links leading out left out),
    for the picker; at most MAX_CHOICES."""
    found: list[str] = []

    def visit(folder: Path, depth: int) -> None:
        if len(found) >= MAX_CHOICES:
            return
        found.append(str(folder))
        if depth >= CHOICE_DEPTH:
            return
        try:
            children = sorted(child for child in folder.iterdir() if child.is_dir())
        except OSError:
            return
        for child in children:
            real = child.resolve()
            if _under(real, roots) and not child.name.startswith("."):
                visit(child, depth + 1)

    for root in roots:
        visit(root, 0)
    return found


def _on_disk(name: str) -> Path:
    """The file an item was read from: the item's own path, or the archive's for a member (archive!member)."""
    path = Path(name)
    while not path.exists() and "!" in str(path):
        path = Path(str(path).rsplit("!", 1)[0])
    return path


def folder_items(folder: Path, roots: list[Path], limits: Limits) -> Iterator[InputItem]:
    """The items of the folder (inputs.from_paths), those whose real path leads out of `roots` (or cannot be
    resolved: a loop of symbolic links) made error items."""
    for item in from_paths([folder], limits):
        if item.error is not None or item.skipped is not None:
            yield item
            continue
        try:
            real = _on_disk(item.name).resolve()
        except (OSError, RuntimeError):  # RuntimeError: a loop of symbolic links
            yield InputItem(item.name, _nothing, error=UNRESOLVED)
            continue
        yield item if _under(real, roots) else InputItem(item.name, _nothing, error=OUTSIDE)


def _nothing() -> bytes:
    return b""


@dataclass
class FolderJob:
    """One folder's ingestion: its progress, then its report (IngestReport.as_dict()) or the error that ended it."""

    id: str
    source_id: int
    source: str
    folder: str
    actor: str
    done: int = 0
    total: int = 0
    running: bool = True
    report: dict[str, Any] | None = None
    error: str | None = None
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def progress(self, done: int, total: int) -> None:
        with self.lock:
            self.done, self.total = done, total

    def as_dict(self) -> dict[str, Any]:
        with self.lock:
            return {"id": self.id, "source_id": self.source_id, "source": self.source, "folder": self.folder,
                    "done": self.done, "total": self.total, "running": self.running,
                    "outcome": self.report["outcome"] if self.report else None, "error": self.error}


class FolderJobs:
    """The folder ingestions of this server process, one running at a time per source."""

    def __init__(self) -> None:
        self._jobs: dict[str, FolderJob] = {}
        self._lock = threading.Lock()

    def start(self, ft: Facetrail, actor: Actor, source_id: int, requested: str) -> FolderJob:
        """Start ingesting the folder into the source in a background thread; InvalidValueError for a folder the
        console may not read, ConflictError while another folder is being ingested into the source."""
        require(actor, Action.INGEST)
        roots = allowed_roots(ft.settings.console_folders)
        folder = allowed_folder(requested, roots)
        source = ft.sources.require_source(source_id)
        if source.retired_at is not None:
            raise ConflictError(f"source {source.id} is retired; it takes no new images")
        with self._lock:
            if any(j.running and j.source_id == source_id for j in self._jobs.values()):
                raise ConflictError(f"a folder is already being ingested into source {source_id}: wait for it")
            job = FolderJob(uuid.uuid4().hex, source_id, source.name, str(folder), actor.name)
            finished = [key for key, j in self._jobs.items() if not j.running]  # oldest first
            for key in finished[:max(0, len(finished) - KEEP_FINISHED)]:
                del self._jobs[key]
            self._jobs[job.id] = job
        with ft.db.write() as session, session.begin():
            ft.audit.record(session, actor=actor.name, action="ingest.folder",
                            details={"source_id": source_id, "folder": str(folder), "job": job.id})
        threading.Thread(target=self._run, args=(ft, actor, job, folder, roots), name=f"ingest-folder-{job.id}",
                         daemon=True).start()
        return job

    def _run(self, ft: Facetrail, actor: Actor, job: FolderJob, folder: Path, roots: list[Path]) -> None:
        try:
            # The folder is walked twice, once to count its items for the progress, neither walk holding them.
            report = ft.ingest.ingest(actor, job.source_id, folder_items(folder, roots, ft.input_limits),
                                      total=count_items([folder], ft.input_limits), progress=job.progress)
            with job.lock:
                job.report = {**report.as_dict(), "source": job.source}
        except FacetrailError as exc:
            with job.lock:
                job.error = str(exc)
        except Exception as exc:  # noqa: BLE001  # a thread's failure must reach the page, not vanish
            with job.lock:
                job.error = f"the ingestion stopped: {type(exc).__name__}: {exc}"
        finally:
            with job.lock:
                job.running = False

    def get(self, actor: Actor, job_id: str) -> FolderJob:
        require(actor, Action.INGEST)
        job = self._jobs.get(job_id)
        if job is None:
            raise NotFoundError(f"no folder ingestion {job_id} in this server process")
        return job
