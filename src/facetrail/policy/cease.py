"""Orders to cease collection (hard rule 10): may this image of this source be collected at all?

Read from the recorded enforcement orders each time it is asked, inside the ingesting transaction, so an
order refuses data from the moment it is committed, even in a batch that started before it.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from facetrail.policy.jurisdiction import Jurisdiction
from facetrail.store.models import EnforcementOrder


@dataclass(frozen=True)
class CollectionBan:
    """An order that forbids collecting data of these jurisdictions and/or these sources."""

    order_id: int
    authority: str
    reference: str
    jurisdictions: frozenset[str]
    source_ids: frozenset[int]

    def refusal(self, source_id: int, jurisdictions: Iterable[Jurisdiction]) -> str | None:
        """Why this ban refuses the image, naming the order; None when the image is outside it."""
        order = f"enforcement order {self.order_id} ({self.authority}, {self.reference})"
        if source_id in self.source_ids:
            return f"refused by {order}: it orders to cease collecting into source {source_id}"
        for jurisdiction in jurisdictions:
            if jurisdiction.code in self.jurisdictions:
                return (f"refused by {order}: it orders to cease collecting data of {jurisdiction.code} "
                        f"(this image's jurisdiction, {jurisdiction.basis.value})")
        return None


def collection_bans(session: Session) -> list[CollectionBan]:
    """Every recorded order with the 'cease collection' measure."""
    return [CollectionBan(o.id, o.authority, o.reference, frozenset(o.jurisdictions), frozenset(o.source_ids))
            for o in session.scalars(select(EnforcementOrder).where(EnforcementOrder.cease.is_(True))
                                     .order_by(EnforcementOrder.id))]


def first_refusal(bans: Iterable[CollectionBan], source_id: int,
                  jurisdictions: Iterable[Jurisdiction]) -> tuple[int, str] | None:
    """(order id, reason) of the first ban that refuses the image, or None."""
    codes = tuple(jurisdictions)
    for ban in bans:
        reason = ban.refusal(source_id, codes)
        if reason is not None:
            return ban.order_id, reason
    return None
