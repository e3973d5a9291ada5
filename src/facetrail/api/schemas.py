"""Request and response bodies of the REST API."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, PlainSerializer

from facetrail.timestamps import iso_z

UtcTime = Annotated[datetime, PlainSerializer(iso_z, return_type=str, when_used="json")]
"""Every time in the API: ISO 8601, UTC, `Z`, to the second (the command line's format too)."""


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
    controller_contact: str = Field(default="", max_length=500, description="how to reach the controller")
    representative: str = Field(default="", max_length=500, description="the controller's representative, if any")


class SourceUpdate(BaseModel):
    """An edit of a source: fields left out are not changed. A change of purposes, legal basis or Art. 9
    condition makes a new version of the source and needs a `reason`; the earlier versions are kept."""

    model_config = ConfigDict(extra="forbid")

    description: str | None = Field(default=None, max_length=5000)
    evidence_ref: str | None = Field(default=None, max_length=500)
    retention_days: int | None = None
    controller_contact: str | None = Field(default=None, max_length=500)
    representative: str | None = Field(default=None, max_length=500)
    purposes: list[str] | None = Field(default=None, min_length=1, max_length=50)
    legal_basis: str | None = None
    art9_condition: str | None = None
    reason: str | None = Field(default=None, max_length=1000, description="why the legal terms change")


class SourceVersionPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    version: int
    purposes: list[str]
    legal_basis: str
    art9_condition: str
    reason: str
    created_at: UtcTime
    created_by: str


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
    created_at: UtcTime
    created_by: str
    version: int = Field(description="the version of its legal terms (see /v1/sources/{id}/versions)")
    controller_contact: str
    representative: str


class ItemErrorPublic(BaseModel):
    name: str
    cause: str


class SkippedItemPublic(BaseModel):
    name: str
    reason: str


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
    skipped: list[SkippedItemPublic] = Field(description="files in the archives that are not images (videos, "
                                             "documents), each with the reason it was not ingested")
    videos_added: int = 0
    videos_skipped: int = Field(0, description="videos already in the source (same bytes)")
    videos_suppressed: int = Field(0, description="videos not stored because every person in them opted out")
    videos: list[VideoSummaryPublic] = Field(default_factory=list, description="per video analysed: frames "
                                             "decoded and analysed, faces detected, tracks and templates kept")
    outcome: Literal["complete", "partial", "failed", "nothing"] = Field(
        description="complete: every image is in the source (added or already there); partial: some failed "
        "(see `errors`); failed: every image failed; nothing: no image among the files (see `skipped`)")


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


class VideoHitPublic(BaseModel):
    video_id: int
    name: str
    duration_s: float
    track_id: int
    ranges: list[list[float]] = Field(description="[start, end] in seconds: where the person is seen")
    frame_time: float = Field(description="time (seconds) of the key frame the matching face is in")
    key_frame: str = Field(description="the key frame with the face outlined (audited)")


class VideoSummaryPublic(BaseModel):
    name: str
    duration_s: float
    frames_decoded: int
    frames_analysed: int
    faces_detected: int
    tracks: int
    templates_kept: int
    tracks_suppressed: int


class SearchResultPublic(BaseModel):
    rank: int
    face_id: int
    image_id: int
    source_id: int
    source_name: str
    original_name: str
    score: float = Field(description="higher = more similar. Calibrated models: 20 * -log10(false-match rate), 0 and "
                         "up with no ceiling, so a stranger reaches a score S about once in 10^(S/20) comparisons; "
                         "without a calibration 0-100")
    band: str | None = Field(description="strong (false-match rate <= 1e-4), probable (<= 1e-3), possible "
                             "(<= 1e-2) or none; null for a model without calibration")
    distance: float = Field(description="Euclidean distance between templates (smaller = more alike)")
    fmr: float | None = Field(default=None, description="per-comparison false-match rate at this distance: the "
                              "share of comparisons with strangers that come this close; null without calibration")
    fpir: float | None = Field(default=None, description="what the band means at this gallery size: the share of "
                               "searches of reach.gallery_size faces, for someone not enrolled, in which a stranger "
                               "comes this close, 1 - (1 - fmr)^N; null without calibration")
    box: BoxPublic
    ingested_at: UtcTime
    crop: str
    video: VideoHitPublic | None = Field(None, description="for a face from a video: the video, the track (one "
                                         "person in one shot) and when they are seen in it; one result per track")


class ReachPublic(BaseModel):
    gallery_size: int = Field(description="faces this search compared the query with (its purpose's sources, "
                              "restricted faces excluded)")
    min_band: str = Field(description="auto (the threshold chosen from gallery_size and target_fpir) or the band "
                          "asked for")
    target_fpir: float | None = Field(description="auto: the share of searches for someone not enrolled that may "
                                      "return anyone; null for an explicit band")
    max_distance: float | None = Field(description="results farther than this are not shown; null: no limit")
    fmr: float | None = Field(description="per-comparison false-match rate at max_distance")
    fpir: float | None = Field(description="expected share of searches for someone not enrolled that return "
                               "anyone at max_distance, at this gallery size")
    extrapolated: bool = Field(description="the threshold's false-match rate lies below the smallest the "
                               "calibration measured (the curve is extrapolated there)")


class SearchPublic(BaseModel):
    search_id: str
    purpose: str
    case_ref: str
    query_sha256: str
    used_face: int | None
    min_band: str = Field(description="auto (default: the threshold follows the gallery size) or a band")
    calibrated: bool
    reach: ReachPublic | None = Field(default=None, description="the faces searched and what the threshold means "
                                      "at that number")
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
    created_at: UtcTime
    disabled_at: UtcTime | None
    purposes: list[str] | None = Field(description="the only purposes the key may search for; null = any")
    expires_at: UtcTime | None = Field(description="when the key stops working; null = never")


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


class CheckpointPublic(BaseModel):
    origin: str = Field(description="the log's name (its signing key's)")
    size: int = Field(description="entries 1..size are covered")
    root: str = Field(description="RFC 9162 Merkle tree head over them, hex")
    time: str
    checkpoint: str = Field(description="the signed note itself: keep it outside, verify with the public key")


class InclusionProofPublic(BaseModel):
    seq: int
    tree_size: int
    leaf_index: int = Field(description="seq - 1")
    entry: AuditEntryPublic
    audit_path: list[str] = Field(description="RFC 9162 audit path, leaf to root, hex")
    root: str
    checkpoint: str | None = Field(description="the signed checkpoint of this size, if one was kept")


class ConsistencyProofPublic(BaseModel):
    first: int
    second: int
    first_root: str
    second_root: str
    proof: list[str] = Field(description="RFC 9162 consistency proof, hex")


class ErrorBody(BaseModel):
    """Every error answer: what went wrong, the kind of error, and for a bad value the field it names (a request
    that fails validation lists every problem in `detail` and names the first in `field`)."""

    detail: str
    error: str = Field(description="the kind of error, e.g. InvalidValueError, PermissionDeniedError")
    field: str | None = Field(description="the invalid field (body fields by name, list items as name.index); "
                              "null when the error is not about one value")


ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorBody, "description": description} for status, description in (
        (400, "a value out of range"), (401, "no valid API key"), (403, "the role or the key's purposes do not "
                                                                       "allow it"),
        (404, "not found"), (409, "not in a state that allows it"), (413, "request body too large"),
        (422, "a value is invalid, or a file cannot be used"), (429, "too many requests; see Retry-After"),
        (503, "encrypted data cannot be read (master key missing or wrong), a model file of the installation is "
              "missing or damaged, or the server is shutting down"))
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
    created_at: UtcTime
    updated_at: UtcTime


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


class SourceUrlsDeclare(BaseModel):
    """Locations the source's controller declares it is entitled to: the only URLs its URL ingestion fetches."""

    model_config = ConfigDict(extra="forbid")

    urls: list[str] = Field(min_length=1, max_length=10_000, description="absolute http(s) URLs, without "
                            "credentials (a fragment is dropped)")


class UrlDeclarationPublic(BaseModel):
    source_id: int
    added: int = Field(description="URLs new to the source")
    already: int = Field(description="URLs it had declared already")


class SourceUrlPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    url: str
    declared_at: UtcTime
    declared_by: str
