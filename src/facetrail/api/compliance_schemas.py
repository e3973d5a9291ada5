"""Request and response bodies of the compliance routes: orders, retention, source retirement."""

from __future__ import annotations

from datetime import date
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from facetrail.compliance.order_spec import MAX_PENALTY


class OrderCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    authority: str = Field(max_length=200, description="the supervisory authority, e.g. CNIL")
    reference: str = Field(max_length=200)
    received_on: date
    jurisdictions: list[str] = Field(default_factory=list, max_length=300, description="ISO 3166-1 alpha-2 codes")
    source_ids: list[int] = Field(default_factory=list, max_length=10_000)
    cease: bool = Field(False, description="measure: cease collecting the data in scope")
    erase: bool = Field(False, description="measure: erase the data in scope")
    deadline: date = Field(description="the last day to comply")
    daily_penalty: int = Field(0, ge=0, le=MAX_PENALTY, description="per day late, whole currency units")
    currency: str = Field("EUR", max_length=3)
    answer_access_first: bool = Field(False, description="erase the faces of open access requests only once "
                                                         "those are answered")


class OrderStatusPublic(BaseModel):
    order_id: int
    authority: str
    reference: str
    received_on: str
    jurisdictions: list[str]
    source_ids: list[int]
    cease: bool
    erase: bool
    answer_access_first: bool
    deadline: str
    daily_penalty: int
    currency: str
    recorded_at: str
    recorded_by: str
    job_state: str
    images_remaining: int = Field(description="stored images in scope now; 0 once an erasure order is carried out")
    faces_remaining: int
    images_held: int = Field(description="of those, kept until the open access requests named close")
    held_for_requests: list[str]
    unverified_access_requests: list[str]
    images_erased: int
    faces_erased: int
    items_refused: int
    complied: bool
    complied_at: str | None
    as_of: str
    days_left: int | None
    days_late: int
    penalty_accrued: int


class RetentionRun(BaseModel):
    model_config = ConfigDict(extra="forbid")

    dry_run: bool = Field(False, description="list what would be erased; erase nothing")


class ExpiredImagePublic(BaseModel):
    image_id: int
    source_id: int
    source_name: str
    original_name: str
    ingested_at: str
    expired_at: str
    faces: int


class RetentionReportPublic(BaseModel):
    at: str
    dry_run: bool
    images: list[ExpiredImagePublic]
    faces: int
    images_erased: int
    faces_erased: int
    erasure_ids: list[int]
    stopped: bool


class SourceRetire(BaseModel):
    model_config = ConfigDict(extra="forbid")

    retirement: Literal["erase", "keep-until-retention"]


class RetirementReportPublic(BaseModel):
    source_id: int
    retired_at: str
    retirement: str
    images_erased: int
    faces_erased: int
    erasure_ids: list[int]
    images_kept: int
    kept_until: str | None
