"""What an access package says about the searches that showed a person: the per-purpose disclosure policy.

Art. 15(1)(c) gives the person the recipients of their data: here, every search that was shown one of their
faces (date, the searching account's role, the purpose) is always listed. A search's case reference can say
more than the person may be told while a case is open (an ongoing investigation); Art. 23 lets Union or
Member State law restrict the right for such reasons. So the DPO records, per purpose, whether case
references are disclosed or withheld, and the legal ground for withholding them; the package then says that
a reference was withheld and why. A purpose with no policy discloses its case references.
"""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum

from sqlalchemy import select
from sqlalchemy.orm import Session

from facetrail.accounts.roles import Action, Actor, require
from facetrail.audit.log import AuditLog
from facetrail.errors import InvalidValueError
from facetrail.store.db import Database
from facetrail.store.models import DisclosurePolicy


class CaseRefs(StrEnum):
    DISCLOSE = "disclose"
    WITHHOLD = "withhold"

    @classmethod
    def parse(cls, value: str) -> CaseRefs:
        try:
            return cls((value or "").strip().lower())
        except ValueError:
            raise InvalidValueError("case_refs", f"{value!r} is not one of: disclose, withhold") from None


class DisclosurePolicies:
    def __init__(self, db: Database, audit: AuditLog) -> None:
        self.db = db
        self.audit = audit

    def set(self, actor: Actor, purpose: str, case_refs: str, legal_ground: str = "") -> DisclosurePolicy:
        """Record the policy for a purpose (replacing any earlier one); withholding needs its legal ground."""
        require(actor, Action.REQUESTS)
        rule = CaseRefs.parse(case_refs)
        purpose, ground = (purpose or "").strip(), (legal_ground or "").strip()
        if not purpose:
            raise InvalidValueError("purpose", "name the purpose the policy is for")
        if rule is CaseRefs.WITHHOLD and not ground:
            raise InvalidValueError("legal_ground", "withholding case references needs its legal ground "
                                    "(e.g. the Art. 23 restriction in the law that applies)")
        with self.db.write() as session, session.begin():
            policy = session.get(DisclosurePolicy, purpose) or DisclosurePolicy(purpose=purpose)
            policy.case_refs, policy.legal_ground = rule.value, ground
            policy.set_by, policy.set_at = actor.name, datetime.now(UTC)
            session.add(policy)
            self.audit.record(session, actor=actor.name, action="disclosure_policy.set",
                              details={"purpose": purpose, "case_refs": rule.value, "legal_ground": ground})
        return policy

    def list(self, actor: Actor) -> list[DisclosurePolicy]:
        require(actor, Action.REQUESTS)
        with self.db.read() as session:
            return list(session.scalars(select(DisclosurePolicy).order_by(DisclosurePolicy.purpose)))


def withheld_purposes(session: Session) -> dict[str, str]:
    """Purposes whose case references are withheld, with the legal ground recorded for each."""
    return {p.purpose: p.legal_ground for p in session.scalars(select(DisclosurePolicy).where(
        DisclosurePolicy.case_refs == CaseRefs.WITHHOLD.value))}
