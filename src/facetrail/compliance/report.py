"""The compliance report for the authority: per order, what it ordered, what was done (each erasure with
its counts), what is left, the deadline and the penalty clock, and the audit log's head at that moment so
the authority can check the entries it names. Markdown for people, JSON for programs."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from facetrail.compliance.jsonable import plain
from facetrail.compliance.status import OrderStatus
from facetrail.timestamps import iso_z_or_none

JURISDICTION_RULE = (
    "A face's jurisdictions are those its source was registered for (basis source-declared) and, when its "
    "photo carries EXIF GPS tags, the country where the photo was taken, reverse-geocoded offline (basis "
    "exif-gps). They are not the person's residence or nationality, which facetrail cannot know.")


@dataclass(frozen=True)
class ErasureSummary:
    erasure_id: int
    completed_at: str
    images_erased: int
    faces_erased: int
    index_entries_removed: int
    crops_deleted: int
    data_keys_destroyed: int


@dataclass(frozen=True)
class OrderReport:
    status: OrderStatus
    erasures: tuple[ErasureSummary, ...]


@dataclass(frozen=True)
class ComplianceReport:
    generated_at: datetime
    generated_by: str
    orders: tuple[OrderReport, ...]
    audit_head: tuple[int, str] | None  # (seq, hash) of the newest audit entry, this report's included

    def as_dict(self) -> dict[str, Any]:
        return {
            "generated_at": iso_z_or_none(self.generated_at), "generated_by": self.generated_by,
            "jurisdiction_rule": JURISDICTION_RULE,
            "audit_head": {"seq": self.audit_head[0], "hash": self.audit_head[1]} if self.audit_head else None,
            "orders": [{**o.status.as_dict(), "erasures": plain(o.erasures)} for o in self.orders],
        }

    def markdown(self) -> str:
        lines = ["# Compliance report: enforcement orders", "",
                 f"Generated {_iso(self.generated_at)} by {self.generated_by}.", ""]
        if self.audit_head:
            lines += [f"Audit log head: entry {self.audit_head[0]}, hash `{self.audit_head[1]}` "
                      "(`facetrail audit verify` checks the chain up to it).", ""]
        lines += [f"Jurisdiction rule: {JURISDICTION_RULE}", ""]
        if not self.orders:
            lines.append("No enforcement order is recorded.")
        for order in self.orders:
            lines += _order_section(order)
        return "\n".join(lines).rstrip() + "\n"


def _order_section(report: OrderReport) -> list[str]:
    s = report.status
    measures = " and ".join(m for m, on in (("cease collection", s.cease), ("erase", s.erase)) if on)
    scope = ", ".join([*(f"jurisdiction {c}" for c in s.jurisdictions), *(f"source {i}" for i in s.source_ids)])
    clock = (f"{s.days_left} day(s) left" if s.days_left is not None
             else f"{s.days_late} day(s) late, penalty accrued {s.penalty_accrued:,} {s.currency}" if s.days_late
             else "complied on time")
    lines = [
        f"## Order {s.order_id}: {s.authority}, {s.reference}", "",
        "| | |", "|---|---|",
        f"| received | {s.received_on.isoformat()} |",
        f"| recorded | {_iso(s.recorded_at)} by {s.recorded_by} |",
        f"| scope | {scope} |",
        f"| measures | {measures} |",
        f"| access requests answered first | {'yes' if s.answer_access_first else 'no'} |",
        f"| deadline | {s.deadline.isoformat()} ({clock} as of {_iso(s.as_of)}; {s.daily_penalty:,} {s.currency} "
        "per day late) |",
        f"| status | {'complied ' + _iso(s.complied_at) if s.complied_at else 'not complied yet'} |",
        f"| erasure job | {s.job_state.value} |",
        f"| items in scope remaining | {s.images_remaining} image(s), {s.faces_remaining} face(s) |",
        f"| erased for this order | {s.images_erased} image(s), {s.faces_erased} face(s) |",
        f"| ingestion items refused | {s.items_refused} |",
        "",
    ]
    if s.images_held:
        lines += [f"{s.images_held} image(s) are kept until these access requests are answered: "
                  f"{', '.join(s.held_for_requests)}.", ""]
    if s.unverified_access_requests:
        lines += [f"Open access requests whose requester is not verified yet (their faces cannot be known): "
                  f"{', '.join(s.unverified_access_requests)}.", ""]
    if report.erasures:
        lines += ["| erasure | completed | images | faces | index entries | crops | data keys destroyed |",
                  "|---|---|---|---|---|---|---|"]
        lines += [f"| {e.erasure_id} | {e.completed_at} | {e.images_erased} | {e.faces_erased} | "
                  f"{e.index_entries_removed} | {e.crops_deleted} | {e.data_keys_destroyed} |" for e in report.erasures]
        lines.append("")
    return lines


def erasure_summary(receipt: dict[str, Any]) -> ErasureSummary:
    return ErasureSummary(
        erasure_id=int(receipt["erasure_id"]),
        completed_at=iso_z_or_none(datetime.fromisoformat(receipt["completed_at"])) or "",
        images_erased=int(receipt["images_deleted"]), faces_erased=int(receipt["faces_erased"]),
        index_entries_removed=int(receipt["index_entries_removed"]), crops_deleted=int(receipt["crops_deleted"]),
        data_keys_destroyed=int(receipt.get("data_keys_destroyed", 0)))


def _iso(moment: datetime | None) -> str:
    return iso_z_or_none(moment) or ""
