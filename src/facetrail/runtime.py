"""The Python API: one object that opens a data directory and wires the services together.

    ft = Facetrail.open(Path("facetrail-data"))    # create=True to make it when it does not exist yet
    source = ft.sources.add(actor, name=..., purposes=["demo"], ...)
    report = ft.ingest.ingest(actor, source.id, from_paths([Path("photos")], ft.input_limits))
    outcome = ft.search.search(actor, photo_bytes, purpose="demo", case_ref="case-1")
"""

from __future__ import annotations

import getpass
from collections.abc import Callable, Iterable
from contextlib import ExitStack
from dataclasses import asdict
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray
from sqlalchemy import select

from facetrail.accounts.roles import Action, Actor, Role, require
from facetrail.accounts.service import AccountService
from facetrail.audit.checkpoints import AgainstResult, CheckpointService, ConsistencyProof, InclusionProof
from facetrail.audit.log import AuditLog, VerifyResult
from facetrail.audit.note import Checkpoint, Verifier
from facetrail.audit.query import AuditQuery
from facetrail.audit.signing import load_signer
from facetrail.compliance.breaches import BreachService
from facetrail.compliance.facts import Collaborators
from facetrail.compliance.orders import OrderService
from facetrail.compliance.retention import RetentionService
from facetrail.compliance.retirement import RetirementService
from facetrail.compliance.service import ComplianceService
from facetrail.config import Settings, get_settings
from facetrail.crypto.setup import open_vault, rotate_master_key
from facetrail.datadir import is_data_dir, require_data_dir, swap
from facetrail.errors import ConflictError
from facetrail.fsutil import private_dir
from facetrail.index.engines import open_index_store
from facetrail.index.gallery import Gallery, SyncReport
from facetrail.ingest.analysis import Analyzer, vision_config
from facetrail.ingest.reembed import Reembedder, ReembedReport, refuse_other_models
from facetrail.ingest.report import IngestReport
from facetrail.ingest.service import IngestService, Progress
from facetrail.people.service import PeopleService
from facetrail.policy.geocode import OfflineGeocoder
from facetrail.policy.jurisdiction import JurisdictionResolver
from facetrail.policy.suppression import SuppressionList
from facetrail.rights import identity
from facetrail.rights.disclosure import DisclosurePolicies
from facetrail.rights.erasure import ErasureService
from facetrail.rights.evidence import EvidenceStore
from facetrail.rights.fulfilment import Fulfilment
from facetrail.rights.liveness import FrameReading
from facetrail.rights.mailer import Mailer, OutboxMailer, SmtpMailer
from facetrail.rights.proof import CaptureFrame, IdentityProof, Match
from facetrail.rights.reapply import reapply_ledger
from facetrail.rights.restriction import RestrictionService
from facetrail.rights.service import RequestService, purge_expired_packages
from facetrail.search.scoring import Scorer
from facetrail.search.service import SearchService
from facetrail.sources.fetch import Fetcher, FetchPolicy
from facetrail.sources.inputs import InputItem, Limits
from facetrail.sources.registry import SourceRegistry
from facetrail.sources.urls import url_items
from facetrail.store.blobs import BlobStore, blob_storage
from facetrail.store.db import Database
from facetrail.store.models import AuditEntry, RightsRequest
from facetrail.store.sealing import check_keyring, seal_cleartext
from facetrail.vision.calibration import Band

RESUME_ACTOR = "system:erasure-resume"
"""Who the audit log names for an erasure finished when a data directory is opened."""
AUDIT_HEAD = "audit.head"
AUDIT_CHECKPOINTS = "audit-checkpoints"
CHECKPOINT_ACTOR = "system:checkpoint"
"""Who the audit log names for the checkpoints the server makes on its own (schedule, erasures, orders)."""
RESTORE_ACTOR = "system:restore"
"""Who the audit log names for the erasures a restore re-applies."""


class Facetrail:
    def __init__(self, settings: Settings, *, create: bool = False, model_change: bool = False) -> None:
        """Open the data directory `settings.data`; with `create`, make it first if it is not one yet
        (otherwise a path that holds no data directory is refused: a typo must not become a new store).
        A directory whose faces are all of another vision model is refused unless `model_change` (re-embedding
        them, or counting them)."""
        self.settings = settings
        self._model_change = model_change
        self.data = settings.data
        # Reached first (a bucket is checked here), so that an unreachable blob storage leaves nothing made.
        self._storage = blob_storage(settings)
        created = create and not is_data_dir(self.data)
        if created:
            private_dir(self.data)
        else:
            require_data_dir(self.data)
        self._open_files = ExitStack()
        self._open_files.enter_context(swap.in_use(self.data))  # a restore waits for no one: it refuses
        try:
            with ExitStack() as finishing:
                if swap.read_journal(self.data) is not None:
                    finishing.enter_context(swap.finishing(self.data))
                self._open(settings)
            if created:
                with self.db.write() as session, session.begin():
                    self.audit.record(session, actor=local_actor().name, action="data.create",
                                      details={"model_id": self.gallery.model_id})
        except BaseException:
            self._open_files.close()
            raise

    def _open(self, settings: Settings) -> None:
        pending_restore = swap.finish_swap(self.data)
        self.db = Database(settings.database_url)
        self.db.migrate()
        self.vault = open_vault(settings)
        check_keyring(self.db, self.vault)
        self.blobs = BlobStore(self.data / "blobs", self.vault, self._storage)
        seal_cleartext(self.db, self.blobs)  # records an earlier version stored in clear (none, usually)
        self.audit = AuditLog(self.data / AUDIT_HEAD)
        self.checkpoints = CheckpointService(self.db, self.audit, self.data / AUDIT_CHECKPOINTS,
                                             lambda: load_signer(settings), archives=self.data / "audit-archive")
        self.analyzer = Analyzer(vision_config(settings))
        backend = self.analyzer.backend  # cheap: weights load on first use
        if not self._model_change:
            try:
                refuse_other_models(self.db, backend.model_id, self.data)
            except BaseException:
                self.db.dispose()
                raise
        index_store = open_index_store(settings, self.vault, model_id=backend.model_id, dim=backend.template_dim,
                                       closing=self._open_files)
        self.gallery = Gallery(self.db, index_store, self.vault, model_id=backend.model_id,
                               dim=backend.template_dim)
        self.gallery.secure_at_rest()
        self.sources = SourceRegistry(self.db, self.audit)
        self.accounts = AccountService(self.db, self.audit, key_ttl_days=settings.key_ttl_days,
                                       ledger=self.vault.keyring)
        self.people = PeopleService(self.db, self.audit, self.vault, self.blobs, model_id=backend.model_id,
                                    dim=backend.template_dim)
        self.suppressions = SuppressionList(self.db, self.audit, self.vault, model_id=backend.model_id,
                                            dim=backend.template_dim)
        self.erasure = ErasureService(self.db, self.blobs, self.gallery, self.audit,
                                      max_image_pixels=settings.max_image_pixels,
                                      after_completed=self.checkpoint_after)
        # Erasure jobs: each is followed by one audit checkpoint (not one per batch).
        batch, signed = settings.erasure_batch, self.checkpoint_after
        self.orders = OrderService(self.db, self.erasure, self.audit, batch=batch, after_job=signed)
        self.retention = RetentionService(self.db, self.erasure, self.audit, batch=batch, after_job=signed)
        self.retirement = RetirementService(self.db, self.erasure, self.audit, batch=batch, after_job=signed)
        self.restriction = RestrictionService(self.db, self.gallery, self.audit)
        self.disclosure = DisclosurePolicies(self.db, self.audit)
        self.ingest = IngestThenCluster(settings, self.db, self.blobs, self.gallery, self.audit, self.sources,
                                        self.analyzer, people=self.people, suppressions=self.suppressions,
                                        jurisdictions=JurisdictionResolver(OfflineGeocoder()))
        self.search = SearchService(settings, self.db, self.blobs, self.gallery, self.audit, self.sources,
                                    self.analyzer, Scorer(backend.calibration()))
        self.breaches = BreachService(self.db, self.audit)
        self.compliance = ComplianceService(Collaborators(
            settings, self.db, self.audit, self.vault.keyring, model_id=backend.model_id,
            template_dim=backend.template_dim, calibration=self.search.scorer.calibration),
            self.orders, self.checkpoints)
        # An erasure cut short by a crash is finished before anything else can read what it removes.
        self.erasure.resume(RESUME_ACTOR)
        purge_expired_packages(self.db, self.blobs, self.audit)  # access packages whose link expired: shredded
        self.restore_report: dict[str, object] | None = None
        if pending_restore is not None:
            self.restore_report = self._finish_restore(pending_restore)

    def _finish_restore(self, journal: dict[str, Any]) -> dict[str, object]:
        """The last step of a restore (also after a crash): re-apply the ledger, audit it, drop the journal."""
        reapplied = reapply_ledger(self.db, self.blobs, self.erasure, RESTORE_ACTOR)
        archived = journal.get("audit_archive") or {}
        with self.db.read() as session:
            known = set(session.scalars(select(RightsRequest.id)))
        report: dict[str, object] = {
            # Requests received after the backup: the audit archive has their history, the store no longer.
            "requests_not_in_backup": [r for r in archived.get("request_ids", []) if r not in known],
            "archive": journal["archive"], "backup_created_at": journal["backup_created_at"],
            "faces_in_backup": journal["backup_faces"], "images_in_backup": journal["backup_images"],
            **asdict(reapplied), "audit_archive": journal.get("audit_archive"),
        }
        with self.db.write() as session, session.begin():
            self.audit.record(session, actor=journal.get("actor", RESTORE_ACTOR), action="backup.restore",
                              details=report)
        swap.done(self.data)
        return report

    @cached_property
    def requests(self) -> RequestService:
        """Data-subject requests, wired on first use (after every service they act through exists)."""
        settings = self.settings
        mailer: Mailer = (SmtpMailer(settings.smtp_host, settings.smtp_port, settings.mail_from, settings.smtp_user,
                                     settings.smtp_password) if settings.smtp_host
                          else OutboxMailer(self.data / "outbox", settings.mail_from))

        scorer = self.search.scorer

        def strong() -> float:
            # The 'strong' band: a stranger's face matches someone else's about once in 10,000 comparisons.
            if not scorer.calibrated:
                raise ConflictError("this model has no calibration; rights requests need its 'strong' band")
            return scorer.max_distance(Band.STRONG)

        def read_frame(frame: CaptureFrame) -> FrameReading:
            return identity.read_frame(self.analyzer, frame, max_pixels=settings.max_image_pixels,
                                       crop_size=settings.crop_size)

        def match_faces(template: NDArray[np.float32]) -> list[Match]:
            found = identity.find_own_faces(self.db, self.gallery, template, strong())
            return [Match(face_id, distance, scorer.score(distance), str(scorer.band(distance) or ""))
                    for face_id, distance in found.items()]

        evidence = EvidenceStore(self.blobs, self.gallery.dim)
        proof = IdentityProof(read_frame=read_frame, match_faces=match_faces, same_face=strong,
                              window_s=settings.challenge_seconds)
        fulfilment = Fulfilment(settings, self.db, self.blobs, eraser=self.erasure, restricter=self.restriction,
                                suppressor=self.suppressions, capture_template=evidence.template,
                                dim=self.gallery.dim)
        return RequestService(settings, self.db, self.blobs, self.audit, mailer, proof=proof, evidence=evidence,
                              fulfil_kind=fulfilment)

    @classmethod
    def open(cls, data: Path | None = None, *, create: bool = False, model_change: bool = False,
             **overrides: object) -> Facetrail:
        """Open a data directory (`create`: make it if `data` holds none yet; `model_change`: even if its faces
        are all of another vision model, to re-embed them); `overrides` replace settings."""
        return cls(get_settings(data=data, **overrides), create=create, model_change=model_change)

    @property
    def input_limits(self) -> Limits:
        return Limits(self.settings.max_file_bytes, self.settings.max_zip_member_bytes,
                      self.settings.max_zip_members)

    def url_items(self, actor: Actor, source_id: int) -> list[InputItem]:
        """The items of a URL-list source: one per declared URL, fetched when the ingestion reads it (sources/
        fetch.py: robots.txt, checked addresses and redirects, rate and size limits, an identifying User-Agent)."""
        fetcher = Fetcher(FetchPolicy.from_settings(self.settings))
        return url_items([declared.url for declared in self.sources.urls(actor, source_id)], fetcher)

    def verify_audit(self, actor: Actor) -> VerifyResult:
        """Verify the audit chain and record that it was verified (verifications are accounted for too)."""
        require(actor, Action.AUDIT_READ)
        with self.db.read() as session:
            result = self.audit.verify(session)
        with self.db.write() as session, session.begin():
            self.audit.record(session, actor=actor.name, action="audit.verify",
                              details={"ok": result.ok, "entries": result.entries,
                                       "first_broken_seq": result.first_broken_seq})
        return result

    def verify_audit_against(self, actor: Actor, checkpoint_text: str, verifier: Verifier, *,
                             origin: str = "checkpoint") -> AgainstResult:
        """Verify the chain and that the log extends each signed checkpoint in `checkpoint_text`; audited."""
        require(actor, Action.AUDIT_READ)
        result = self.checkpoints.verify_against(checkpoint_text, verifier, origin)
        with self.db.write() as session, session.begin():
            self.audit.record(session, actor=actor.name, action="audit.verify", details={
                "ok": result.ok, "entries": result.chain.entries, "first_broken_seq": result.chain.first_broken_seq,
                "against": [{"size": c.checkpoint.size, "root": c.checkpoint.root.hex(), "ok": c.ok}
                            for c in result.checks]})
        return result

    def checkpoint_audit(self, actor: Actor, *, reason: str = "on demand") -> Checkpoint:
        """Sign a checkpoint of the audit log now (needs the signing key; see audit/signing.py)."""
        require(actor, Action.AUDIT_READ)
        checkpoint = self.checkpoints.emit(actor.name, reason=reason)
        assert checkpoint is not None  # asked for, it is always signed
        return checkpoint

    def prove_audit_entry(self, actor: Actor, seq: int, *, size: int | None = None) -> InclusionProof:
        """An inclusion proof for entry `seq` (default: in the newest checkpoint kept here); audited."""
        require(actor, Action.AUDIT_READ)
        proof = self.checkpoints.inclusion(seq, size)
        self._record_read(actor, "audit.prove", {"seq": seq, "size": proof.size})
        return proof

    def prove_audit_consistency(self, actor: Actor, first: int, second: int) -> ConsistencyProof:
        """A consistency proof between the log's trees of `first` and `second` entries; audited."""
        require(actor, Action.AUDIT_READ)
        proof = self.checkpoints.consistency(first, second)
        self._record_read(actor, "audit.prove", {"first": first, "second": second})
        return proof

    def _record_read(self, actor: Actor, action: str, details: dict[str, object]) -> None:
        with self.db.write() as session, session.begin():
            self.audit.record(session, actor=actor.name, action=action, details=details)

    def latest_audit_checkpoint(self, actor: Actor) -> Checkpoint:
        """The newest checkpoint kept here that the configured key signed."""
        require(actor, Action.AUDIT_READ)
        return self.checkpoints.latest_verified()

    def checkpoint_after(self, reason: str, *, scheduled: bool = False) -> Checkpoint | None:
        """The server's own checkpoint after an erasure or an order (`reason` says which), or on its schedule:
        skipped (and said in the server log) without a signing key, never failing the work it follows; piped
        to the configured push command. A scheduled one hashes the whole log and is skipped when nothing was
        logged since the last; the others hash only the entries since the last (they follow a request)."""
        return self.checkpoints.maybe_emit(CHECKPOINT_ACTOR, reason=reason, scheduled=scheduled,
                                           push_command=self.settings.checkpoint_push_command)

    def read_audit(self, actor: Actor, query: AuditQuery | None = None, *, after: int = 0,
                   limit: int = 100) -> list[AuditEntry]:
        """Entries after seq `after`, in order, that match `query` (every entry without one)."""
        require(actor, Action.AUDIT_READ)
        conditions = (query or AuditQuery()).conditions()
        with self.db.read() as session:
            return list(session.scalars(
                select(AuditEntry).where(AuditEntry.seq > after, *conditions).order_by(AuditEntry.seq).limit(limit)))

    def rebuild_index(self, actor: Actor) -> SyncReport:
        require(actor, Action.INDEX_ADMIN)
        report = self.gallery.rebuild()
        with self.db.write() as session, session.begin():
            self.audit.record(session, actor=actor.name, action="index.rebuild",
                              details={"faces": report.added, "model_id": self.gallery.model_id})
        return report

    def faces_of_other_models(self) -> int:
        """Stored faces whose template is not of the configured vision model: out of every search until
        `facetrail index reembed` gives them one."""
        return Reembedder(self.db, self.blobs, self.vault, self.analyzer.backend,
                          max_image_pixels=self.settings.max_image_pixels).pending()[1]

    def reembed(self, actor: Actor, progress: Callable[[int, int], None] | None = None) -> ReembedReport:
        """Give every stored face a template of the configured vision model (ingest/reembed.py), then rebuild
        the index; once no face of another model is left, the other models' index files are deleted."""
        require(actor, Action.INDEX_ADMIN)
        job = Reembedder(self.db, self.blobs, self.vault, self.analyzer.backend,
                         max_image_pixels=self.settings.max_image_pixels)
        report = job.run(progress)
        self.gallery.rebuild(reason="re-embedded")
        if job.pending()[1] == 0:
            for stale in (self.data / "index").glob("*.ftindex"):
                if stale.stem != self.gallery.model_id:
                    stale.unlink()
        with self.db.write() as session, session.begin():
            self.audit.record(session, actor=actor.name, action="index.reembed", details={
                "model_id": report.model_id, "images": report.images, "faces": report.faces,
                "not_found": len(report.not_found), "unavailable": len(report.unavailable),
                "failed_images": len(report.failed_images)})
        return report

    def close(self) -> None:
        try:
            self.gallery.close()
        finally:
            self.db.dispose()
            self._open_files.close()


class IngestThenCluster(IngestService):
    """Ingestion that, when the `cluster_people` setting is on, places a batch's new faces into people.

    Composed here, where the services are wired, so that ingest/ never imports people/ (dependencies
    point one way) and every edge that ingests (command line, upload route, Python API) gets it.
    """

    def __init__(self, settings: Settings, db: Database, blobs: BlobStore, gallery: Gallery, audit: AuditLog,
                 sources: SourceRegistry, analyzer: Analyzer, *, people: PeopleService,
                 suppressions: SuppressionList, jurisdictions: JurisdictionResolver) -> None:
        super().__init__(settings, db, blobs, gallery, audit, sources, analyzer, suppressions=suppressions,
                         jurisdictions=jurisdictions)
        self.people = people

    def ingest(self, actor: Actor, source_id: int, items: Iterable[InputItem], *, total: int | None = None,
               progress: Progress | None = None, workers: int | None = None,
               queue_url: str | None = None) -> IngestReport:
        report = super().ingest(actor, source_id, items, total=total, progress=progress, workers=workers,
                                queue_url=queue_url)
        if self.settings.cluster_people and report.faces_added:
            self.people.cluster(actor, source_id=report.source_id)
        return report


def rotate_keys(settings: Settings, actor: Actor, *, new_key_file: Path | None = None) -> dict[str, object]:
    """Re-wrap every data key under a new master key, with the data directory to itself (a running server
    would go on wrapping new keys with the old one), and audit it without opening the directory again: with
    FACETRAIL_MASTER_KEY the environment still holds the old key until the operator replaces it."""
    require(actor, Action.KEYS)
    require_data_dir(settings.data)
    with swap.exclusive(settings.data, "rotating the master key"):
        result = rotate_master_key(settings, open_vault(settings), new_key_file=new_key_file)
        db = Database(settings.database_url)
        try:
            with db.write() as session, session.begin():
                AuditLog(settings.data / AUDIT_HEAD).record(
                    session, actor=actor.name, action="keys.rotate",
                    details={k: v for k, v in result.items() if k != "key_file"})
        finally:
            db.dispose()
    return result


def local_actor() -> Actor:
    """The command line's account: the local operator, named in the audit log by OS user."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = "unknown"
    return Actor(name=f"local:{user}", role=Role.OPERATOR, local=True)
