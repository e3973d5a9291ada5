"""Request and response bodies of the REST API."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field


class SourceCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(max_length=200)
    controller: str = Field(max_length=200)
    purposes: list[str] = Field(min_length=1, max_length=50)
    legal_basis: str = Field(description="GDPR Art. 6(1) basis: consent, contract, legal_obligation, "
                             "vital_interests, public_task, legitimate_interests")
    art9_condition: str = Field(description="GDPR Art. 9(2) condition, a letter from a to j")
    evidence_ref: str = Field(max_length=500)
    jurisdictions: list[str] = Field(min_length=1, max_length=300, description="ISO 3166-1 alpha-2 codes")
    retention_days: int
    description: str = Field(default="", max_length=5000)


class SourcePublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    name: str
    controller: str
    purposes: list[str]
    legal_basis: str
    art9_condition: str
    evidence_ref: str
    jurisdictions: list[str]
    retention_days: int
    description: str
    created_at: datetime
    created_by: str


class ItemErrorPublic(BaseModel):
    name: str
    cause: str


class IngestReportPublic(BaseModel):
    source_id: int
    items: int
    images_added: int
    images_skipped: int
    images_without_faces: int
    faces_added: int
    errors: list[ItemErrorPublic]


class BoxPublic(BaseModel):
    left: int
    top: int
    right: int
    bottom: int


class QueryFacePublic(BaseModel):
    index: int
    box: BoxPublic
    detector_score: float
    size_px: int
    sharpness: float


class SearchResultPublic(BaseModel):
    rank: int
    face_id: int
    image_id: int
    source_id: int
    source_name: str
    original_name: str
    score: float = Field(description="0-100, higher = more similar: 100 * (1 - distance / 1.2), clipped")
    distance: float = Field(description="Euclidean distance between templates (dlib: same person below ~0.6)")
    box: BoxPublic
    ingested_at: datetime
    crop: str


class SearchPublic(BaseModel):
    search_id: str
    purpose: str
    case_ref: str
    query_sha256: str
    used_face: int | None
    query_faces: list[QueryFacePublic]
    results: list[SearchResultPublic]


class AccountCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(max_length=100)
    role: str


class AccountPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    name: str
    role: str
    created_at: datetime
    disabled_at: datetime | None


class AccountCreated(AccountPublic):
    api_key: str = Field(description="shown once; only its hash is stored")


class AuditEntryPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    seq: int
    at: str
    actor: str
    action: str
    details: str
    prev_hash: str
    hash: str


class AuditVerifyPublic(BaseModel):
    ok: bool
    entries: int
    first_broken_seq: int | None
    reason: str


class Health(BaseModel):
    status: str
    version: str
