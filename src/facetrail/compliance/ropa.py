"""The record of processing activities (GDPR Art. 30(1)), generated from the settings and the store.

Each heading is a point of Art. 30(1); every value comes from `Facts`. What facetrail cannot know (for
example transfers the controller makes outside facetrail) is said to be so, never filled in.
"""

from __future__ import annotations

from typing import Any

from facetrail.compliance.document import Document, Section, table
from facetrail.compliance.facts import Facts, SourceFacts
from facetrail.timestamps import iso_z_or_none

NOT_CONFIGURED = "not configured"
# The EEA: a jurisdiction outside it means people of a third country are in the collection (Art. 44 ff.).
EEA = frozenset("AT BE BG HR CY CZ DK EE FI FR DE GR HU IE IT LV LT LU MT NL PL PT RO SK SI ES SE IS LI NO".split())


def build(facts: Facts) -> dict[str, Any]:
    """The record as JSON-ready data."""
    c = facts.contacts
    missing = [name for name, value in (("FACETRAIL_CONTROLLER_NAME", c.controller_name),
                                        ("FACETRAIL_CONTROLLER_CONTACT", c.controller_contact),
                                        ("FACETRAIL_DPO_CONTACT", c.dpo_contact)) if not value]
    return {
        "generated_at": iso_z_or_none(facts.generated_at),
        "controller": {"name": c.controller_name, "contact": c.controller_contact,
                       "representative": c.representative, "dpo_contact": c.dpo_contact,
                       "controllers_named_by_sources": list(c.source_controllers), "settings_missing": missing},
        "purposes": [{"purpose": p, "sources": [s.name for s in facts.sources if p in s.purposes]}
                     for p in facts.purposes],
        "data_subjects": [_subjects(s) for s in facts.sources] + [
            {"category": "people who make a rights request", "held": "e-mail address, request history; "
             "verification selfie and code until the request closes"},
            {"category": "staff with an account", "held": "account name, role, hash of the API key, actions "
             "in the audit log"}],
        "personal_data": _personal_data(facts),
        "recipients": [{"purpose": p, "roles": list(facts.search_roles),
                        "accounts": [{"account": r.account, "role": r.role,
                                      "scope": "any purpose" if r.purposes is None else list(r.purposes),
                                      "expires_at": iso_z_or_none(r.expires_at)} for r in facts.recipients_for(p)],
                        "searches_so_far": facts.searches_by_purpose.get(p, 0)} for p in facts.purposes],
        "active_accounts_by_role": facts.accounts_by_role,
        "transfers": {
            "jurisdictions": sorted({j for s in facts.sources for j in s.jurisdictions}),
            "outside_eea": sorted({j for s in facts.sources for j in s.jurisdictions if j not in EEA}),
            "processors": [_measure(m) for m in facts.processors],
            "note": "facetrail sends no personal data out of its data directory other than through the processors "
                    "listed; transfers the controller makes by other means are not known to it.",
        },
        "retention": [{"source": s.name, "retention_days": s.retention_days,
                       "oldest_image_at": iso_z_or_none(s.oldest_image_at)} for s in facts.sources],
        "security_measures": [_measure(m) for m in facts.measures],
    }


def _subjects(s: SourceFacts) -> dict[str, Any]:
    return {"category": f"people whose faces appear in the source {s.name!r}",
            "held": s.description or "(the source has no description)", "jurisdictions": list(s.jurisdictions),
            "images": s.images, "faces": s.faces}


def _personal_data(facts: Facts) -> list[dict[str, Any]]:
    v, m = facts.volumes, facts.model
    return [
        {"category": "biometric templates (Art. 9 special category)", "count": v.faces,
         "detail": f"{m.template_dim}-dimensional face templates of the model {m.model_id}"},
        {"category": "face crops and face geometry (box, landmarks, quality)", "count": v.faces, "detail": ""},
        {"category": "photographs", "count": v.images_with_stored_bytes,
         "detail": "the ingested images, for provenance" if v.images_with_stored_bytes else "no image bytes kept"},
        {"category": "image metadata", "count": v.images, "detail": "original file name, SHA-256, size, date"},
        {"category": "identities named by the operator (people clustering)", "count": v.named_people,
         "detail": f"{v.people} clusters of faces"},
        {"category": "search records", "count": v.searches, "detail": "account, purpose, case reference, "
         f"SHA-256 of the query photo (never the photo), {v.faces_shown_by_searches} face ids shown"},
        {"category": "rights requests", "count": v.rights_requests, "detail": "e-mail address, kind, history"},
        {"category": "opt-out (suppression) templates", "count": v.suppression_entries,
         "detail": "kept with the person's consent to recognise them at ingestion"},
    ]


def _measure(m: Any) -> dict[str, str]:
    return {"measure": m.name, "state": m.state, "read_from": m.evidence}




def document(record: dict[str, Any]) -> Document:
    """The record as sections for Markdown or HTML."""
    ctl = record["controller"]
    contacts = [f"Controller: {ctl['name'] or NOT_CONFIGURED}", f"Contact: {ctl['contact'] or NOT_CONFIGURED}",
                f"Representative (Art. 27): {ctl['representative'] or NOT_CONFIGURED}",
                f"Data protection officer: {ctl['dpo_contact'] or NOT_CONFIGURED}",
                "Controllers named by the sources: " + (", ".join(ctl["controllers_named_by_sources"]) or "none")]
    if ctl["settings_missing"]:
        contacts.append("Missing settings: " + ", ".join(ctl["settings_missing"]))
    transfers = record["transfers"]
    return Document("Record of processing activities (GDPR Art. 30(1))",
                    f"Generated by facetrail at {record['generated_at']} from its configuration and store.", [
        Section("(a) Controller, representative and data protection officer", items=tuple(contacts)),
        Section("(b) Purposes of the processing", tables=(table(
            ["purpose", "sources"], [[p["purpose"], ", ".join(p["sources"])] for p in record["purposes"]]),)),
        Section("(c) Categories of data subjects", tables=(table(
            ["category", "what is held", "jurisdictions", "images", "faces"],
            [[d["category"], d["held"], ", ".join(d.get("jurisdictions", [])), d.get("images", ""),
              d.get("faces", "")] for d in record["data_subjects"]]),)),
        Section("(c) Categories of personal data", tables=(table(
            ["category", "records", "detail"],
            [[d["category"], d["count"], d["detail"]] for d in record["personal_data"]]),)),
        Section("(d) Recipients: who can search, per purpose",
                intro="Roles allowed to search: " + ", ".join(record["recipients"][0]["roles"]
                                                             if record["recipients"] else []),
                tables=(table(["purpose", "accounts (role, key scope)", "searches so far"], [
                    [r["purpose"], "; ".join(f"{a['account']} ({a['role']}, "
                                             f"{a['scope'] if isinstance(a['scope'], str) else ', '.join(a['scope'])})"
                                             for a in r["accounts"]) or "none", r["searches_so_far"]]
                    for r in record["recipients"]]),),
                items=tuple(f"active accounts with the role {role}: {n}"
                            for role, n in record["active_accounts_by_role"].items())),
        Section("(e) Transfers to third countries", items=(
            "Jurisdictions of the people in the sources: " + (", ".join(transfers["jurisdictions"]) or "none"),
            "Of which outside the EEA: " + (", ".join(transfers["outside_eea"]) or "none"),
            *[f"{p['measure']}: {p['state']}" for p in transfers["processors"]], transfers["note"])),
        Section("(f) Time limits for erasure", tables=(table(
            ["source", "retention (days)", "oldest image held"],
            [[r["source"], r["retention_days"], r["oldest_image_at"] or "-"] for r in record["retention"]]),)),
        Section("(g) Technical and organisational security measures (as in force)", tables=(table(
            ["measure", "state", "read from"],
            [[m["measure"], m["state"], m["read_from"]] for m in record["security_measures"]]),)),
    ])
