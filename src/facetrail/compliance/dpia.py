"""A data protection impact assessment (GDPR Art. 35) skeleton, pre-filled from the facts.

facetrail fills in what it knows: the processing, its volumes, sources, purposes and retention, the measured
accuracy of the model in use (its calibration, and BENCHMARKS.md when present), and for each risk specific
to face search the measures in force. Likelihood, severity, residual risk, the DPO's advice and the sign-off
are the controller's assessment: they are left blank (null in JSON), never guessed.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from facetrail.compliance.benchmarks import Benchmark
from facetrail.compliance.document import Document, Section, table
from facetrail.compliance.facts import Facts, Measure
from facetrail.timestamps import iso_z

ASSESSMENT = ("likelihood", "severity", "residual_risk", "further_measures_planned")


def build(facts: Facts, benchmark: Benchmark | None) -> dict[str, Any]:
    v = facts.volumes
    return {
        "generated_at": iso_z(facts.generated_at),
        "processing": {
            "description": "Face search over registered collections: every face in the sources' images is detected, "
                           f"turned into a biometric template by the model {facts.model.model_id} and indexed; "
                           "authorised staff search by photo for a declared purpose and case reference; people "
                           "in the collection exercise their rights through a public portal.",
            "controller": facts.contacts.controller_name,
            "dpo_contact": facts.contacts.dpo_contact,
            "purposes": list(facts.purposes),
        },
        "volumes": asdict(v),
        "sources": [{"name": s.name, "purposes": list(s.purposes), "legal_basis": s.legal_basis,
                     "art9_condition": f"{s.art9_condition}: {s.art9_description}", "evidence_ref": s.evidence_ref,
                     "jurisdictions": list(s.jurisdictions), "retention_days": s.retention_days,
                     "images": s.images, "faces": s.faces} for s in facts.sources],
        "accuracy": _accuracy(facts, benchmark),
        "risks": [dict(r, **dict.fromkeys(ASSESSMENT)) for r in _risks(facts)],
        "controller_assessment": {"necessity_and_proportionality": None, "dpo_advice": None,
                                  "views_of_data_subjects": None, "prior_consultation_needed": None,
                                  "approved_by": None, "approved_on": None},
    }


def _accuracy(facts: Facts, benchmark: Benchmark | None) -> dict[str, Any]:
    m = facts.model
    return {
        "model_id": m.model_id, "calibrated": m.calibrated, "calibration_data": m.calibration_data,
        "impostor_comparisons": m.impostor_comparisons, "min_band_shown": m.min_band,
        "bands": [asdict(b) for b in m.bands],
        "benchmark": None if benchmark is None else asdict(benchmark),
        "expected_false_candidates_per_search": _false_candidates(facts),
    }


def _false_candidates(facts: Facts) -> dict[str, float]:
    """For a search of someone who is not in the collection: false matches to expect in each band over the
    faces searchable today (FMR x faces). It grows with the collection."""
    searchable = facts.volumes.faces - facts.volumes.restricted_faces
    return {b.band: round(b.target_fmr * searchable, 3) for b in facts.model.bands}


def _measures(facts: Facts, *names: str) -> list[str]:
    chosen: list[Measure] = [m for m in facts.measures if m.name in names]
    return [f"{m.name}: {m.state}" for m in chosen]


def _risks(facts: Facts) -> list[dict[str, Any]]:
    v, m = facts.volumes, facts.model
    false = _false_candidates(facts)
    bands = ", ".join(f"{b.band} <= {b.target_fmr:g}" for b in m.bands) or "none (the model is not calibrated)"
    scoped = _measures(facts, "search keys limited to purposes", "search rate limit")
    return [
        {"risk": "wrongful identification",
         "description": "a search returns a stranger's face as a match and staff act on it",
         "measures_in_force": [
             f"calibrated score bands with false-match rates {bands}; " + (
                 "by default a search shows only faces close enough that a stranger comes out in at most the "
                 "configured share of searches (target_fpir) at the number of faces it reaches" if m.min_band == "auto"
                 else f"results below the '{m.min_band}' band are not shown by default"),
             "expected false candidates for a stranger's search over the "
             f"{v.faces - v.restricted_faces} searchable faces: " + (
                 ", ".join(f"{k} {n:g}" for k, n in false.items()) or "unknown (no calibration)"),
             "every result links to its source image for a human to check; searches are logged with their results",
         ]},
        {"risk": "stalking and tracking of a person",
         "description": "someone uses face search to find where a person was photographed",
         "measures_in_force": [
             f"only accounts with the role {', '.join(facts.search_roles)} search, with a purpose and a case "
             f"reference; active accounts that may search: {len(facts.recipients)}", *scoped,
             *_measures(facts, "identity before disclosure", "request rate limit per address",
                        "rights portal intake limit"),
             "the public portal shows no similarity score and nothing before identity is verified",
         ]},
        {"risk": "function creep",
         "description": "the collection is searched for purposes other than those it was gathered for",
         "measures_in_force": [
             "a search reaches only sources registered for its purpose; purposes registered: "
             f"{', '.join(facts.purposes) or 'none'}",
             *_measures(facts, "search keys limited to purposes", "audit log"),
             f"searches recorded with purpose, case reference and results: {v.searches}",
         ]},
        {"risk": "children in the collection",
         "description": "faces of minors are processed; facetrail estimates no age and cannot tell",
         "measures_in_force": [
             "every source records its legal basis and evidence: "
             + "; ".join(f"{s.name}: {s.legal_basis}, Art. 9(2)({s.art9_condition}), {s.evidence_ref}"
                         for s in facts.sources),
             "erasure, restriction and opt-out through the portal without limits",
         ]},
        {"risk": "breach of biometric data",
         "description": "templates, crops or photographs leave the controller's hands",
         "measures_in_force": [*_measures(facts, "encryption at rest", "master key", "image bytes kept",
                                          "deleted rows overwritten (SQLite secure_delete)"),
                               f"breach register with the 72-hour clock ({v.breaches} breaches recorded)"]},
        {"risk": "excessive retention",
         "description": "faces are kept longer than their purpose needs",
         "measures_in_force": [f"{s.name}: {s.retention_days} days" for s in facts.sources]},
    ]


def document(dpia: dict[str, Any]) -> Document:
    acc, vol = dpia["accuracy"], dpia["volumes"]
    bench = acc["benchmark"]
    accuracy_items = [f"Model in use: {acc['model_id']} ("
                      + (f"calibrated on {acc['calibration_data']}, {acc['impostor_comparisons']:,} different-person "
                         "comparisons)" if acc["calibrated"] else "NOT calibrated: no measured false-match rate)"),
                      f"Results shown from the band: {acc['min_band_shown']}"]
    if bench:
        accuracy_items += [f"{bench['file']}: {bench['run']}",
                           f"LFW verification accuracy {bench['verification_accuracy']}, TAR at FAR=1e-3 "
                           f"{bench['tar_at_far_1e3']}, failed to enrol {bench['failed_to_enrol']}",
                           f"identification rank-1 {bench['rank1']}, FNIR at FPIR=0.3% {bench['fnir_at_fpir']}"]
    else:
        accuracy_items.append("No benchmark figures for this model are available here (BENCHMARKS.md)")
    bands = table(["band", "target FMR", "distance threshold", "measured FMR (held-out test)",
                   "expected false candidates per search"],
                  [[b["band"], f"{b['target_fmr']:g}", b["distance_threshold"],
                    _measured(bench, b["band"]), acc["expected_false_candidates_per_search"].get(b["band"], "")]
                   for b in acc["bands"]])
    risks = [Section(f"Risk: {r['risk']}", intro=r["description"], items=tuple(r["measures_in_force"]),
                     blanks=("Likelihood", "Severity", "Residual risk", "Further measures planned"))
             for r in dpia["risks"]]
    return Document("Data protection impact assessment (GDPR Art. 35)",
                    f"Skeleton generated by facetrail at {dpia['generated_at']}; blanks are the controller's.", [
        Section("Description of the processing", intro=dpia["processing"]["description"],
                items=(f"Controller: {dpia['processing']['controller'] or 'not configured'}",
                       f"DPO: {dpia['processing']['dpo_contact'] or 'not configured'}",
                       "Purposes: " + (", ".join(dpia["processing"]["purposes"]) or "none"))),
        Section("Volumes", tables=(table(["what", "count"], [[k.replace("_", " "), n] for k, n in vol.items()]),)),
        Section("Sources, legal bases and retention", tables=(table(
            ["source", "purposes", "legal basis", "Art. 9(2)", "evidence", "jurisdictions", "retention (days)",
             "images", "faces"],
            [[s["name"], ", ".join(s["purposes"]), s["legal_basis"], s["art9_condition"], s["evidence_ref"],
              ", ".join(s["jurisdictions"]), s["retention_days"], s["images"], s["faces"]]
             for s in dpia["sources"]]),)),
        Section("Accuracy of the model in use", items=tuple(accuracy_items), tables=(bands,)),
        *risks,
        Section("Controller's assessment", blanks=(
            "Necessity and proportionality", "Advice of the data protection officer",
            "Views of the data subjects or their representatives", "Prior consultation of the authority needed "
            "(Art. 36)", "Approved by", "Approved on")),
    ])


def _measured(bench: dict[str, Any] | None, band: str) -> str:
    if not bench:
        return "not measured here"
    return next((b["measured_fmr"] for b in bench["bands"] if b["band"] == band), "not measured here")
