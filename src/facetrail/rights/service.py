"""Data-subject requests: recorded at once, verified before anything is disclosed, answered in full.

There is no time window and no frequency cap anywhere: every request is answered completely, each time.
Every status change goes through `_transition`, which enforces the workflow table and writes the event
and the audit entry; the audit log gets ids and hashes only (it outlives erasure).

Identity before disclosure (hard rule 8): intake and the e-mail code never look at the collection, so until
the live check every request gets the same answers, whoever it is about. The live check (rights/proof.py)
compares the capture with the held faces only after it passed, and the requester is not told the result:
kinds outside `auto_approve` wait for the DPO, who judges the evidence; automatic kinds answer in words that
hold for anyone.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from facetrail.accounts.roles import Action, Actor, require
from facetrail.audit.log import AuditLog
from facetrail.config import Settings
from facetrail.errors import (
    ConflictError,
    InvalidValueError,
    KeyUnavailableError,
    NotFoundError,
    RateLimitedError,
)
from facetrail.rights import identity
from facetrail.rights.deadlines import due_date, due_in_force
from facetrail.rights.evidence import EvidenceStore
from facetrail.rights.fulfilment import Answer
from facetrail.rights.mailer import Mailer
from facetrail.rights.proof import CaptureFrame, ChallengeView, IdentityProof
from facetrail.rights.status import RequesterView, requester_view
from facetrail.rights.workflow import CLOSED, RequestKind, RequestStatus, allowed
from facetrail.store.blobs import BlobStore
from facetrail.store.db import Database
from facetrail.store.models import RequestEvent, RightsRequest
from facetrail.timestamps import iso_z

S = RequestStatus
PORTAL = "portal"
MAX_CODE_ATTEMPTS = 5
COMPLAINT = ("You may lodge a complaint with a supervisory authority (Art. 77 GDPR), in particular in the "
             "Member State of your habitual residence, place of work or of the alleged infringement.")
# Kinds answered as soon as identity is verified; objection and rectification wait for the DPO's decision.
ANSWERED_ON_VERIFICATION = frozenset({RequestKind.CONFIRM, RequestKind.ACCESS, RequestKind.PORTABILITY,
                                      RequestKind.ERASURE, RequestKind.RESTRICTION, RequestKind.OPT_OUT})


def purge_expired_packages(db: Database, blobs: BlobStore, audit: AuditLog) -> int:
    """Shred every access package whose link has expired (its key destroyed: no copy opens any more). Needs
    only the store, so opening a data directory runs it without wiring the request service."""
    with db.read() as session:
        expired = list(session.execute(select(RightsRequest.id, RightsRequest.package_key).where(
            RightsRequest.package_key.is_not(None), RightsRequest.package_expires_at < now())))
    for request_id, key in expired:
        if key:
            blobs.shred(key)
        with db.write() as session, session.begin():
            session.execute(update(RightsRequest).where(RightsRequest.id == request_id).values(package_key=None))
            audit.record(session, actor="system:packages", action="request.package_shredded",
                         details={"request_id": request_id})
    return len(expired)


def now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class Intake:
    request: RightsRequest
    status_token: str


class Fulfils(Protocol):
    """The effect that answers a verified request (rights/fulfilment.py); `disclose`: may the answer depend on
    whether the person is held (a DPO judged their identity)."""

    def __call__(self, request: RightsRequest, actor_name: str, *, disclose: bool) -> Answer: ...


class RequestService:
    """The workflow. `proof` checks live captures; `evidence` seals what the DPO judges; `fulfil_kind` maps a
    verified request to the effect that answers it (all wired in runtime)."""

    def __init__(self, settings: Settings, db: Database, blobs: BlobStore, audit: AuditLog, mailer: Mailer, *,
                 proof: IdentityProof, evidence: EvidenceStore, fulfil_kind: Fulfils) -> None:
        self.settings = settings
        self.db = db
        self.blobs = blobs
        self.audit = audit
        self.mailer = mailer
        self.proof = proof
        self.evidence = evidence
        self.fulfil_kind = fulfil_kind
        unknown = set(settings.auto_approve) - {k.value for k in RequestKind}
        if unknown:
            raise InvalidValueError("auto_approve", f"unknown request kind(s): {', '.join(sorted(unknown))}")
        self.auto_approve = frozenset(RequestKind(k) for k in settings.auto_approve)

    # -- public intake (the portal) ------------------------------------------------------------
    def intake(self, *, kind: str, email: str, details: dict[str, Any] | None = None,
               client_ip: str = "unknown") -> Intake:
        """Record a request the moment it arrives, acknowledge it, and send the e-mail code."""
        try:
            parsed = RequestKind((kind or "").strip().lower())
        except ValueError:
            kinds = ", ".join(k.value for k in RequestKind)
            raise InvalidValueError("kind", f"{kind!r} is not one of: {kinds}") from None
        address = identity.normalise_email(email)
        details = _clean_details(parsed, details or {})
        ip_hash = hashlib.sha256(client_ip.encode()).hexdigest()
        token, code = identity.new_token(), identity.new_code()
        received = now()
        with self.db.write() as session, session.begin():
            self._rate_limit(session, address, ip_hash, received)
            request = RightsRequest(
                id=secrets.token_hex(8), kind=parsed.value, status=S.RECEIVED.value, email=address,
                received_at=received, due_at=due_date(received), status_token_hash=identity.digest(token),
                intake_ip_hash=ip_hash, details=details, code_hash=identity.digest(code),
                code_expires_at=received + timedelta(minutes=self.settings.code_ttl_minutes), code_attempts=0,
                matched_face_ids=[], manual_check=self._manual_check_for(parsed),
                extension_months=0,
            )
            session.add(request)
            session.flush()
            self._event(session, request, None, S.RECEIVED, PORTAL, "received")
            self._transition(session, request, S.IDENTITY_PENDING, PORTAL, "e-mail code sent")
        self.mailer.send(to=address, ref=request.id, subject=f"Your request {request.id}: confirmation code", body=(
            f"We received your {parsed.value} request {request.id} on {received:%Y-%m-%d %H:%M} UTC. "
            f"It is due by {request.due_at:%Y-%m-%d}.\n\nYour confirmation code: {code}\n"
            f"It is valid for {self.settings.code_ttl_minutes} minutes. Follow your request at "
            f"{self.settings.portal_url}\n"))
        return Intake(request, token)

    def _manual_check_for(self, kind: RequestKind) -> str:
        automatic = kind in self.auto_approve and not self.settings.manual_check
        return "none" if automatic else "required"

    def _rate_limit(self, session: Session, email: str, ip_hash: str, at: datetime) -> None:
        # A limit on intake volume protects the portal from abuse; it never limits how often a person's
        # rights are answered (hard rule 7): an hour later the same person may ask again, in full.
        since = at - timedelta(hours=1)
        for column, value in ((RightsRequest.email, email), (RightsRequest.intake_ip_hash, ip_hash)):
            count = session.scalar(select(func.count()).select_from(RightsRequest).where(
                column == value, RightsRequest.received_at >= since)) or 0
            if count >= self.settings.intake_per_hour:
                raise RateLimitedError("too many requests in the last hour; please try again later")

    def verify_email(self, request_id: str, token: str, code: str) -> bool:
        """Check the e-mail code. False on any mismatch, expired code or too many attempts."""
        with self.db.write() as session, session.begin():
            request = self._by_token(session, request_id, token)
            if request.email_verified_at is not None:
                return True
            expired = request.code_expires_at is None or request.code_expires_at < now()
            request.code_attempts += 1
            if expired or request.code_attempts > MAX_CODE_ATTEMPTS or not identity.same_secret(
                    request.code_hash, (code or "").strip()):
                return False
            request.email_verified_at = now()
            request.code_hash = None
            self._event(session, request, S.IDENTITY_PENDING, S.IDENTITY_PENDING, PORTAL, "e-mail verified")
        self._after_identity_step(request_id)
        return True

    def challenge(self, request_id: str, token: str) -> ChallengeView | None:
        """The live challenge to follow now (issued when the e-mail address is confirmed and none is open);
        None when no live check is due."""
        with self.db.write() as session, session.begin():
            request = self._by_token(session, request_id, token)
            due = (request.status == S.IDENTITY_PENDING and request.email_verified_at is not None
                   and request.selfie_checked_at is None)
            return self.proof.current(session, request, issue=True) if due else None

    def submit_capture(self, request_id: str, token: str, nonce: str, frames: Sequence[CaptureFrame], *,
                       answer_now: bool = True) -> str | None:
        """Check a capture against its challenge; None when it passed, else why it did not (a liveness.Failure
        value, about the capture alone). A capture that passed is then compared with the collection; the
        requester is told the same thing whatever that comparison found. An automatic kind is then answered,
        here or, with `answer_now` False, by `answer_verified` (the portal runs it after its response, so that
        the response's timing does not tell whether anything was erased)."""
        with self.db.write() as session, session.begin():
            request = self._by_token(session, request_id, token)
            if request.status in CLOSED:
                raise ConflictError("this request is closed")
            if request.email_verified_at is None or request.selfie_checked_at is not None:
                raise ConflictError("no live check is due for this request now")
            poses = self.proof.take(session, request, nonce)
        report, readings = self.proof.check(poses, frames)  # MediaError for a frame that is no image
        matches = self.proof.match(report) if report.passed else []
        with self.db.write() as session, session.begin():
            request = self._get(session, request_id)
            outcome = report.failure.value if report.failure else "passed"
            self.proof.settle(session, request, nonce, outcome)
            self.evidence.record_capture(request, {
                "at": iso_z(now()), "poses": [p.value for p in poses], "result": outcome,
                "frames": len(frames), "poses_seen": report.poses_seen, "yaws": report.yaws,
                "max_step_distance": report.max_step_distance, "max_distance_to_rest": report.max_distance_to_rest})
            if report.passed and report.template is not None:
                key_frames = [({"step": readings[i].step, "pose": poses[readings[i].step].value,
                                "yaw": readings[i].yaw}, readings[i].crop) for i in report.key_frames]
                self.evidence.seal_capture(request, key_frames, report.template, [
                    {"face_id": m.face_id, "distance": round(m.distance, 4), "score": m.score, "band": m.band}
                    for m in matches])
                request.matched_face_ids = [m.face_id for m in matches]
                request.selfie_checked_at = now()
            self._event(session, request, S(request.status), S(request.status), PORTAL, f"live check: {outcome}")
        if report.passed:
            self._after_identity_step(request_id, answer_now=answer_now)
        return report.failure.value if report.failure else None

    def answer_verified(self, request_id: str) -> None:
        """Answer a request verified by its live check whose kind is answered on verification, if not yet."""
        with self.db.read() as session:
            request = self._get(session, request_id)
            pending = request.status == S.VERIFIED and RequestKind(request.kind) in ANSWERED_ON_VERIFICATION
        if pending:
            self._fulfil(request_id, "system", "answered on verification")

    def add_document(self, request_id: str, token: str, name: str, content_type: str, data: bytes) -> None:
        """A document the requester chooses to add for the DPO (sealed, deleted when the request closes)."""
        with self.db.write() as session, session.begin():
            request = self._by_token(session, request_id, token)
            if request.status in CLOSED:
                raise ConflictError("this request is closed")
            try:
                self.evidence.add_document(request, name[:200] or "document", content_type[:100], data)
            except ValueError as exc:
                raise RateLimitedError(str(exc)) from None
            self._event(session, request, S(request.status), S(request.status), PORTAL, "document added")

    def status(self, request_id: str, token: str) -> RequesterView:
        """What the requester may see: nothing about faces until identity is verified."""
        with self.db.read() as session:
            request = self._by_token(session, request_id, token)
            return requester_view(request, self._due(request), COMPLAINT)

    def purge_expired_packages(self) -> int:
        return purge_expired_packages(self.db, self.blobs, self.audit)

    def download(self, request_id: str, package_token: str) -> bytes:
        with self.db.read() as session:
            request = session.get(RightsRequest, request_id)
            valid = request is not None and identity.same_secret(request.package_token_hash, package_token)
            if not valid or request is None or request.package_key is None:
                raise NotFoundError("no such package")
            if request.package_expires_at is None or request.package_expires_at < now():
                raise NotFoundError("this download link has expired; ask again through the portal")
            key = request.package_key
        try:
            package = self.blobs.get(key)
        except (OSError, KeyUnavailableError):
            raise NotFoundError("this package is no longer available; ask again through the portal") from None
        with self.db.write() as session, session.begin():
            self.audit.record(session, actor=PORTAL, action="request.package_downloaded",
                              details={"request_id": request_id})
        return package

    # -- the DPO -------------------------------------------------------------------------------
    def package_of(self, actor: Actor, request_id: str) -> bytes:
        """The access package sent to the requester, for the DPO to check what was disclosed; audited. Gone once
        its link expired (shredded with it)."""
        require(actor, Action.REQUESTS)
        with self.db.read() as session:
            request = self._get(session, request_id)
            key = request.package_key
        if key is None:
            raise NotFoundError(f"request {request_id} has no access package (not answered with one, or expired)")
        try:
            package = self.blobs.get(key)
        except (OSError, KeyUnavailableError):
            raise NotFoundError(f"the access package of request {request_id} is no longer available") from None
        with self.db.write() as session, session.begin():
            self.audit.record(session, actor=actor.name, action="request.package_read",
                              details={"request_id": request_id})
        return package

    def queue(self, actor: Actor, *, open_only: bool = True) -> list[RightsRequest]:
        """Overdue first, then by due date (so those due within 7 days come next)."""
        require(actor, Action.REQUESTS)
        with self.db.read() as session:
            query = select(RightsRequest)
            if open_only:
                query = query.where(RightsRequest.status.not_in([s.value for s in CLOSED]))
            requests = list(session.scalars(query))
        return sorted(requests, key=lambda r: self._due(r))

    def get(self, actor: Actor, request_id: str) -> RightsRequest:
        require(actor, Action.REQUESTS)
        with self.db.read() as session:
            request = session.get(RightsRequest, request_id)
            if request is None:
                raise NotFoundError(f"no request {request_id}")
            _ = request.events  # load the history for the caller
            return request

    def overdue(self, actor: Actor) -> list[RightsRequest]:
        return [r for r in self.queue(actor) if self._due(r) < now()]

    def require_manual_check(self, actor: Actor, request_id: str) -> None:
        require(actor, Action.REQUESTS)
        self._dpo_update(actor, request_id, "manual check required", manual_check="required")

    def approve(self, actor: Actor, request_id: str, reason: str) -> None:
        """The DPO judged the evidence and is satisfied that the requester is the person whose faces the live
        check found; the reason is recorded in the request's history and the audit log."""
        require(actor, Action.REQUESTS)
        if not (reason or "").strip():
            raise InvalidValueError("reason", "an approval records what the DPO judged it on")
        with self.db.read() as session:
            request = self._get(session, request_id)
            if request.selfie_checked_at is None:
                raise ConflictError(f"request {request_id} has no passed live check to judge yet")
        self._dpo_update(actor, request_id, f"identity approved: {reason.strip()}", manual_check="approved")
        self._after_identity_step(request_id)

    def evidence_of(self, actor: Actor, request_id: str) -> RightsRequest:
        """The request with its evidence, for the DPO; the viewing is audited (the files: `self.evidence`)."""
        require(actor, Action.REQUESTS)
        with self.db.write() as session, session.begin():
            request = self._get(session, request_id)
            self.audit.record(session, actor=actor.name, action="request.evidence_viewed",
                              details={"request_id": request_id})
            return request

    def reject(self, actor: Actor, request_id: str, justification: str) -> None:
        """The DPO's manual check failed: the request is refused, and the requester learns nothing."""
        require(actor, Action.REQUESTS)
        if not (justification or "").strip():
            raise InvalidValueError("justification", "a refusal needs a written justification")
        self._dpo_update(actor, request_id, f"identity rejected: {justification.strip()}", manual_check="rejected")
        self.refuse(actor, request_id, justification)

    def extend(self, actor: Actor, request_id: str, *, months: int, reasons: str) -> None:
        """Art. 12(3): up to two more months, only with reasons sent to the person within the first month."""
        require(actor, Action.REQUESTS)
        if not (reasons or "").strip():
            raise InvalidValueError("reasons", "an extension needs the reasons sent to the requester")
        if months not in (1, 2):
            raise InvalidValueError("months", "an extension is one or two further months")
        with self.db.write() as session, session.begin():
            request = self._get(session, request_id)
            if now() > due_date(request.received_at):
                raise ConflictError("an extension must be sent within the first month after receipt")
            request.extension_months = months
            request.extension_reasons = reasons.strip()
            request.extension_sent_at = now()
            self._transition(session, request, S.EXTENDED, actor.name, f"extended by {months} month(s)")
        self.mailer.send(to=request.email, ref=request.id, subject=f"Your request {request.id}: more time needed",
                         body=f"We need {months} more month(s) to answer your request {request.id}, which is now "
                              f"due by {self._due(request):%Y-%m-%d}. Reasons: {reasons.strip()}\n\n{COMPLAINT}\n")

    def refuse(self, actor: Actor, request_id: str, justification: str, *, unfounded: bool = False) -> None:
        """Refuse with a stored justification; the person is told of their right to complain."""
        require(actor, Action.REQUESTS)
        if not (justification or "").strip():
            raise InvalidValueError("justification", "a refusal needs a written justification")
        with self.db.write() as session, session.begin():
            request = self._get(session, request_id)
            request.refusal_justification = justification.strip()
            if unfounded:
                request.unfounded_justification = justification.strip()
            self._transition(session, request, S.REFUSED, actor.name,
                             "manifestly unfounded or excessive" if unfounded else "refused")
            self._close(request)
        self.mailer.send(to=request.email, ref=request.id, subject=f"Your request {request.id}: refused", body=(
            f"We cannot act on your request {request.id}. Reason: {justification.strip()}\n\n{COMPLAINT}\n"))

    def decide_objection(self, actor: Actor, request_id: str, *, uphold: bool, reason: str) -> dict[str, Any]:
        """Art. 21: an upheld objection leads to erasure; overriding it needs compelling legitimate grounds,
        written down and logged."""
        require(actor, Action.REQUESTS)
        if not (reason or "").strip():
            raise InvalidValueError("reason", "the decision on an objection needs its reasons")
        with self.db.write() as session, session.begin():
            request = self._get(session, request_id)
            if request.kind != RequestKind.OBJECTION:
                raise ConflictError(f"request {request_id} is not an objection")
            request.details = {**request.details, "decision": "upheld" if uphold else "overridden",
                               "decision_reason": reason.strip()}
        return self._fulfil(request_id, actor.name, f"objection {'upheld' if uphold else 'overridden'}")

    def fulfil(self, actor: Actor, request_id: str, note: str = "") -> dict[str, Any]:
        """Answer a verified request (the DPO's command; automatic kinds are answered on verification)."""
        require(actor, Action.REQUESTS)
        return self._fulfil(request_id, actor.name, note)

    # -- internals -----------------------------------------------------------------------------
    def _after_identity_step(self, request_id: str, *, answer_now: bool = True) -> None:
        with self.db.write() as session, session.begin():
            request = self._get(session, request_id)
            done = (request.status == S.IDENTITY_PENDING and request.email_verified_at is not None
                    and request.selfie_checked_at is not None and request.manual_check in ("none", "approved"))
            if not done:
                return
            self._transition(session, request, S.VERIFIED, PORTAL, "identity verified")
            kind = RequestKind(request.kind)
        if kind in ANSWERED_ON_VERIFICATION and answer_now:
            self._fulfil(request_id, "system", "answered on verification")

    def _fulfil(self, request_id: str, actor_name: str, note: str) -> dict[str, Any]:
        with self.db.write() as session, session.begin():
            request = self._get(session, request_id)
            if request.status not in (S.VERIFIED, S.IN_PROGRESS, S.EXTENDED):
                raise ConflictError(f"request {request_id} is {request.status}; it can be answered once verified")
            if request.status == S.VERIFIED:
                self._transition(session, request, S.IN_PROGRESS, actor_name, note or "in progress")
        answer = self.fulfil_kind(request, actor_name, disclose=request.manual_check == "approved")
        with self.db.write() as session, session.begin():
            request = self._get(session, request_id)
            request.answer = dict(answer.public)
            request.staff_answer = answer.staff or None
            package = answer.package
            if package is not None:
                token = identity.new_token()
                request.package_key = self.blobs.put(f"packages/{request.id}.zip", package,
                                                     self.blobs.vault.new_key("package"))
                request.package_token_hash = identity.digest(token)
                request.package_expires_at = now() + timedelta(days=self.settings.package_ttl_days)
                request.answer["download"] = f"/portal/requests/{request.id}/package?token={token}"
            self._transition(session, request, S.COMPLETED, actor_name, note or "answered")
            self._close(request)
            answer_public = dict(request.answer)
        self.mailer.send(to=request.email, ref=request.id, subject=f"Your request {request.id}: answered", body=(
            f"Your {request.kind} request {request.id} has been answered. See it at {self.settings.portal_url}\n"))
        return answer_public

    def _close(self, request: RightsRequest) -> None:
        """Verification material goes when the request closes (hard rule 8), and so does the mail kept about it
        (its e-mail code); only the closing notice, sent next and holding no code, is left."""
        request.closed_at = now()
        self.mailer.purge(request.id)
        if request.selfie_key:
            self.blobs.shred(request.selfie_key)
            request.selfie_key = None
        self.evidence.shred(request)
        request.code_hash = None

    def _dpo_update(self, actor: Actor, request_id: str, note: str, **changes: Any) -> None:
        with self.db.write() as session, session.begin():
            request = self._get(session, request_id)
            if request.status in CLOSED:
                raise ConflictError(f"request {request_id} is closed")
            for name, value in changes.items():
                setattr(request, name, value)
            self._event(session, request, S(request.status), S(request.status), actor.name, note)

    def _transition(self, session: Session, request: RightsRequest, to: RequestStatus, actor: str, note: str) -> None:
        current = S(request.status)
        if not allowed(current, to):
            raise ConflictError(f"request {request.id} cannot go from {current.value} to {to.value}")
        request.status = to.value
        self._event(session, request, current, to, actor, note)

    def _event(self, session: Session, request: RightsRequest, source: RequestStatus | None, to: RequestStatus,
               actor: str, note: str) -> None:
        session.add(RequestEvent(request_id=request.id, from_status=source.value if source else None,
                                 to_status=to.value, actor=actor, note=note))
        self.audit.record(session, actor=actor, action="request.event", details={
            "request_id": request.id, "kind": request.kind, "from": source.value if source else None,
            "to": to.value, "note": note})

    def _get(self, session: Session, request_id: str) -> RightsRequest:
        request = session.get(RightsRequest, request_id)
        if request is None:
            raise NotFoundError(f"no request {request_id}")
        return request

    def _by_token(self, session: Session, request_id: str, token: str) -> RightsRequest:
        request = session.get(RightsRequest, request_id or "")
        valid = identity.same_secret(request.status_token_hash if request else None, token)
        if request is None or not valid:
            raise NotFoundError("no request matches this reference and token")
        # The link is the requester's session: it ends some time after the request closed (told only to
        # someone holding the right token, so it reveals nothing to anyone else).
        if request.closed_at is not None and \
                now() > request.closed_at + timedelta(days=self.settings.status_link_days):
            raise NotFoundError("this link has expired (the request was closed on "
                                f"{request.closed_at.date().isoformat()}); make a new request if you need to")
        return request

    def due(self, request: RightsRequest) -> datetime:
        """The due date in force: receipt + 1 calendar month, or the extended date."""
        return self._due(request)

    def _due(self, request: RightsRequest) -> datetime:
        return due_in_force(request.received_at, request.due_at, request.extension_months)

    def days_left(self, request: RightsRequest) -> int:
        return (self._due(request) - now()).days


def _clean_details(kind: RequestKind, details: dict[str, Any]) -> dict[str, Any]:
    allowed_keys = {"message", "reasons", "purposes", "consent_to_keep_templates"}  # set by the requester
    unknown = set(details) - allowed_keys
    if unknown:
        raise InvalidValueError("details", f"unknown field(s): {', '.join(sorted(unknown))}")
    clean: dict[str, Any] = {k: v for k, v in details.items() if v not in (None, "")}
    if kind is RequestKind.OPT_OUT and clean.get("consent_to_keep_templates") is not True:
        raise InvalidValueError("consent_to_keep_templates", "opting out needs your consent to keep your face "
                                "templates, only to recognise and exclude you at collection")
    if kind is RequestKind.OBJECTION and not str(clean.get("reasons", "")).strip():
        raise InvalidValueError("reasons", "an objection states the grounds relating to your situation")
    return clean

