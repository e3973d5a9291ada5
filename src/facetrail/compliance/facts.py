"""What the record of processing and the DPIA are generated from: the settings and the store, read at one
moment. Nothing here is written by hand: change a source, an account or a setting and the facts change."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from facetrail.accounts.roles import PERMISSIONS, Action
from facetrail.audit.log import AuditLog
from facetrail.config import Settings
from facetrail.crypto.keyring import Keyring
from facetrail.policy.legal import ART9_DESCRIPTIONS, Art9Condition
from facetrail.store.db import Database
from facetrail.store.models import (
    Account,
    AuditEntry,
    Breach,
    Face,
    Person,
    RightsRequest,
    SearchRecord,
    SearchResultRecord,
    Source,
    StoredImage,
    Suppression,
)
from facetrail.vision.calibration import Band, Calibration


@dataclass(frozen=True)
class Contacts:
    """Art. 30(1)(a): who answers for the processing (settings; None where not configured)."""

    controller_name: str | None
    controller_contact: str | None
    representative: str | None
    dpo_contact: str | None
    source_controllers: tuple[str, ...]


@dataclass(frozen=True)
class SourceFacts:
    id: int
    name: str
    controller: str
    purposes: tuple[str, ...]
    legal_basis: str
    art9_condition: str
    art9_description: str
    evidence_ref: str
    jurisdictions: tuple[str, ...]
    retention_days: int
    description: str
    created_at: datetime
    images: int
    faces: int
    oldest_image_at: datetime | None


@dataclass(frozen=True)
class Recipient:
    """An active account that may search; `purposes` None = every purpose."""

    account: str
    role: str
    purposes: tuple[str, ...] | None
    expires_at: datetime | None


@dataclass(frozen=True)
class Volumes:
    sources: int
    images: int
    images_with_stored_bytes: int
    faces: int
    restricted_faces: int
    people: int
    named_people: int
    searches: int
    faces_shown_by_searches: int
    rights_requests: int
    suppression_entries: int
    breaches: int
    audit_entries: int


@dataclass(frozen=True)
class Measure:
    """A security measure as it stands: `state` is read from `evidence` (a setting or the store)."""

    name: str
    state: str
    evidence: str


@dataclass(frozen=True)
class BandFacts:
    band: str
    target_fmr: float
    distance_threshold: float


@dataclass(frozen=True)
class ModelFacts:
    """The face model in use and what its calibration measured."""

    model_id: str
    template_dim: int
    calibrated: bool
    calibration_data: str | None
    impostor_comparisons: int | None
    bands: tuple[BandFacts, ...]
    min_band: str


@dataclass(frozen=True)
class Facts:
    generated_at: datetime
    contacts: Contacts
    sources: tuple[SourceFacts, ...]
    search_roles: tuple[str, ...]
    recipients: tuple[Recipient, ...]
    searches_by_purpose: dict[str, int]
    accounts_by_role: dict[str, int]
    volumes: Volumes
    measures: tuple[Measure, ...]
    processors: tuple[Measure, ...]
    model: ModelFacts

    @property
    def purposes(self) -> tuple[str, ...]:
        return tuple(sorted({p for s in self.sources for p in s.purposes}))

    def recipients_for(self, purpose: str) -> list[Recipient]:
        return [r for r in self.recipients if r.purposes is None or purpose in r.purposes]


@dataclass(frozen=True)
class Collaborators:
    """What gathering reads: passed in, so compliance/ depends on nothing above it."""

    settings: Settings
    db: Database
    audit: AuditLog
    keyring: Keyring
    model_id: str
    template_dim: int
    calibration: Calibration | None


def gather(parts: Collaborators, now: datetime, session: Session | None = None) -> Facts:
    """The facts as of `now`, read in `session` (a new read session if none is given)."""
    if session is None:
        with parts.db.read() as own:
            return gather(parts, now, own)
    sources = _sources(session)
    accounts = list(session.scalars(select(Account).order_by(Account.id)))
    active = [a for a in accounts if a.disabled_at is None and (a.expires_at is None or a.expires_at > now)]
    search_roles = tuple(sorted(PERMISSIONS[Action.SEARCH]))
    recipients = tuple(Recipient(a.name, a.role, None if a.purposes is None else tuple(a.purposes), a.expires_at)
                       for a in active if a.role in search_roles)
    searches = dict(session.execute(
        select(SearchRecord.purpose, func.count()).group_by(SearchRecord.purpose)).all())
    volumes = _volumes(session, len(sources))
    unsealed = (_count(session, select(func.count()).select_from(Face).where(Face.key_id.is_(None)))
                + _count(session, select(func.count()).select_from(StoredImage).where(
                    StoredImage.blob_key.is_not(None), StoredImage.key_id.is_(None))))
    secure_delete = _secure_delete(session)
    return Facts(
        generated_at=now,
        contacts=Contacts(parts.settings.controller_name, parts.settings.controller_contact,
                          parts.settings.representative, parts.settings.dpo_contact,
                          tuple(sorted({s.controller for s in sources}))),
        sources=tuple(sources), search_roles=search_roles, recipients=recipients,
        searches_by_purpose={str(k): int(v) for k, v in searches.items()},
        accounts_by_role=dict(sorted(Counter(a.role for a in active).items())),
        volumes=volumes,
        measures=tuple(_measures(parts, active, volumes, unsealed, secure_delete)),
        processors=tuple(_processors(parts.settings)),
        model=_model(parts),
    )


def _count(session: Session, statement: object) -> int:
    return int(session.scalar(statement) or 0)  # type: ignore[call-overload]  # a select(func.count()) statement


def _sources(session: Session) -> list[SourceFacts]:
    images = {sid: (n, oldest) for sid, n, oldest in session.execute(
        select(StoredImage.source_id, func.count(), func.min(StoredImage.ingested_at)).group_by(StoredImage.source_id))}
    faces = dict(session.execute(select(Face.source_id, func.count()).group_by(Face.source_id)).all())
    result = []
    for s in session.scalars(select(Source).order_by(Source.id)):
        count, oldest = images.get(s.id, (0, None))
        result.append(SourceFacts(
            id=s.id, name=s.name, controller=s.controller, purposes=tuple(s.purposes), legal_basis=s.legal_basis,
            art9_condition=s.art9_condition, art9_description=ART9_DESCRIPTIONS[Art9Condition(s.art9_condition)],
            evidence_ref=s.evidence_ref, jurisdictions=tuple(s.jurisdictions), retention_days=s.retention_days,
            description=s.description, created_at=s.created_at, images=int(count), faces=int(faces.get(s.id, 0)),
            # SQLite's min() hands back the stored text, not the column type
            oldest_image_at=_as_datetime(oldest)))
    return result


def _as_datetime(value: object) -> datetime | None:
    if value is None:
        return None
    moment = value if isinstance(value, datetime) else datetime.fromisoformat(str(value))
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment


def _volumes(session: Session, sources: int) -> Volumes:
    def count(model: type, *where: object) -> int:
        return _count(session, select(func.count()).select_from(model).where(*where))  # type: ignore[arg-type]

    return Volumes(
        sources=sources, images=count(StoredImage),
        images_with_stored_bytes=count(StoredImage, StoredImage.blob_key.is_not(None)),
        faces=count(Face), restricted_faces=count(Face, Face.restricted.is_(True)), people=count(Person),
        named_people=count(Person, Person.name.is_not(None)), searches=count(SearchRecord),
        faces_shown_by_searches=count(SearchResultRecord), rights_requests=count(RightsRequest),
        suppression_entries=count(Suppression), breaches=count(Breach), audit_entries=count(AuditEntry),
    )


def _secure_delete(session: Session) -> str:
    if session.get_bind().dialect.name != "sqlite":
        return "not SQLite: rely on the database's own storage reclamation"
    value = session.connection().exec_driver_sql("PRAGMA secure_delete").scalar()
    return "on" if value else "OFF"


def _master_key_source(settings: Settings) -> tuple[str, str]:
    if settings.kms:
        return f"KMS hook {settings.kms}", "setting kms"
    if settings.master_key is not None:
        return "the FACETRAIL_MASTER_KEY environment variable", "setting master_key"
    path = settings.master_key_file
    inside = path.resolve().is_relative_to(settings.data.resolve())
    where = "inside the data directory: keep a copy apart from the backups" if inside else "outside the data directory"
    return f"key file {path} ({where})", "setting key_file"


def _measures(parts: Collaborators, active: list[Account], volumes: Volumes, unsealed: int,
              secure_delete: str) -> list[Measure]:
    s = parts.settings
    key_source, key_evidence = _master_key_source(s)
    scoped = sum(1 for a in active if a.role in PERMISSIONS[Action.SEARCH] and a.purposes is not None)
    searchers = sum(1 for a in active if a.role in PERMISSIONS[Action.SEARCH])
    head = parts.audit.read_head()
    return [
        Measure("encryption at rest", f"templates, face crops and stored images sealed with AES-GCM under per-record "
                f"data keys ({parts.keyring.count()} keys held); records not yet sealed: {unsealed}",
                "keyring and store"),
        Measure("master key", key_source, key_evidence),
        Measure("deleted rows overwritten (SQLite secure_delete)", secure_delete, "database pragma"),
        Measure("API key lifetime", "keys never expire" if s.key_ttl_days == 0 else f"{s.key_ttl_days} days",
                "setting key_ttl_days"),
        Measure("search keys limited to purposes", f"{scoped} of {searchers} active search keys", "accounts"),
        Measure("search rate limit",
                "none" if s.search_per_minute == 0 else f"{s.search_per_minute} per key per minute",
                "setting search_per_minute"),
        Measure("request rate limit per address", "none" if s.requests_per_minute_per_ip == 0
                else f"{s.requests_per_minute_per_ip} per minute", "setting requests_per_minute_per_ip"),
        Measure("rights portal intake limit", f"{s.intake_per_hour} requests per e-mail and per address per hour",
                "setting intake_per_hour"),
        Measure("identity before disclosure", _identity_check(s, calibrated=parts.calibration is not None),
                "settings code_ttl_minutes, manual_check; model calibration"),
        Measure("access package link", f"shredded {s.package_ttl_days} days after it is made",
                "setting package_ttl_days"),
        Measure("image bytes kept", "yes, encrypted" if s.store_images else "no: only templates and crops are kept",
                "setting store_images"),
        Measure("audit log", f"hash-chained, append-only, {volumes.audit_entries} entries; head anchor "
                + (f"at entry {head[0]}" if head else "not written yet"), "audit_log table and head file"),
        Measure("trusted reverse proxies", str(len(s.trusted_proxies)), "setting trusted_proxies"),
    ]


def _identity_check(s: Settings, *, calibrated: bool) -> str:
    if not calibrated:
        return "no selfie check possible: the model has no calibration, so rights requests cannot be verified"
    manual = "required for every request" if s.manual_check else "when the DPO asks for it"
    return (f"e-mail code valid {s.code_ttl_minutes} min, a selfie matching the faces in the "
            f"'{Band.STRONG.value}' band, manual DPO check {manual}")


def _processors(settings: Settings) -> list[Measure]:
    """Parties outside the data directory that facetrail's configuration hands data to."""
    result = [Measure("mail to requesters", f"SMTP server {settings.smtp_host}:{settings.smtp_port}"
                      if settings.smtp_host else "none: written to <data>/outbox", "setting smtp_host")]
    if settings.kms:
        result.append(Measure("key management", f"data keys wrapped by the KMS hook {settings.kms}", "setting kms"))
    return result


def _model(parts: Collaborators) -> ModelFacts:
    cal = parts.calibration
    bands = () if cal is None else tuple(
        BandFacts(b.value, b.target_fmr, cal.thresholds[b]) for b in (Band.STRONG, Band.PROBABLE, Band.POSSIBLE))
    return ModelFacts(model_id=parts.model_id, template_dim=parts.template_dim, calibrated=cal is not None,
                      calibration_data=None if cal is None else cal.data,
                      impostor_comparisons=None if cal is None else cal.impostor_comparisons, bands=bands,
                      min_band=parts.settings.min_band)
