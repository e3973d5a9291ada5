"""/console: the staff web console's pages (sign-in, search, the DPO's queue, the compliance dashboard).

Server-rendered pages over the same services and the same role table as the API: every page names the action it
serves, and a role that may not do it gets a 403 page, audited as `auth.denied` like the API's refusals. A person
signs in with a password (accounts/staff.py); the session is a cookie sent only to /console. Every form carries
the portal's double-submit CSRF token (web/security.py), its cookie also scoped to /console.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Coroutine
from datetime import UTC, datetime
from pathlib import PurePath
from typing import Annotated, Any

from fastapi import APIRouter, Depends, File, Form, Request, UploadFile
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, RedirectResponse, Response
from sqlalchemy import select
from starlette.concurrency import run_in_threadpool

from facetrail.accounts.roles import Action, Actor, Role, account_action, require, require_any
from facetrail.accounts.staff import SignInRefusedError, StaffSignIn
from facetrail.api.denials import DenialLog
from facetrail.api.deps import FacetrailDep, get_facetrail
from facetrail.api.errors import status_for
from facetrail.api.uploads import read_upload, upload_items
from facetrail.compliance.views import breach_view
from facetrail.errors import (
    ConflictError,
    FacetrailError,
    InvalidValueError,
    NoFaceError,
    NotFoundError,
    PermissionDeniedError,
)
from facetrail.policy.legal import ART9_DESCRIPTIONS, Art9Condition, LegalBasis
from facetrail.rights.views import dpo_view, evidence_sheet, evidence_view
from facetrail.runtime import Facetrail
from facetrail.search.reach import threshold_line
from facetrail.store.models import SearchRecord
from facetrail.timestamps import iso_z
from facetrail.web import render
from facetrail.web.folders import FolderJobs, allowed_roots, folder_choices
from facetrail.web.security import SecureRoute, add_security_headers, csrf_ok, csrf_token, set_csrf_cookie

PREFIX = "/console"
SESSION_COOKIE = "ft_console"
STATIC_FILES = {"console.css": "text/css", "favicon.svg": "image/svg+xml", "console.js": "text/javascript"}
CSRF_REFUSED = "This form was not sent from this console's page, or the page is too old. Reload it and try again."
RECENT_SEARCHES = 20
# The console's sections: (path, title, the actions that open it).
SECTIONS = [
    ("/console/search", "Search", (Action.SEARCH,)),
    ("/console/sources", "Sources", (Action.SOURCE_READ,)),
    ("/console/people", "People", (Action.PEOPLE_READ,)),
    ("/console/requests", "Requests", (Action.REQUESTS,)),
    ("/console/compliance", "Compliance", (Action.COMPLIANCE_READ,)),
    ("/console/accounts", "Accounts", (Action.ACCOUNT_ADMIN, Action.OVERSIGHT_ACCOUNTS)),
]


class SignInNeededError(Exception):
    """No live session: the page answers with a redirect to the sign-in form."""


class ForeignFormError(Exception):
    """A form without this console's CSRF token (or posted from another site): refused, 403."""


class ConsoleRoute(SecureRoute):
    """A console page: without a session it redirects to sign-in; a refusal of the role table answers the 403
    page and is audited; any other FacetrailError answers an error page."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def console_page(request: Request) -> Response:
            try:
                return await handler(request)
            except SignInNeededError:
                return RedirectResponse(f"{PREFIX}/sign-in", 303)
            except ForeignFormError:
                return add_security_headers(page(request, "console/error.html", 403, title="Please reload the page",
                                                 message=CSRF_REFUSED))
            except PermissionDeniedError as exc:
                actor = getattr(request.state, "actor", None)
                await run_in_threadpool(_log_denial, request, actor if isinstance(actor, Actor) else None, exc)
                return add_security_headers(page(request, "console/error.html", 403, actor=actor,
                                                 title="Not for your role", message=str(exc)))
            except FacetrailError as exc:
                return add_security_headers(page(request, "console/error.html", status_for(exc),
                                                 actor=getattr(request.state, "actor", None),
                                                 title="This could not be done", message=str(exc)))

        return console_page


def _log_denial(request: Request, actor: Actor | None, exc: PermissionDeniedError) -> None:
    """The refusal as the API's are logged: an `auth.denied` entry with the account, its role and the route."""
    denials: DenialLog = request.app.state.denials
    route = getattr(request.scope.get("route"), "path", None) or request.url.path
    denials.denied(actor, method=request.method, route=route, address=client_ip(request), message=str(exc))


render.ENV.filters["basename"] = lambda path: PurePath(str(path)).name  # a result's image, by its file name

router = APIRouter(prefix=PREFIX, route_class=ConsoleRoute, include_in_schema=False)


def sign_ins(ft: FacetrailDep) -> StaffSignIn:
    return StaffSignIn(ft.db, ft.audit)


SignIns = Annotated[StaffSignIn, Depends(sign_ins)]


def signed_in(request: Request) -> Actor:
    """The actor of the request's console session, kept on request.state for the refusal log."""
    actor = sign_ins(get_facetrail(request)).actor_of(request.cookies.get(SESSION_COOKIE, ""))
    if actor is None:
        raise SignInNeededError
    request.state.actor = actor
    return actor


Staff = Annotated[Actor, Depends(signed_in)]


def may(actor: Actor, *actions: Action) -> bool:
    """Whether the role table lets the actor do one of `actions` (what the navigation offers)."""
    try:
        require_any(actor, *actions)
    except PermissionDeniedError:
        return False
    return True


def page(request: Request, template: str, status_code: int = 200, *, actor: Actor | None = None,
         **context: Any) -> HTMLResponse:
    """A console page with its navigation (the sections the actor's role opens) and the CSRF token."""
    token, fresh = csrf_token(request)
    sections = [(path, title) for path, title, actions in SECTIONS if actor is not None and may(actor, *actions)]
    response = render.page(template, status_code, csrf=token, actor=actor, sections=sections,
                           here=request.url.path, **context)
    if fresh:
        set_csrf_cookie(request, response, token, path=PREFIX)
    return response


def refuse_foreign(request: Request, csrf: str) -> None:
    if not csrf_ok(request, csrf):
        raise ForeignFormError


def client_ip(request: Request) -> str:
    return request.client.host if request.client else "unknown"


# Sign-in, sign-out and the home page.

@router.get("/sign-in", response_class=HTMLResponse)
def sign_in_form(request: Request) -> HTMLResponse:
    return page(request, "console/sign_in.html", error="", name="")


@router.post("/sign-in", response_model=None)
def sign_in(request: Request, service: SignIns, name: Annotated[str, Form()] = "",
            password: Annotated[str, Form()] = "", csrf: Annotated[str, Form()] = "") -> Response:
    refuse_foreign(request, csrf)
    try:
        done = service.sign_in(name.strip(), password, ip=client_ip(request))
    except SignInRefusedError as exc:
        return page(request, "console/sign_in.html", 401, error=str(exc), name=name[:100])
    response = RedirectResponse(PREFIX, 303)
    response.set_cookie(SESSION_COOKIE, done.token, httponly=True, samesite="strict", path=PREFIX,
                        secure=request.url.scheme == "https")
    return response


@router.post("/sign-out")
def sign_out(request: Request, service: SignIns, csrf: Annotated[str, Form()] = "") -> Response:
    refuse_foreign(request, csrf)
    service.sign_out(request.cookies.get(SESSION_COOKIE, ""))
    response = RedirectResponse(f"{PREFIX}/sign-in", 303)
    response.delete_cookie(SESSION_COOKIE, path=PREFIX)
    return response


@router.get("", response_class=HTMLResponse)
def home(request: Request, actor: Staff) -> HTMLResponse:
    return page(request, "console/home.html", actor=actor)


# Search (investigators): the API's SearchService, and its crops through the same access check.

def _purposes(ft: FacetrailDep, actor: Actor) -> list[str]:
    """The purposes this account may search for that some source is registered for."""
    registered = ft.sources.registered_purposes()
    return sorted(registered if actor.purposes is None else registered & actor.purposes)


def _own_searches(ft: FacetrailDep, actor: Actor) -> list[dict[str, str]]:
    with ft.db.read() as session:
        rows = session.scalars(select(SearchRecord).where(SearchRecord.actor == actor.name)
                               .order_by(SearchRecord.created_at.desc()).limit(RECENT_SEARCHES))
        return [{"at": iso_z(r.created_at), "purpose": r.purpose, "case": r.case_ref, "id": r.id} for r in rows]


def _search_page(request: Request, ft: FacetrailDep, actor: Actor, status_code: int = 200, **context: Any
                 ) -> HTMLResponse:
    defaults: dict[str, Any] = {"error": "", "field": "", "purpose": "", "case": "", "face": "", "outcome": None}
    return page(request, "console/search.html", status_code, actor=actor, purposes=_purposes(ft, actor),
                history=_own_searches(ft, actor), **{**defaults, **context})


@router.get("/search", response_class=HTMLResponse)
def search_form(request: Request, ft: FacetrailDep, actor: Staff) -> HTMLResponse:
    require(actor, Action.SEARCH)
    return _search_page(request, ft, actor)


@router.post("/search", response_class=HTMLResponse)
def search(request: Request, ft: FacetrailDep, actor: Staff, photo: Annotated[UploadFile | None, File()] = None,
           purpose: Annotated[str, Form()] = "", case: Annotated[str, Form()] = "",
           face: Annotated[str, Form()] = "", csrf: Annotated[str, Form()] = "") -> HTMLResponse:
    """Search with one face of the photo: the largest, or the one numbered in `face` (1 = the largest)."""
    require(actor, Action.SEARCH)
    refuse_foreign(request, csrf)
    form: dict[str, Any] = {"purpose": purpose, "case": case, "face": face}
    if face.strip() and not face.strip().isdigit():
        return _search_page(request, ft, actor, 422, error="The face is a number: 1 for the largest.", field="face",
                            **form)
    if not purpose.strip():
        return _search_page(request, ft, actor, 422, error="Choose the purpose of this search.", field="purpose",
                            **form)
    if not case.strip():
        return _search_page(request, ft, actor, 422, error="Enter the case reference.", field="case", **form)
    data, too_large = read_upload(photo, ft.settings.max_file_bytes) if photo is not None else (b"", None)
    if too_large or not data:
        return _search_page(request, ft, actor, 422, error=too_large or "Choose a photo to search with.",
                            field="photo", **form)
    wait = request.app.state.search_limiter.hit(actor.name)  # the same per-account budget as the API's searches
    if wait:
        return _search_page(request, ft, actor, 429, error=f"Too many searches: try again in {wait} s.", **form)
    try:
        chosen = int(face) - 1 if face.strip() else None
        searched = ft.search.search(actor, data, purpose=purpose, case_ref=case, face=chosen)
        outcome = {**searched.as_dict(), "threshold_line": threshold_line(searched.reach)}
    except InvalidValueError as exc:
        return _search_page(request, ft, actor, 422, error=exc.message, field=exc.field, **form)
    except NoFaceError as exc:
        return _search_page(request, ft, actor, 422, error=f"{exc}: choose a photo where a face shows clearly.",
                            field="photo", **form)
    for hit in outcome["results"]:
        face = f"{PREFIX}/searches/{outcome['search_id']}/faces/{hit['face_id']}"
        hit["crop"], hit["full"] = f"{face}/crop", face
    return _search_page(request, ft, actor, 200, outcome=outcome, **form)


@router.get("/searches/{search_id}/faces/{face_id}/crop")
def result_crop(search_id: str, face_id: int, ft: FacetrailDep, actor: Staff) -> Response:
    """The crop of a result, only for the account whose search returned it (SearchService.result_crop)."""
    return Response(ft.search.result_crop(actor, search_id, face_id), media_type="image/jpeg",
                    headers={"Cache-Control": "no-store"})


@router.get("/searches/{search_id}/faces/{face_id}", response_class=HTMLResponse)
def result_page(request: Request, search_id: str, face_id: int, ft: FacetrailDep, actor: Staff) -> HTMLResponse:
    """A result's full image with the face outlined, on a page of its own (under the crop's check)."""
    face = ft.search.shown_face(actor, search_id, face_id)
    return page(request, "console/result.html", actor=actor, search_id=search_id, face_id=face.id,
                image_id=face.image_id)


@router.get("/searches/{search_id}/faces/{face_id}/image")
def result_image(search_id: str, face_id: int, ft: FacetrailDep, actor: Staff) -> Response:
    """The full stored image of a result with the face outlined, under the crop's check (SearchService.result_image,
    audited as `search.image`)."""
    return Response(ft.search.result_image(actor, search_id, face_id), media_type="image/jpeg",
                    headers={"Cache-Control": "no-store"})


# The DPO's queue: RequestService, as the API's /v1/requests.

@router.get("/requests", response_class=HTMLResponse)
def queue(request: Request, ft: FacetrailDep, actor: Staff) -> HTMLResponse:
    require(actor, Action.REQUESTS)
    views = [dpo_view(ft.requests, r) for r in ft.requests.queue(actor)]  # overdue first, then by due date
    return page(request, "console/requests.html", actor=actor, requests=views)


# The DPO's decisions on a request's page: the RequestService calls of the API's /v1/requests routes, each with
# the text it records (the reason, the justification, the reasons sent to the requester, or the note).
DECISIONS: dict[str, tuple[str, Callable[[Facetrail, Actor, str, str, int], object]]] = {
    "approve": ("Identity approved.", lambda ft, a, rid, text, _m: ft.requests.approve(a, rid, text)),
    "reject": ("Identity rejected; the request is closed.",
               lambda ft, a, rid, text, _m: ft.requests.reject(a, rid, text)),
    "extend": ("Deadline extended; the requester was sent the reasons.",
               lambda ft, a, rid, text, months: ft.requests.extend(a, rid, months=months, reasons=text)),
    "refuse": ("Request refused; the requester was told why and of the right to complain.",
               lambda ft, a, rid, text, _m: ft.requests.refuse(a, rid, text)),
    "fulfil": ("Request answered.", lambda ft, a, rid, text, _m: ft.requests.fulfil(a, rid, text)),
}
# Every decision but fulfilling needs its text.
TEXT_NEEDED = {"approve", "reject", "extend", "refuse"}


@router.get("/requests/{request_id}", response_class=HTMLResponse)
def request_page(request: Request, request_id: str, ft: FacetrailDep, actor: Staff, done: str = "") -> HTMLResponse:
    require(actor, Action.REQUESTS)
    return _request_page(request, ft, actor, request_id, note=DECISIONS[done][0] if done in DECISIONS else "")


def _request_page(request: Request, ft: FacetrailDep, actor: Actor, request_id: str, status_code: int = 200,
                  **context: Any) -> HTMLResponse:
    found = ft.requests.get(actor, request_id)
    defaults = {"note": "", "error": "", "text": "", "decision": ""}
    return page(request, "console/request.html", status_code, actor=actor, closed=render.CLOSED,
                r=dpo_view(ft.requests, found, with_events=True), has_package=found.package_key is not None,
                **{**defaults, **context})


@router.get("/requests/{request_id}/evidence", response_class=HTMLResponse)
def evidence(request: Request, request_id: str, ft: FacetrailDep, actor: Staff) -> HTMLResponse:
    """The identity evidence (rights/views.evidence_view; reading it is audited): the capture attempts, the key
    frames beside the held faces they matched with scores and bands (one sheet), the documents."""
    view = evidence_view(ft.requests, ft.requests.evidence_of(actor, request_id))
    return page(request, "console/evidence.html", actor=actor, e=view)


@router.get("/requests/{request_id}/evidence/sheet")
def evidence_picture(request_id: str, ft: FacetrailDep, actor: Staff) -> Response:
    """The key frames and the matched faces side by side, one JPEG (rights/views.evidence_sheet); audited."""
    sheet = evidence_sheet(evidence_view(ft.requests, ft.requests.evidence_of(actor, request_id)))
    return Response(sheet, media_type="image/jpeg", headers={"Cache-Control": "no-store"})


@router.get("/requests/{request_id}/package")
def access_package(request_id: str, ft: FacetrailDep, actor: Staff) -> Response:
    """The access package an answered request sent (RequestService.package_of; audited)."""
    return Response(ft.requests.package_of(actor, request_id), media_type="application/zip",
                    headers={"Cache-Control": "no-store",
                             "Content-Disposition": f'attachment; filename="facetrail-{request_id}.zip"'})


@router.post("/requests/{request_id}/decide", response_model=None)
def decide(request: Request, request_id: str, ft: FacetrailDep, actor: Staff,
           decision: Annotated[str, Form()] = "", text: Annotated[str, Form()] = "",
           months: Annotated[int, Form()] = 1, csrf: Annotated[str, Form()] = "") -> Response:
    """Approve or reject the requester's identity, extend the deadline, refuse, or answer, with the text recorded."""
    require(actor, Action.REQUESTS)
    refuse_foreign(request, csrf)
    if decision not in DECISIONS:
        return _request_page(request, ft, actor, request_id, 422, error="Choose a decision.", text=text)
    if decision in TEXT_NEEDED and not text.strip():
        return _request_page(request, ft, actor, request_id, 422, decision=decision, text=text,
                             error="Write the reasons for this decision: they are recorded.")
    try:
        DECISIONS[decision][1](ft, actor, request_id, text, months)
    except InvalidValueError as exc:
        return _request_page(request, ft, actor, request_id, 422, decision=decision, text=text, error=exc.message)
    return RedirectResponse(f"{PREFIX}/requests/{request_id}?done={decision}", 303)


# The compliance dashboard (DPO, auditor).

def _dashboard(request: Request, ft: FacetrailDep, actor: Actor, verified: dict[str, Any] | None = None
               ) -> HTMLResponse:
    require(actor, Action.COMPLIANCE_READ)
    now = datetime.now(UTC)
    volumes = ft.compliance.facts().volumes
    by_status = (dict(Counter(r.status for r in ft.requests.queue(actor, open_only=False)))
                 if may(actor, Action.REQUESTS) else None)
    last_purge = ft.retention.last_run()
    return page(request, "console/compliance.html", actor=actor, volumes=volumes, by_status=by_status,
                orders=[o.as_dict() for o in ft.orders.status_all(actor)],
                breaches=[breach_view(b, now, with_history=False) for b in ft.breaches.list(actor)],
                last_purge=iso_z(last_purge) if last_purge else None, verified=verified,
                may_verify=may(actor, Action.AUDIT_READ))


@router.get("/compliance", response_class=HTMLResponse)
def compliance(request: Request, ft: FacetrailDep, actor: Staff) -> HTMLResponse:
    return _dashboard(request, ft, actor)


@router.post("/compliance/verify", response_class=HTMLResponse)
def verify_now(request: Request, ft: FacetrailDep, actor: Staff, csrf: Annotated[str, Form()] = "") -> HTMLResponse:
    """Walk the whole audit chain now (audited as `audit.verify`) and show the dashboard with the result."""
    require_any(actor, Action.AUDIT_READ)
    refuse_foreign(request, csrf)
    result = ft.verify_audit(actor)
    return _dashboard(request, ft, actor, {"ok": result.ok, "entries": result.entries,
                                           "first_broken_seq": result.first_broken_seq, "reason": result.reason,
                                           "at": iso_z(datetime.now(UTC))})


# Sources and ingestion: SourceRegistry and the ingestion service, as the API's /v1/sources.

SOURCE_FIELDS = ("name", "controller", "purposes", "legal_basis", "art9_condition", "evidence_ref", "jurisdictions",
                 "retention_days", "description")


def _sources_page(request: Request, ft: FacetrailDep, actor: Actor, status_code: int = 200, **context: Any
                  ) -> HTMLResponse:
    require(actor, Action.SOURCE_READ)
    defaults: dict[str, Any] = {"error": "", "field": "", "report": None, "form": dict.fromkeys(SOURCE_FIELDS, ""),
                                "folder_error": "", "folder": "", "folder_source": ""}
    ingest = may(actor, Action.INGEST)
    return page(request, "console/sources.html", status_code, actor=actor, sources=ft.sources.list(actor),
                may_write=may(actor, Action.SOURCE_WRITE), may_ingest=ingest,
                folders=folder_choices(allowed_roots(ft.settings.console_folders)) if ingest else [],
                legal_bases=[b.value for b in LegalBasis],
                art9=[(c.value, ART9_DESCRIPTIONS[c]) for c in Art9Condition], **{**defaults, **context})


def _words(text: str) -> list[str]:
    return [part.strip() for part in text.replace("\n", ",").split(",") if part.strip()]


@router.get("/sources", response_class=HTMLResponse)
def sources(request: Request, ft: FacetrailDep, actor: Staff) -> HTMLResponse:
    return _sources_page(request, ft, actor)


@router.post("/sources", response_class=HTMLResponse)
def create_source(request: Request, ft: FacetrailDep, actor: Staff, name: Annotated[str, Form()] = "",
                  controller: Annotated[str, Form()] = "", purposes: Annotated[str, Form()] = "",
                  legal_basis: Annotated[str, Form()] = "", art9_condition: Annotated[str, Form()] = "",
                  evidence_ref: Annotated[str, Form()] = "", jurisdictions: Annotated[str, Form()] = "",
                  retention_days: Annotated[str, Form()] = "", description: Annotated[str, Form()] = "",
                  csrf: Annotated[str, Form()] = "") -> Response:
    """Register a source with its legal basis: the registry's validation, its error shown beside the field."""
    require(actor, Action.SOURCE_WRITE)
    refuse_foreign(request, csrf)
    form = {"name": name, "controller": controller, "purposes": purposes, "legal_basis": legal_basis,
            "art9_condition": art9_condition, "evidence_ref": evidence_ref, "jurisdictions": jurisdictions,
            "retention_days": retention_days, "description": description}
    if not retention_days.strip().isdigit():
        return _sources_page(request, ft, actor, 422, error="A whole number of days.", field="retention_days",
                             form=form)
    try:
        ft.sources.add(actor, name=name, controller=controller, purposes=_words(purposes), legal_basis=legal_basis,
                       art9_condition=art9_condition, evidence_ref=evidence_ref,
                       jurisdictions=_words(jurisdictions), retention_days=int(retention_days),
                       description=description)
    except InvalidValueError as exc:
        return _sources_page(request, ft, actor, 422, error=f"{exc.field}: {exc.message}",
                             field=exc.field.split(".")[0], form=form)
    return RedirectResponse(f"{PREFIX}/sources", 303)


@router.post("/sources/{source_id}/images", response_class=HTMLResponse)
def upload(request: Request, source_id: int, ft: FacetrailDep, actor: Staff,
           files: Annotated[list[UploadFile] | None, File()] = None, csrf: Annotated[str, Form()] = "") -> HTMLResponse:
    """Ingest uploaded images or zip archives into a source; the report lists every error and skipped file."""
    require(actor, Action.INGEST)
    refuse_foreign(request, csrf)
    items = upload_items(files or [], ft.input_limits)
    report = ft.ingest.ingest(actor, source_id, items, workers=1)  # small batches, as the API's uploads
    source = ft.sources.get(actor, source_id).name
    return _sources_page(request, ft, actor, report={**report.as_dict(), "source": source})


def folder_jobs(request: Request) -> FolderJobs:
    """The server's folder ingestions, made with the app's first one."""
    jobs = getattr(request.app.state, "folder_jobs", None)
    if jobs is None:
        jobs = request.app.state.folder_jobs = FolderJobs()
    return jobs


@router.post("/sources/folder", response_model=None)
def ingest_folder(request: Request, ft: FacetrailDep, actor: Staff, source: Annotated[str, Form()] = "",
                  folder: Annotated[str, Form()] = "", csrf: Annotated[str, Form()] = "") -> Response:
    """Start ingesting a server folder the console may read into a source; its page shows the progress."""
    require(actor, Action.INGEST)
    refuse_foreign(request, csrf)
    form = {"folder": folder, "folder_source": source}
    if not source.strip().isdigit():
        return _sources_page(request, ft, actor, 422, folder_error="Choose the source.", **form)
    try:
        job = folder_jobs(request).start(ft, actor, int(source), folder)
    except (InvalidValueError, ConflictError) as exc:
        return _sources_page(request, ft, actor, 422 if isinstance(exc, InvalidValueError) else 409,
                             folder_error=exc.message if isinstance(exc, InvalidValueError) else str(exc), **form)
    return RedirectResponse(f"{PREFIX}/ingestions/{job.id}", 303)


@router.get("/ingestions/{job_id}", response_class=HTMLResponse)
def ingestion(request: Request, job_id: str, actor: Staff) -> HTMLResponse:
    """A folder ingestion: its progress while it runs (console.js polls the JSON below), then its report."""
    job = folder_jobs(request).get(actor, job_id)
    return page(request, "console/ingestion.html", actor=actor, job=job.as_dict(), report=job.report)


@router.get("/ingestions/{job_id}/progress")
def ingestion_progress(request: Request, job_id: str, actor: Staff) -> JSONResponse:
    return JSONResponse(folder_jobs(request).get(actor, job_id).as_dict(), headers={"Cache-Control": "no-store"})


# People (operators): PeopleService, as the API's /v1/people; the faces' crops through its own access check.

PEOPLE_SHOWN = 300  # people listed on the page, most faces first
PEOPLE_DONE = {"name": "Name saved.",
               "merge": "People merged into this one.", "split": "The chosen faces are now a new person."}


def _ids(text: str) -> list[int] | None:
    """Whole numbers separated by commas or spaces; None when something else is there."""
    parts = text.replace(",", " ").split()
    return [int(p) for p in parts] if all(p.isdigit() for p in parts) else None


@router.get("/people", response_class=HTMLResponse)
def people(request: Request, ft: FacetrailDep, actor: Staff) -> HTMLResponse:
    return _people_page(request, ft, actor)


def _people_page(request: Request, ft: FacetrailDep, actor: Actor, report: dict[str, int] | None = None
                 ) -> HTMLResponse:
    require(actor, Action.PEOPLE_READ)
    everyone = ft.people.list(actor)
    return page(request, "console/people.html", actor=actor, people=[p.as_dict() for p in everyone[:PEOPLE_SHOWN]],
                total=len(everyone), sources={s.id: s.name for s in ft.sources.list(actor)}, report=report,
                may_write=may(actor, Action.PEOPLE_WRITE))


@router.post("/people/cluster", response_class=HTMLResponse)
def cluster_people(request: Request, ft: FacetrailDep, actor: Staff, csrf: Annotated[str, Form()] = ""
                   ) -> HTMLResponse:
    """Place every face that has no person yet into a person, and show how it went."""
    require(actor, Action.PEOPLE_WRITE)
    refuse_foreign(request, csrf)
    report = ft.people.cluster(actor)
    return _people_page(request, ft, actor, {"faces": report.faces, "joined": report.joined,
                                             "created": report.people_created})


def _person_page(request: Request, ft: FacetrailDep, actor: Actor, person_id: int, status_code: int = 200,
                 **context: Any) -> HTMLResponse:
    detail = ft.people.show(actor, person_id).as_dict()  # audited: who looked at whom
    defaults: dict[str, Any] = {"note": "", "error": "", "field": "", "others": ""}
    return page(request, "console/person.html", status_code, actor=actor, p=detail,
                source=ft.sources.get(actor, detail["source_id"]).name, **{**defaults, **context})


@router.get("/people/{person_id}", response_class=HTMLResponse)
def person(request: Request, person_id: int, ft: FacetrailDep, actor: Staff, done: str = "") -> HTMLResponse:
    require(actor, Action.PEOPLE_READ)
    return _person_page(request, ft, actor, person_id, note=PEOPLE_DONE.get(done, ""))


@router.post("/people/{person_id}/name", response_model=None)
def name_person(request: Request, person_id: int, ft: FacetrailDep, actor: Staff, name: Annotated[str, Form()] = "",
                csrf: Annotated[str, Form()] = "") -> Response:
    """Name the person; a blank name clears it."""
    require(actor, Action.PEOPLE_WRITE)
    refuse_foreign(request, csrf)
    try:
        ft.people.name(actor, person_id, name)
    except InvalidValueError as exc:
        return _person_page(request, ft, actor, person_id, 422, error=exc.message, field="name")
    return RedirectResponse(f"{PREFIX}/people/{person_id}?done=name", 303)


@router.post("/people/{person_id}/merge", response_model=None)
def merge_people(request: Request, person_id: int, ft: FacetrailDep, actor: Staff,
                 others: Annotated[str, Form()] = "", csrf: Annotated[str, Form()] = "") -> Response:
    """Merge the people numbered in `others` into this one."""
    require(actor, Action.PEOPLE_WRITE)
    refuse_foreign(request, csrf)
    ids = _ids(others)
    try:
        if ids is None:
            raise InvalidValueError("other_ids", "the people's numbers, separated by commas")
        ft.people.merge(actor, person_id, ids)
    except (InvalidValueError, NotFoundError) as exc:
        message = exc.message if isinstance(exc, InvalidValueError) else str(exc)
        return _person_page(request, ft, actor, person_id, 422, error=message, field="others", others=others)
    return RedirectResponse(f"{PREFIX}/people/{person_id}?done=merge", 303)


@router.post("/people/{person_id}/split", response_model=None)
def split_person(request: Request, person_id: int, ft: FacetrailDep, actor: Staff,
                 faces: Annotated[list[int] | None, Form()] = None, csrf: Annotated[str, Form()] = "") -> Response:
    """Move the ticked faces to a new person, whose page then opens."""
    require(actor, Action.PEOPLE_WRITE)
    refuse_foreign(request, csrf)
    try:
        if not faces:
            raise InvalidValueError("face_ids", "tick the faces to split off")
        created = ft.people.split(actor, person_id, faces)
    except InvalidValueError as exc:
        return _person_page(request, ft, actor, person_id, 422, error=exc.message, field="faces")
    return RedirectResponse(f"{PREFIX}/people/{created.id}?done=split", 303)


@router.get("/people/faces/{face_id}/crop")
def person_face_crop(face_id: int, ft: FacetrailDep, actor: Staff) -> Response:
    """A face's crop for the People pages (PeopleService.face_crop: operators, faces in a person, not restricted)."""
    return Response(ft.people.face_crop(actor, face_id), media_type="image/jpeg",
                    headers={"Cache-Control": "no-store"})


# Accounts: AccountService, as the API's /v1/accounts (operators make operators and investigators; a DPO makes
# DPOs and auditors).

def _accounts_page(request: Request, ft: FacetrailDep, actor: Actor, status_code: int = 200, **context: Any
                   ) -> HTMLResponse:
    require_any(actor, Action.ACCOUNT_ADMIN, Action.OVERSIGHT_ACCOUNTS)
    now = datetime.now(UTC)
    rows = [{"name": a.name, "role": a.role, "purposes": "any" if a.purposes is None else ", ".join(a.purposes),
             "created_at": iso_z(a.created_at), "expires_at": iso_z(a.expires_at) if a.expires_at else None,
             "expired": a.expires_at is not None and a.expires_at <= now,
             "disabled_at": iso_z(a.disabled_at) if a.disabled_at else None,
             "mine": may(actor, account_action(Role(a.role)))} for a in ft.accounts.list(actor)]
    roles = [r.value for r in Role if may(actor, account_action(r))]
    defaults: dict[str, Any] = {"error": "", "field": "", "created": None,
                                "form": {"name": "", "role": "", "purposes": "", "expires_days": ""}}
    return page(request, "console/accounts.html", status_code, actor=actor, accounts=rows, roles=roles,
                key_ttl_days=ft.settings.key_ttl_days, **{**defaults, **context})


@router.get("/accounts", response_class=HTMLResponse)
def accounts(request: Request, ft: FacetrailDep, actor: Staff) -> HTMLResponse:
    return _accounts_page(request, ft, actor)


@router.post("/accounts", response_class=HTMLResponse)
def create_account(request: Request, ft: FacetrailDep, actor: Staff, name: Annotated[str, Form()] = "",
                   role: Annotated[str, Form()] = "", purposes: Annotated[str, Form()] = "",
                   expires_days: Annotated[str, Form()] = "", csrf: Annotated[str, Form()] = "") -> HTMLResponse:
    """Create an account; its API key is shown on this page once and never again."""
    require_any(actor, Action.ACCOUNT_ADMIN, Action.OVERSIGHT_ACCOUNTS)
    refuse_foreign(request, csrf)
    form = {"name": name, "role": role, "purposes": purposes, "expires_days": expires_days}
    scope = [p.strip() for p in purposes.split(",") if p.strip()] or None
    if expires_days.strip() and not expires_days.strip().isdigit():
        return _accounts_page(request, ft, actor, 422, error="A whole number of days (0: never).",
                              field="expires_days", form=form)
    days = int(expires_days) if expires_days.strip() else None
    try:
        account, key = ft.accounts.create(actor, name=name.strip(), role=role, purposes=scope, expires_days=days)
    except InvalidValueError as exc:
        return _accounts_page(request, ft, actor, 422, error=exc.message, field=exc.field.split(".")[0], form=form)
    return _accounts_page(request, ft, actor, 201, created={"name": account.name, "role": account.role, "key": key})


@router.post("/accounts/{name}/disable", response_model=None)
def disable_account(request: Request, name: str, ft: FacetrailDep, actor: Staff,
                    csrf: Annotated[str, Form()] = "") -> Response:
    require_any(actor, Action.ACCOUNT_ADMIN, Action.OVERSIGHT_ACCOUNTS)
    refuse_foreign(request, csrf)
    ft.accounts.disable(actor, name=name)
    return RedirectResponse(f"{PREFIX}/accounts", 303)


@router.get("/static/{name}")
def static(name: str) -> Response:
    # A fixed list rather than a directory mount: nothing else under static/ can ever be served.
    media_type = STATIC_FILES.get(name)
    if media_type is None:
        return render.error_page(404, "Not found", "There is no such file.")
    return FileResponse(render.STATIC / name, media_type=media_type, headers={"Cache-Control": "no-cache"})
