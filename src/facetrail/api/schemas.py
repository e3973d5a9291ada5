"""Request and response bodies of the REST API."""

from __future__ import annotations

from datetime import datetime
from typing import Any

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
    faces_suppressed: int = Field(description="faces dropped at ingestion because their person opted out")
    images_suppressed: int = Field(description="images not stored because every face in them opted out")
    items_refused: int = Field(0, description="items refused because an enforcement order ceases collection of "
                               "their data (each one listed in errors, naming the order)")
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
    yaw: float
    warnings: list[str]


class SearchResultPublic(BaseModel):
    rank: int
    face_id: int
    image_id: int
    source_id: int
    source_name: str
    original_name: str
    score: float = Field(description="0-100, higher = more similar. Calibrated models: 20 * -log10(false-match "
                         "rate), so a stranger reaches a score S about once in 10^(S/20) comparisons")
    band: str | None = Field(description="strong (false-match rate <= 1e-4), probable (<= 1e-3), possible "
                             "(<= 1e-2) or none; null for a model without calibration")
    distance: float = Field(description="Euclidean distance between templates (smaller = more alike)")
    box: BoxPublic
    ingested_at: datetime
    crop: str


class SearchPublic(BaseModel):
    search_id: str
    purpose: str
    case_ref: str
    query_sha256: str
    used_face: int | None
    min_band: str
    calibrated: bool
    warnings: list[str] = Field(description="why matches for the query face may be unreliable")
    query_faces: list[QueryFacePublic]
    results: list[SearchResultPublic]


class AccountCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(max_length=100)
    role: str
    purposes: list[str] | None = Field(default=None, min_length=1, max_length=50,
                                       description="the only purposes the key may search for; default any")
    expires_days: int | None = Field(default=None, ge=0, le=36_500,
                                     description="the key's life in days, 0 = never; default the server's "
                                     "key_ttl_days setting")


class AccountPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    name: str
    role: str
    created_at: datetime
    disabled_at: datetime | None
    purposes: list[str] | None = Field(description="the only purposes the key may search for; null = any")
    expires_at: datetime | None = Field(description="when the key stops working; null = never")


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


class ErrorBody(BaseModel):
    """Every error answer: what went wrong, the kind of error, and for a bad value the field it names. Request
    validation errors carry FastAPI's list of problems as `detail`."""

    detail: str | list[dict[str, Any]]
    error: str | None = None
    field: str | None = None


ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorBody, "description": description} for status, description in (
        (400, "a value out of range"), (401, "no valid API key"), (403, "the role or the key's purposes do not "
                                                                       "allow it"),
        (404, "not found"), (409, "not in a state that allows it"), (413, "request body too large"),
        (422, "a value is invalid, or a file cannot be used"), (429, "too many requests; see Retry-After"),
        (503, "encrypted data cannot be read (master key missing or wrong)"))
}


class Health(BaseModel):
    status: str
    version: str


class PersonPublic(BaseModel):
    id: int
    source_id: int
    name: str | None
    faces: int = Field(description="how many faces the person holds")
    face_id: int | None = Field(description="the representative face (the largest)")
    created_at: datetime
    updated_at: datetime


class PersonFacePublic(BaseModel):
    face_id: int
    image_id: int
    original_name: str
    size_px: int
    box: BoxPublic


class PersonDetailPublic(PersonPublic):
    face_list: list[PersonFacePublic]


class PeopleCluster(BaseModel):
    model_config = ConfigDict(extra="forbid")

    source_id: int | None = Field(default=None, description="only this source; default every source")


class PeopleClusterReport(BaseModel):
    faces: int = Field(description="faces placed in this run")
    joined: int = Field(description="of which joined people that existed before the run")
    people_created: int
    sources: list[int]
    threshold: float = Field(description="the template distance clustering used")


class PersonName(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(max_length=200, description="the name to show; null or blank clears it")


class PersonMerge(BaseModel):
    model_config = ConfigDict(extra="forbid")

    other_ids: list[int] = Field(min_length=1, max_length=10_000, description="people merged into this one")


class PersonSplit(BaseModel):
    model_config = ConfigDict(extra="forbid")

    face_ids: list[int] = Field(min_length=1, max_length=10_000, description="faces moved to a new person")
