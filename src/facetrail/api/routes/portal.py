"""/portal: the public rights portal, server-rendered pages whose forms work without JavaScript.

Public by design (hard rule 3: only the intake is open to anyone): no API key, and every route about a
request needs its id and its secret status token; a wrong token and an unknown id get the same 404.
Until identity is verified (e-mail code, live check and, for disclosures, the DPO), the pages show nothing
about faces (hard rule 8), and they never show similarity scores (hard rule 12). The live check's pages
say whether the capture followed the challenge (about the capture alone), never whether it matched anyone.
Forms are protected by a double-submit CSRF cookie (facetrail.web.security); every response carries the
security headers.
"""

from __future__ import annotations

from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, BackgroundTasks, File, Form, Query, Request, UploadFile
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse, Response
from pydantic import BaseModel

from facetrail.api.deps import FacetrailDep
from facetrail.api.errors import status_for
from facetrail.api.uploads import read_upload
from facetrail.errors import (
    ConflictError,
    FacetrailError,
    InvalidValueError,
    MediaError,
    NotFoundError,
    RateLimitedError,
)
from facetrail.rights.proof import CaptureFrame
from facetrail.rights.service import MAX_CODE_ATTEMPTS
from facetrail.rights.workflow import RequestKind
from facetrail.web import render
from facetrail.web.security import SecureRoute, csrf_ok, csrf_token, set_csrf_cookie

router = APIRouter(prefix="/portal", tags=["portal"], route_class=SecureRoute)

MAX_MESSAGE = 5000
NOT_FOUND = ("We found no request with this reference and link. Check that you used the whole private link "
             "shown when you sent your request. If you lost it, send a new request: there is no limit.")
CSRF_REFUSED = ("This form was not sent from this site's page, or the page is too old. "
                "Go back, reload the page and send the form again.")
# Messages after a form, chosen by a fixed key in the redirect so that no text is reflected from the URL.
NOTES: dict[str, tuple[str, str]] = {
    "code-ok": ("ok", "Thank you: your e-mail address is confirmed."),
    "code-wrong": ("", "This code is not right, or it has expired. Check the latest e-mail from us and try again; "
                       f"after {MAX_CODE_ATTEMPTS} wrong tries, send a new request."),
    "capture-ok": ("ok", "Thank you: your live check is done."),
    "capture-unusable": ("", "We could not read one of the pictures. Send JPEG or PNG pictures, and follow the "
                             "new challenge below."),
    "capture-missing-step": ("", "A step of the challenge had no picture. Follow every step of the new challenge."),
    "capture-too-many-frames": ("", "Too many pictures for one step. Follow the new challenge below."),
    "capture-no-face": ("", "We could not see a face in one of the pictures. Face the camera in good light and "
                            "follow the new challenge below."),
    "capture-several-faces": ("", "More than one face was in a picture. Be alone in the pictures and follow the "
                                  "new challenge below."),
    "capture-repeated-frame": ("", "The same picture was sent more than once. Take a new picture for every step "
                                   "of the new challenge below."),
    "capture-wrong-pose": ("", "The pictures did not show the head positions asked for, in that order. Follow "
                               "the new challenge below."),
    "capture-face-changed": ("", "The face was not the same in every picture. Follow the new challenge below."),
    "capture-timing": ("", "The pictures were not taken within the time allowed. Follow the new challenge below."),
    "challenge-expired": ("", "That challenge had expired or was used already. Follow the new one below."),
    "document-ok": ("ok", "Thank you: we added your document to your request."),
    "document-unusable": ("", "We could not add this document (none was sent, or it is too large)."),
    "closed": ("", "This request is closed; it takes no more steps."),
}
STATIC_FILES = {"portal.css": "text/css", "portal.js": "text/javascript", "favicon.svg": "image/svg+xml"}


class PortalStatus(BaseModel):
    """What a requester may see of their request (the status page's data)."""

    id: str
    kind: str
    status: str
    received_at: str
    due_at: str
    email_verified: bool
    live_check_done: bool
    documents: int
    answer: dict[str, Any] | None
    refusal: dict[str, str] | None
    extension: dict[str, Any] | None


def _status_url(request_id: str, token: str, **extra: str) -> str:
    return f"/portal/requests/{request_id}?{urlencode({'token': token, **extra})}"


def _with_csrf(request: Request, template: str, status_code: int = 200, **context: Any) -> HTMLResponse:
    """A page holding forms: it carries the browser's CSRF token, set as a cookie when new."""
    token, fresh = csrf_token(request)
    response = render.page(template, status_code, csrf=token, **context)
    if fresh:
        set_csrf_cookie(request, response, token)
    return response


def _error(exc: FacetrailError) -> HTMLResponse:
    if isinstance(exc, NotFoundError):
        return render.error_page(404, "No such request", NOT_FOUND)
    if isinstance(exc, RateLimitedError):
        return render.error_page(429, "Please try again later", str(exc).capitalize())
    return render.error_page(status_for(exc), "We could not do this", str(exc))


def _refused() -> HTMLResponse:
    return render.error_page(403, "Please reload the page", CSRF_REFUSED)


@router.get("", response_class=HTMLResponse, include_in_schema=False)
def portal(request: Request, ft: FacetrailDep) -> HTMLResponse:
    """What facetrail holds, the person's rights, and the request form."""
    return _intake_form(request, ft)


def _intake_form(request: Request, ft: FacetrailDep, status_code: int = 200, *, error: str = "", field: str = "",
                 form: dict[str, Any] | None = None) -> HTMLResponse:
    automatic = [render.KIND_TITLES[k.value] for k in sorted(ft.requests.auto_approve)]
    return _with_csrf(request, "portal.html", status_code, error=error, field=field, max_message=MAX_MESSAGE,
                      form=form or {"kind": "", "email": "", "message": "", "consent": False}, automatic=automatic)


def _details(kind: str, message: str, consent: bool) -> dict[str, Any]:
    """The form's fields as the service's details: an objection's message is its grounds."""
    key = "reasons" if kind.strip().lower() == RequestKind.OBJECTION else "message"
    details: dict[str, Any] = {key: message.strip()}
    if kind.strip().lower() == RequestKind.OPT_OUT:
        details["consent_to_keep_templates"] = consent
    return details


@router.post("/requests", response_class=HTMLResponse, include_in_schema=False)
def submit_request(
    request: Request, ft: FacetrailDep,
    kind: Annotated[str, Form()] = "", email: Annotated[str, Form()] = "", message: Annotated[str, Form()] = "",
    consent: Annotated[str, Form()] = "", csrf: Annotated[str, Form()] = "",
) -> HTMLResponse:
    """Record the request at once, send the e-mail code, and show the private status link once."""
    if not csrf_ok(request, csrf):
        return _refused()
    form = {"kind": kind, "email": email, "message": message, "consent": consent == "yes"}
    if len(message) > MAX_MESSAGE:
        return _intake_form(request, ft, 422, error=f"Your message is longer than {MAX_MESSAGE} characters.",
                            field="message", form=form)
    client_ip = request.client.host if request.client else "unknown"
    try:
        intake = ft.requests.intake(kind=kind, email=email, details=_details(kind, message, consent == "yes"),
                                    client_ip=client_ip)
        status = ft.requests.status(intake.request.id, intake.status_token)
    except InvalidValueError as exc:
        return _intake_form(request, ft, 422, error=_field_message(exc), field=exc.field, form=form)
    except FacetrailError as exc:
        return _error(exc)
    link = str(request.base_url).rstrip("/") + _status_url(status.id, intake.status_token)
    return _with_csrf(request, "created.html", 201, status=status, token=intake.status_token, status_url=link,
                      challenge=None)


def _field_message(exc: InvalidValueError) -> str:
    words = {"kind": "Choose what you ask for.", "email": "Enter a valid e-mail address.",
             "reasons": "An objection needs the grounds relating to your situation: write them in the message.",
             "consent_to_keep_templates": "Opting out needs your consent to keep your face templates for that alone: "
                                          "tick the box."}
    return words.get(exc.field, exc.message)


@router.get("/requests/{request_id}", response_class=HTMLResponse, include_in_schema=False)
def status_page(request: Request, request_id: str, ft: FacetrailDep, token: Annotated[str, Query()] = "",
                note: Annotated[str, Query()] = "") -> HTMLResponse:
    """The request's status, the identity steps while pending, and the answer once given."""
    try:
        status = ft.requests.status(request_id, token)
        challenge = ft.requests.challenge(request_id, token)
    except FacetrailError as exc:
        return _error(exc)
    tone, text = NOTES.get(note, ("", ""))
    own_step = status.status == "identity_pending" and not (status.email_verified and status.live_check_done)
    return _with_csrf(
        request, "request.html", status=status, token=token, rows=render.answer_rows(status.answer),
        challenge=render.challenge_steps(challenge),
        note={"tone": tone, "text": text} if text else None, closed=render.CLOSED,
        waiting=status.status not in render.CLOSED and not own_step,
        poll_url=f"/portal/api/requests/{request_id}?{urlencode({'token': token})}")


@router.post("/requests/{request_id}/code", include_in_schema=False)
def submit_code(request: Request, request_id: str, ft: FacetrailDep, token: Annotated[str, Form()] = "",
                code: Annotated[str, Form()] = "", csrf: Annotated[str, Form()] = "") -> Response:
    if not csrf_ok(request, csrf):
        return _refused()
    try:
        verified = ft.requests.verify_email(request_id, token, code.replace(" ", ""))
    except FacetrailError as exc:
        return _error(exc)
    return RedirectResponse(_status_url(request_id, token, note="code-ok" if verified else "code-wrong"), 303)


@router.post("/requests/{request_id}/capture", include_in_schema=False)
def submit_capture(request: Request, request_id: str, ft: FacetrailDep, background: BackgroundTasks,
                   token: Annotated[str, Form()] = "",
                   csrf: Annotated[str, Form()] = "", nonce: Annotated[str, Form()] = "",
                   frames: Annotated[list[UploadFile] | None, File()] = None,
                   steps: Annotated[list[str] | None, Form()] = None,
                   times: Annotated[list[str] | None, Form()] = None) -> Response:
    """The live check: frames for each step of the challenge (the camera page sends capture times too).
    The page after it says whether the capture followed the challenge, never whether it matched anyone."""
    if not csrf_ok(request, csrf):
        return _refused()
    try:
        captured = _frames(frames or [], steps or [], times or [], ft.settings.max_file_bytes)
        failure = ft.requests.submit_capture(request_id, token, nonce, captured, answer_now=False)
        note = "capture-ok" if failure is None else f"capture-{failure}"
        if failure is None:
            # An automatic kind's effect (an erasure takes longer when there is something to erase) runs after
            # the response is sent: its timing is the same whether or not the person is held.
            background.add_task(ft.requests.answer_verified, request_id)
    except MediaError:
        note = "capture-unusable"
    except ConflictError as exc:
        note = "closed" if "closed" in str(exc) else "challenge-expired"
    except FacetrailError as exc:
        return _error(exc)
    return RedirectResponse(_status_url(request_id, token, note=note), 303)


def _frames(files: list[UploadFile], steps: list[str], times: list[str], max_bytes: int) -> list[CaptureFrame]:
    """The form's files paired with their step (and capture time) in the order sent; empty parts dropped."""
    if len(steps) != len(files) or (times and len(times) != len(files)):
        raise MediaError("every picture needs its step")
    frames = []
    for index, (upload, step) in enumerate(zip(files, steps, strict=True)):
        data, too_large = read_upload(upload, max_bytes)
        if too_large:
            raise MediaError(too_large)
        if not data:
            continue
        try:
            at = float(times[index]) if times else None
            frames.append(CaptureFrame(int(step), data, at))
        except ValueError:
            raise MediaError("a picture's step or time is not a number") from None
    return frames


@router.post("/requests/{request_id}/document", include_in_schema=False)
def submit_document(request: Request, request_id: str, ft: FacetrailDep, token: Annotated[str, Form()] = "",
                    csrf: Annotated[str, Form()] = "",
                    document: Annotated[UploadFile | None, File()] = None) -> Response:
    """A document the requester chooses to add for the DPO's check (sealed; deleted when the request closes)."""
    if not csrf_ok(request, csrf):
        return _refused()
    try:
        data, too_large = read_upload(document, ft.settings.max_file_bytes) if document else (b"", None)
        if too_large or not data or document is None:
            note = "document-unusable"
        else:
            ft.requests.add_document(request_id, token, document.filename or "document",
                                     document.content_type or "application/octet-stream", data)
            note = "document-ok"
    except RateLimitedError:
        note = "document-unusable"
    except ConflictError:
        note = "closed"
    except FacetrailError as exc:
        return _error(exc)
    return RedirectResponse(_status_url(request_id, token, note=note), 303)


@router.get("/requests/{request_id}/package", include_in_schema=False)
def package(request_id: str, ft: FacetrailDep, token: Annotated[str, Query()] = "") -> Response:
    """The access package (zip), for the link in the answer."""
    try:
        data = ft.requests.download(request_id, token)
    except NotFoundError:
        return render.error_page(404, "This link does not work",
                                 "This download link is not valid or has expired. Send a new request through "
                                 "the portal: there is no limit.")
    return Response(data, media_type="application/zip",
                    headers={"Content-Disposition": f'attachment; filename="facetrail-{request_id}.zip"'})


@router.get("/api/requests/{request_id}", response_model=PortalStatus)
def status_json(request_id: str, ft: FacetrailDep,
                token: Annotated[str, Query(description="the request's secret status token")]) -> PortalStatus:
    """The request's status for the portal's script (public: the id and its token are the credential)."""
    return PortalStatus.model_validate(render.public_status(ft.requests.status(request_id, token).as_dict()))


@router.get("/static/{name}", include_in_schema=False)
def static(name: str) -> Response:
    # A fixed list rather than a directory mount: nothing else under static/ can ever be served.
    media_type = STATIC_FILES.get(name)
    if media_type is None:
        return render.error_page(404, "Not found", "There is no such file.")
    return FileResponse(render.STATIC / name, media_type=media_type, headers={"Cache-Control": "no-cache"})
