"""The metadata schema: data plus small invariants. Behaviour lives in the services.

The store is the source of truth; the vector index is derived from `faces.template` and can be
rebuilt from it at any time.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    Date,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship
from sqlalchemy.sql import false


def utcnow() -> datetime:
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """Aware UTC datetimes in, aware UTC datetimes out, on every backend (SQLite keeps no zone)."""

    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value: datetime | None, _dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        return value.astimezone(UTC).replace(tzinfo=None)

    def process_result_value(self, value: datetime | None, _dialect: Any) -> datetime | None:
        return None if value is None else value.replace(tzinfo=UTC)


class Base(DeclarativeBase):
    pass


class Source(Base):
    """A registered origin of images with its recorded legal basis (hard rule 1)."""

    __tablename__ = "sources"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    controller: Mapped[str] = mapped_column(String(200))
    purposes: Mapped[list[str]] = mapped_column(JSON)
    legal_basis: Mapped[str] = mapped_column(String(40))
    art9_condition: Mapped[str] = mapped_column(String(4))
    evidence_ref: Mapped[str] = mapped_column(String(500))
    jurisdictions: Mapped[list[str]] = mapped_column(JSON)
    retention_days: Mapped[int] = mapped_column(Integer)
    description: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    created_by: Mapped[str] = mapped_column(String(200))
    version: Mapped[int] = mapped_column(Integer, default=1)
    controller_contact: Mapped[str] = mapped_column(String(500), default="")
    representative: Mapped[str] = mapped_column(String(500), default="")
    retired_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    retirement: Mapped[str | None] = mapped_column(String(30), nullable=True)


class StoredImage(Base):
    """One ingested image, identified within its source by the SHA-256 of its bytes."""

    __tablename__ = "images"
    __table_args__ = (UniqueConstraint("source_id", "sha256", name="uq_images_source_sha256"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    source_id: Mapped[int] = mapped_column(ForeignKey("sources.id"), index=True)
    sha256: Mapped[str] = mapped_column(String(64), index=True)
    original_name: Mapped[str] = mapped_column(Text)
    size_bytes: Mapped[int] = mapped_column(Integer)
    width: Mapped[int] = mapped_column(Integer)
    height: Mapped[int] = mapped_column(Integer)
    format: Mapped[str] = mapped_column(String(16))
    face_count: Mapped[int] = mapped_column(Integer)
    blob_key: Mapped[str | None] = mapped_column(String(200), nullable=True)
    # The data key the stored bytes are sealed under (crypto/); None when no bytes are kept.
    key_id: Mapped[str | None] = mapped_column(String(32), nullable=True, index=True)
    ingested_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    source_version: Mapped[int] = mapped_column(Integer, default=1)
    origin_url: Mapped[str | None] = mapped_column(Text, nullable=True)
    fetched_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    # A key frame of a video (the frame a track's kept face is in): derived from the video, which is not kept.
    video_id: Mapped[int | None] = mapped_column(ForeignKey("videos.id"), nullable=True, index=True)
    frame_time: Mapped[float | None] = mapped_column(Float, nullable=True)

    source: Mapped[Source] = relationship()
    faces: Mapped[list[Face]] = relationship(back_populates="image", order_by="Face.id")


class Face(Base):
    """One face in one image: where it is, how good it is, and its biometric template."""

    __tablename__ = "faces"
    __table_args__ = (Index("ix_faces_source_model", "source_id", "model_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    image_id: Mapped[int] = mapped_column(ForeignKey("images.id"), index=True)
    # Denormalised from the image so that purpose filtering needs no join on the search path.
    source_id: Mapped[int] = mapped_column(ForeignKey("sources.id"))
    ordinal: Mapped[int] = mapped_column(Integer)
    box_left: Mapped[int] = mapped_column(Integer)
    box_top: Mapped[int] = mapped_column(Integer)
    box_right: Mapped[int] = mapped_column(Integer)
    box_bottom: Mapped[int] = mapped_column(Integer)
    landmarks: Mapped[list[list[float]]] = mapped_column(JSON)
    detector: Mapped[str] = mapped_column(String(16))
    detector_score: Mapped[float] = mapped_column(Float)
    size_px: Mapped[int] = mapped_column(Integer)
    sharpness: Mapped[float] = mapped_column(Float)
    yaw: Mapped[float] = mapped_column(Float)
    model_id: Mapped[str] = mapped_column(String(64))
    # Sealed (crypto/) under this face's own data key, as is its crop: destroying the key shreds both.
    template: Mapped[bytes] = mapped_column(LargeBinary)
    crop_key: Mapped[str | None] = mapped_column(String(200), nullable=True)
    key_id: Mapped[str | None] = mapped_column(String(32), nullable=True, index=True)  # None: not sealed yet
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    # The identity clustering put this face in (people/); None until a clustering run reaches it.
    person_id: Mapped[int | None] = mapped_column(ForeignKey("people.id"), nullable=True, index=True)
    # Art. 18 restriction: kept, but out of every search (and out of the index) while set.
    restricted: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    # The video track this face is a kept template of; None for a face of a photo.
    track_id: Mapped[int | None] = mapped_column(ForeignKey("tracks.id"), nullable=True, index=True)

    image: Mapped[StoredImage] = relationship(back_populates="faces")


class Person(Base):
    """A group of faces that clustering found to be one identity, optionally named by the operator.

    A person lives inside one source and one template space: faces of different sources are never
    grouped (linking people across collections registered for different purposes would be a new
    processing), and templates of two models are not comparable.
    """

    __tablename__ = "people"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    source_id: Mapped[int] = mapped_column(ForeignKey("sources.id"), index=True)
    model_id: Mapped[str] = mapped_column(String(64))
    name: Mapped[str | None] = mapped_column(String(200), nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)


class Account(Base):
    """A staff account. Only the SHA-256 of its API key's secret is stored."""

    __tablename__ = "accounts"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    role: Mapped[str] = mapped_column(String(20))
    key_id: Mapped[str] = mapped_column(String(32), unique=True)
    key_hash: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    disabled_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    # The purposes this key may search for; None = every purpose its role allows.
    purposes: Mapped[list[str] | None] = mapped_column(JSON, nullable=True)
    # The key stops working at this moment; None = until disabled.
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)


class SearchRecord(Base):
    """One search as run: who, why, a hash of the query photo (never the photo), and what it returned."""

    __tablename__ = "searches"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    actor: Mapped[str] = mapped_column(String(100))
    role: Mapped[str] = mapped_column(String(20))
    purpose: Mapped[str] = mapped_column(String(100))
    case_ref: Mapped[str] = mapped_column(String(200))
    query_sha256: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    results: Mapped[list[SearchResultRecord]] = relationship(order_by="SearchResultRecord.rank")


class SearchResultRecord(Base):
    """A face shown by a search. Kept as ids only so it outlives an erasure (recipients, Art. 15)."""

    __tablename__ = "search_results"

    search_id: Mapped[str] = mapped_column(ForeignKey("searches.id"), primary_key=True)
    rank: Mapped[int] = mapped_column(Integer, primary_key=True)
    face_id: Mapped[int] = mapped_column(Integer, index=True)
    score: Mapped[float] = mapped_column(Float)


class AuditEntry(Base):
    """One link of the append-only, hash-chained audit log (database triggers forbid edits)."""

    __tablename__ = "audit_log"

    seq: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    at: Mapped[str] = mapped_column(String(40))
    actor: Mapped[str] = mapped_column(String(100))
    action: Mapped[str] = mapped_column(String(60))
    details: Mapped[str] = mapped_column(Text)
    prev_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64))


class Meta(Base):
    """Small key/value facts about the store, e.g. the generation the index must match."""

    __tablename__ = "meta"

    key: Mapped[str] = mapped_column(String(60), primary_key=True)
    value: Mapped[str] = mapped_column(Text)


class RightsRequest(Base):
    """A data-subject request, recorded the moment it arrives (hard rule 7). `id` is the public reference;
    the requester follows it with a secret status token, of which only the hash is kept."""

    __tablename__ = "rights_requests"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    kind: Mapped[str] = mapped_column(String(20))
    status: Mapped[str] = mapped_column(String(20), index=True)
    email: Mapped[str] = mapped_column(String(320), index=True)
    received_at: Mapped[datetime] = mapped_column(UTCDateTime)
    due_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    status_token_hash: Mapped[str] = mapped_column(String(64))
    intake_ip_hash: Mapped[str] = mapped_column(String(64))
    details: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    code_hash: Mapped[str | None] = mapped_column(String(64), nullable=True)
    code_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    code_attempts: Mapped[int] = mapped_column(Integer, default=0)
    email_verified_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    selfie_key: Mapped[str | None] = mapped_column(String(200), nullable=True)
    selfie_checked_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    matched_face_ids: Mapped[list[int]] = mapped_column(JSON, default=list)
    manual_check: Mapped[str] = mapped_column(String(20), default="none")
    extension_months: Mapped[int] = mapped_column(Integer, default=0)
    extension_reasons: Mapped[str | None] = mapped_column(Text, nullable=True)
    extension_sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    refusal_justification: Mapped[str | None] = mapped_column(Text, nullable=True)
    unfounded_justification: Mapped[str | None] = mapped_column(Text, nullable=True)
    answer: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    package_key: Mapped[str | None] = mapped_column(String(200), nullable=True)
    package_token_hash: Mapped[str | None] = mapped_column(String(64), nullable=True)
    package_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    closed_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    evidence: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    evidence_key_id: Mapped[str | None] = mapped_column(String(32), nullable=True)
    staff_answer: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)

    events: Mapped[list[RequestEvent]] = relationship(order_by="RequestEvent.id")


class RequestEvent(Base):
    """One status transition of a request, with who made it and why."""

    __tablename__ = "request_events"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    request_id: Mapped[str] = mapped_column(ForeignKey("rights_requests.id"), index=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    from_status: Mapped[str | None] = mapped_column(String(20), nullable=True)
    to_status: Mapped[str] = mapped_column(String(20))
    actor: Mapped[str] = mapped_column(String(100))
    note: Mapped[str] = mapped_column(Text, default="")


class Suppression(Base):
    """An opt-out (hard rule 6): only what is needed to recognise the person at ingestion, their templates,
    kept with their consent for this purpose; `purposes` lists the purposes it covers ("*" = all)."""

    __tablename__ = "suppressions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    request_id: Mapped[str | None] = mapped_column(String(32), nullable=True, index=True)
    model_id: Mapped[str] = mapped_column(String(64))
    purposes: Mapped[list[str]] = mapped_column(JSON)
    template: Mapped[bytes] = mapped_column(LargeBinary)  # sealed under key_id
    key_id: Mapped[str | None] = mapped_column(String(32), nullable=True, index=True)  # None: not sealed yet
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class Erasure(Base):
    """A planned erasure, written before any byte is removed so an interrupted one resumes (hard rule 9).
    `plan` names the faces and what happens to each image; `receipt` is what the person is given."""

    __tablename__ = "erasures"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    request_id: Mapped[str | None] = mapped_column(String(32), nullable=True, index=True)
    cause: Mapped[str | None] = mapped_column(String(60), nullable=True, index=True)
    state: Mapped[str] = mapped_column(String(20), index=True)
    plan: Mapped[dict[str, Any]] = mapped_column(JSON)
    receipt: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    completed_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)


class SourceVersion(Base):
    """One version of a source's legal terms. A change of purposes, legal basis or Art. 9 condition makes a new
    version (the source row holds the current terms, which ingestion and search use); versions are never
    rewritten (a trigger refuses updates), so the history of what the collection was held for is kept."""

    __tablename__ = "source_versions"
    __table_args__ = (UniqueConstraint("source_id", "version", name="uq_source_versions_version"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    source_id: Mapped[int] = mapped_column(ForeignKey("sources.id"), index=True)
    version: Mapped[int] = mapped_column(Integer)
    purposes: Mapped[list[str]] = mapped_column(JSON)
    legal_basis: Mapped[str] = mapped_column(String(40))
    art9_condition: Mapped[str] = mapped_column(String(4))
    reason: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    created_by: Mapped[str] = mapped_column(String(200))


class IdentityChallenge(Base):
    """A live-presence challenge the portal gave a requester: the head poses to show, in order, before
    `expires_at`; single use (`used_at`). The nonce names it in the capture form: it is no secret (the
    request's status token is), it ties a capture to the one challenge it answers."""

    __tablename__ = "identity_challenges"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    request_id: Mapped[str] = mapped_column(ForeignKey("rights_requests.id"), index=True)
    nonce: Mapped[str] = mapped_column(String(64), unique=True)
    poses: Mapped[list[str]] = mapped_column(JSON)
    issued_at: Mapped[datetime] = mapped_column(UTCDateTime)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    used_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    outcome: Mapped[str | None] = mapped_column(String(20), nullable=True)


class DisclosurePolicy(Base):
    """Whether an access package names the case references of searches made for this purpose, and the legal
    ground recorded for withholding them (e.g. an Art. 23 restriction for ongoing investigations)."""

    __tablename__ = "disclosure_policies"

    purpose: Mapped[str] = mapped_column(String(100), primary_key=True)
    case_refs: Mapped[str] = mapped_column(String(20))
    legal_ground: Mapped[str] = mapped_column(Text)
    set_by: Mapped[str] = mapped_column(String(200))
    set_at: Mapped[datetime] = mapped_column(UTCDateTime)


class ImageJurisdiction(Base):
    """One jurisdiction of an image's faces and how it was decided (policy/jurisdiction.py): `source-declared`
    (the population its source was registered for) or `exif-gps` (where the photo was taken)."""

    __tablename__ = "image_jurisdictions"

    image_id: Mapped[int] = mapped_column(ForeignKey("images.id"), primary_key=True)
    code: Mapped[str] = mapped_column(String(2), primary_key=True, index=True)
    basis: Mapped[str] = mapped_column(String(20), primary_key=True)


class EnforcementOrder(Base):
    """An order of a supervisory authority (hard rule 10): what it covers, what it orders, by when, at what
    daily penalty. Which data it still covers is computed, never stored (compliance/scope.py)."""

    __tablename__ = "enforcement_orders"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    authority: Mapped[str] = mapped_column(String(200))
    reference: Mapped[str] = mapped_column(String(200))
    received_on: Mapped[date] = mapped_column(Date)
    jurisdictions: Mapped[list[str]] = mapped_column(JSON)
    source_ids: Mapped[list[int]] = mapped_column(JSON)
    cease: Mapped[bool] = mapped_column(Boolean)
    erase: Mapped[bool] = mapped_column(Boolean)
    deadline: Mapped[date] = mapped_column(Date)
    daily_penalty: Mapped[int] = mapped_column(Integer)
    currency: Mapped[str] = mapped_column(String(3))
    answer_access_first: Mapped[bool] = mapped_column(Boolean)
    recorded_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    recorded_by: Mapped[str] = mapped_column(String(200))
    items_refused: Mapped[int] = mapped_column(Integer, default=0)
    job_state: Mapped[str] = mapped_column(String(20), default="not_started")
    job_started_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    complied_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)


class Breach(Base):
    """A personal data breach (GDPR Art. 33/34) as it stands now; every change is kept in `updates`.

    `scope` says which data it touched ({"source_ids": [...], "from": iso, "to": iso, "requests": bool}), from
    which the people affected are listed (compliance/breaches.py)."""

    __tablename__ = "breaches"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    title: Mapped[str] = mapped_column(String(200))
    nature: Mapped[str] = mapped_column(Text)
    data_categories: Mapped[list[str]] = mapped_column(JSON)
    subject_categories: Mapped[list[str]] = mapped_column(JSON)
    approx_subjects: Mapped[int | None] = mapped_column(Integer, nullable=True)
    approx_records: Mapped[int | None] = mapped_column(Integer, nullable=True)
    consequences: Mapped[str] = mapped_column(Text)
    measures: Mapped[str] = mapped_column(Text)
    occurred_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    aware_at: Mapped[datetime] = mapped_column(UTCDateTime)
    scope: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    authority_status: Mapped[str] = mapped_column(String(20))
    authority_notified_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    authority_reference: Mapped[str | None] = mapped_column(String(200), nullable=True)
    delay_reasons: Mapped[str | None] = mapped_column(Text, nullable=True)
    subjects_status: Mapped[str] = mapped_column(String(20))
    subjects_notified_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    notification_note: Mapped[str | None] = mapped_column(Text, nullable=True)
    closed_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    recorded_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    recorded_by: Mapped[str] = mapped_column(String(100))

    updates: Mapped[list[BreachUpdate]] = relationship(order_by="BreachUpdate.id")


class BreachUpdate(Base):
    """One phase of a breach's record (Art. 33(4)): what changed, from what to what, who and why. Append-only."""

    __tablename__ = "breach_updates"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    breach_id: Mapped[int] = mapped_column(ForeignKey("breaches.id"), index=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    actor: Mapped[str] = mapped_column(String(100))
    changes: Mapped[dict[str, Any]] = mapped_column(JSON)
    note: Mapped[str] = mapped_column(Text, default="")


class StaffPassword(Base):
    """A staff account's console password (argon2id hash) and its run of failed sign-ins."""

    __tablename__ = "staff_passwords"

    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id"), primary_key=True)
    password_hash: Mapped[str] = mapped_column(String(200))
    set_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    failures: Mapped[int] = mapped_column(Integer, default=0)
    locked_until: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)


class StaffSession(Base):
    """A signed-in console session; only SHA-256 of its cookie's token is stored."""

    __tablename__ = "staff_sessions"

    token_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id"), index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_seen_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)


class SourceUrl(Base):
    """A location a URL-list source declares it is entitled to: the only addresses its ingestion fetches."""

    __tablename__ = "source_urls"
    __table_args__ = (UniqueConstraint("source_id", "url", name="uq_source_urls_source_url"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    source_id: Mapped[int] = mapped_column(ForeignKey("sources.id"), index=True)
    url: Mapped[str] = mapped_column(String(2000))
    declared_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    declared_by: Mapped[str] = mapped_column(String(200))


class Video(Base):
    """An ingested video, identified within its source by the SHA-256 of its bytes. Its bytes are not kept:
    its key frames (StoredImage.video_id) and its tracks' faces are."""

    __tablename__ = "videos"
    __table_args__ = (UniqueConstraint("source_id", "sha256", name="uq_videos_source_sha256"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    source_id: Mapped[int] = mapped_column(ForeignKey("sources.id"), index=True)
    sha256: Mapped[str] = mapped_column(String(64), index=True)
    original_name: Mapped[str] = mapped_column(Text)
    size_bytes: Mapped[int] = mapped_column(Integer)
    container: Mapped[str] = mapped_column(String(60))
    codec: Mapped[str] = mapped_column(String(40))
    width: Mapped[int] = mapped_column(Integer)
    height: Mapped[int] = mapped_column(Integer)
    duration_s: Mapped[float] = mapped_column(Float)
    fps: Mapped[float] = mapped_column(Float)
    frames_decoded: Mapped[int] = mapped_column(Integer)
    frames_analysed: Mapped[int] = mapped_column(Integer)
    faces_detected: Mapped[int] = mapped_column(Integer)
    ingested_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    source_version: Mapped[int] = mapped_column(Integer, default=1)
    origin_url: Mapped[str | None] = mapped_column(Text, nullable=True)
    fetched_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)


class Track(Base):
    """One person in one shot of a video: when they are seen (`ranges`, [start, end] seconds) and the faces
    kept for them (Face.track_id): the best-quality one (`best_face_id`) and a few of varied pose."""

    __tablename__ = "tracks"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    video_id: Mapped[int] = mapped_column(ForeignKey("videos.id"), index=True)
    source_id: Mapped[int] = mapped_column(ForeignKey("sources.id"), index=True)
    ordinal: Mapped[int] = mapped_column(Integer)
    shot: Mapped[int] = mapped_column(Integer)
    ranges: Mapped[list[list[float]]] = mapped_column(JSON)
    sightings: Mapped[int] = mapped_column(Integer)
    best_face_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    templates: Mapped[int] = mapped_column(Integer)
