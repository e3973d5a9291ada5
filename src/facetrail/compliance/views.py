"""How a breach looks to the DPO, the auditor and the regulator export: one dictionary, built in one place."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from facetrail.compliance.breaches import clock_of
from facetrail.store.models import Breach
from facetrail.timestamps import iso_z_or_none


def breach_view(breach: Breach, now: datetime, *, with_history: bool = True) -> dict[str, Any]:
    view: dict[str, Any] = {
        "id": breach.id, "title": breach.title, "nature": breach.nature,
        "data_categories": breach.data_categories, "subject_categories": breach.subject_categories,
        "approx_subjects": breach.approx_subjects, "approx_records": breach.approx_records,
        "consequences": breach.consequences, "measures": breach.measures,
        "occurred_at": iso_z_or_none(breach.occurred_at), "aware_at": iso_z_or_none(breach.aware_at),
        "scope": breach.scope or None,
        "authority": {"status": breach.authority_status, "notified_at": iso_z_or_none(breach.authority_notified_at),
                      "reference": breach.authority_reference, "delay_reasons": breach.delay_reasons},
        "subjects": {"status": breach.subjects_status, "notified_at": iso_z_or_none(breach.subjects_notified_at)},
        "notification_note": breach.notification_note,
        "clock": clock_of(breach, now).as_dict(),
        "recorded_at": iso_z_or_none(breach.recorded_at), "recorded_by": breach.recorded_by,
        "closed_at": iso_z_or_none(breach.closed_at),
    }
    if with_history:
        view["history"] = [{"at": iso_z_or_none(u.at), "actor": u.actor, "note": u.note, "changes": u.changes}
                           for u in breach.updates]
    return view
