"""Console pages of the benefits desk (A9): the verification desk (find a member by member number,
phone, member QR code or a benefit's one-time code; verify by scan, by hand or against an ID
document; book appointments) and the appointments of a day (change, verify, cancel). An appointment
action lands on the desk panel of its member or on the day's list, whichever it was taken from.

Handlers call the benefits services (``entitlements``, ``verification``, ``appointments``) — the
same verbs and read models as ``benefits.api`` — and, for the reads the API also makes directly,
the benefits repository. Times typed without a zone are read in the brand's time zone. No queries or
business rules here.
"""

from __future__ import annotations

import uuid
from datetime import date, datetime, time, timedelta
from typing import Annotated, Any
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Form, Query, Request
from fastapi.responses import RedirectResponse, Response
from pydantic import ValidationError

from huiyuan.benefits import appointments, entitlements, verification
from huiyuan.benefits.repository import BenefitRepository
from huiyuan.benefits.schemas import DeskVerifyIn
from huiyuan.console.deps import Console, requires
from huiyuan.console.forms import (
    check,
    failure_status,
    invalid_fields,
    local_datetime,
    present,
    problems,
    whole_number,
)
from huiyuan.console.i18n import translate
from huiyuan.console.web import ConsoleRoute, is_htmx, render
from huiyuan.kit.clock import utcnow
from huiyuan.kit.errors import AppError, NotFound, field_error
from huiyuan.members import identity
from huiyuan.members import service as members
from huiyuan.members.repository import MemberFilter
from huiyuan.tenancy.repository import TenancyRepository

router = APIRouter(route_class=ConsoleRoute, include_in_schema=False)

Reader = Annotated[Console, requires("benefits:read")]
Writer = Annotated[Console, requires("benefits:write")]
Verifier = Annotated[Console, requires("benefits:verify")]

DESK_ROWS = 100
DESK_MATCHES = 10
DAY_ROWS = 500


# -- the verification desk -------------------------------------------------------------------------


def _looks_like_token(value: str) -> bool:
    # Signed codes (member QR, benefit one-time codes) are long and dotted; numbers and phones not.
    return len(value) >= 20 and "." in value


def _desk_context(
    console: Console,
    member_id: int | None,
    *,
    query: str = "",
    matches: list[Any] | None = None,
    lookup_errors: list[dict[str, Any]] | None = None,
    highlight: int | None = None,
    scan_code: str = "",
    result: verification.UseResult | None = None,
    booked: Any = None,
    errors: list[dict[str, Any]] | None = None,
    error_for: int | None = None,
    form: dict[str, str] | None = None,
) -> dict[str, Any]:
    session = console.session
    context: dict[str, Any] = {
        "has_brand": console.brand_id is not None,
        "query": query,
        "matches": matches or [],
        "lookup_errors": lookup_errors or [],
        "member": None,
        "highlight": highlight,
        "scan_code": scan_code,
        "result": None,
        "booked": booked,
        "errors": errors or [],
        "error_for": error_for,
        "error_fields": invalid_fields(errors or []),
        "form": form or {},
        "can_verify": console.can("benefits:verify"),
        "can_write": console.can("benefits:write"),
        "zone": console.timezone(),
        "booking_key": uuid.uuid4().hex,
    }
    if member_id is None:
        context["error_for"] = None
        return context
    member = members.get_member(session, member_id)  # 404 page for other brands' members
    rows = entitlements.member_entitlements(
        session, member_id=member.id, status="active", after_id=None, limit=DESK_ROWS
    )
    repo = BenefitRepository(session)
    open_bookings = repo.appointments(member_id=member.id, status="booked", limit=DESK_ROWS)
    names = {d.id: d.name for d in repo.definitions_by_id({a.definition_id for a in open_bookings}).values()}
    stores = TenancyRepository(session).stores(console.brand_id)
    if error_for not in {mb.id for mb in rows}:
        context["error_for"] = None  # its row is gone (used up, expired): show the errors on top
    context.update(
        member=identity.member_summary(member),
        entitlements=entitlements.entitlement_outs(session, rows),
        bookings=[(appointments.appointment_out(a), names.get(a.definition_id, "")) for a in open_bookings],
        stores=stores,
        store_names={s.id: s.name for s in stores},
    )
    if result is not None:
        context["result"] = {
            "usage": result.usage,
            "entitlement": entitlements.entitlement_outs(session, [result.entitlement])[0],
        }
    return context


def _desk(request: Request, context: dict[str, Any], status: int = 200) -> Response:
    """The desk: the whole page, or for HTMX only the panel below the look-up form."""
    template = "benefits_desk_panel.html" if is_htmx(request) else "benefits_desk.html"
    return render(request, template, context, status=status)


@router.get("/console/benefits/desk")
def desk_page(request: Request, console: Reader, member_id: int | None = None) -> Response:
    member = member_id if console.brand_id is not None else None
    return render(request, "benefits_desk.html", _desk_context(console, member))


@router.post("/console/benefits/desk")
def desk_lookup(
    request: Request, console: Reader, code: Annotated[str, Form(max_length=600)] = ""
) -> Response:
    """Find the member behind what staff typed or scanned: a benefit's one-time code (its entitlement
    is picked out and the code put into its form), a member QR code, a member number, a name or a
    phone number. Posted, so phone numbers stay out of URLs and logs."""
    session = console.session
    value = code.strip()
    if console.brand_id is None:
        return _desk(request, _desk_context(console, None))
    if not value:
        errors = [field_error("code", "type or scan a member number, phone or code", "missing")]
        return _desk(request, _desk_context(console, None, lookup_errors=errors), 422)
    if _looks_like_token(value):
        try:
            mb = verification.read_scan_code(session, actor=console.principal, token=value)
        except verification.ScanCodeInvalid:
            pass  # not a benefit code: perhaps the member's QR code
        except AppError as exc:
            return _desk(
                request, _desk_context(console, None, query=value, lookup_errors=problems(exc)), exc.status
            )
        else:
            context = _desk_context(console, mb.member_id, query=value, highlight=mb.id, scan_code=value)
            return _desk(request, context)
        try:
            member = identity.verify_member_qr(session, actor=console.principal, token=value)
        except AppError as exc:
            return _desk(
                request, _desk_context(console, None, query=value, lookup_errors=problems(exc)), exc.status
            )
        return _desk(request, _desk_context(console, member.id, query=value))
    found = members.list_members(session, filters=MemberFilter(q=value), after_id=None, limit=DESK_MATCHES)
    digits = "".join(ch for ch in value if ch.isdigit())
    if not found and len(digits) >= 7:
        phone = MemberFilter(phone=value)
        found = members.list_members(session, filters=phone, after_id=None, limit=DESK_MATCHES)
    if len(found) == 1:
        return _desk(request, _desk_context(console, found[0].id, query=value))
    matches = [identity.member_summary(m) for m in found]
    return _desk(request, _desk_context(console, None, query=value, matches=matches))


def _id_of(raw: str) -> int | None:
    return int(raw) if raw.strip().isdigit() else None


@router.post("/console/benefits/desk/scan")
def desk_verify_scan(
    request: Request,
    console: Verifier,
    code: Annotated[str, Form(max_length=600)] = "",
    member_id: Annotated[str, Form(max_length=20)] = "",
    entitlement_id: Annotated[str, Form(max_length=20)] = "",
    store_id: Annotated[str, Form(max_length=20)] = "",
    minutes: Annotated[str, Form(max_length=6)] = "",
    note: Annotated[str, Form(max_length=200)] = "",
) -> Response:
    """Staff submit the member's one-time code: it is spent and one use taken."""
    session = console.session
    form = {"code": code, "store_id": store_id, "minutes": minutes, "note": note}
    shown = _id_of(member_id)
    target = _id_of(entitlement_id)
    try:
        errors: list[dict[str, Any]] = []
        store, used = whole_number(store_id, "store_id", errors), whole_number(minutes, "minutes", errors)
        if not code.strip():
            errors.append(field_error("code", "scan or type the member's code", "missing"))
        check(errors)
        result = verification.verify_scan(
            session,
            actor=console.principal,
            token=code.strip(),
            store_id=store,
            minutes=used,
            note=note.strip() or None,
        )
    except AppError as exc:
        if isinstance(exc, NotFound):
            raise
        session.rollback()
        context = _desk_context(
            console, shown, errors=problems(exc), error_for=target, highlight=target, form=form
        )
        return _desk(request, context, exc.status)
    context = _desk_context(
        console, result.entitlement.member_id, result=result, highlight=result.entitlement.id
    )
    return _desk(request, context)


@router.post("/console/benefits/desk/entitlements/{member_benefit_id}/verify")
def desk_verify(
    request: Request,
    member_benefit_id: int,
    console: Verifier,
    note: Annotated[str, Form(max_length=200)] = "",
    id_reference: Annotated[str, Form(max_length=40)] = "",
    reference: Annotated[str, Form(max_length=120)] = "",
    store_id: Annotated[str, Form(max_length=20)] = "",
    minutes: Annotated[str, Form(max_length=6)] = "",
) -> Response:
    """A manual or identity-check entitlement verified at the desk (a note, or the ID checked)."""
    session = console.session
    mb = entitlements.get_entitlement(session, member_benefit_id)  # 404 for other brands'
    member_id = mb.member_id
    form = {"note": note, "id_reference": id_reference, "reference": reference, "store_id": store_id}
    form["minutes"] = minutes
    try:
        data = DeskVerifyIn.model_validate(
            present(
                {
                    "note": note,
                    "id_reference": id_reference,
                    "reference": reference,
                    "store_id": store_id,
                    "minutes": minutes,
                }
            )
        )
        result = verification.verify_at_desk(
            session,
            actor=console.principal,
            member_benefit_id=member_benefit_id,
            note=data.note,
            id_reference=data.id_reference,
            reference=data.reference,
            store_id=data.store_id,
            minutes=data.minutes,
        )
    except (ValidationError, AppError) as exc:
        if isinstance(exc, NotFound):
            raise
        session.rollback()
        context = _desk_context(
            console,
            member_id,
            errors=problems(exc),
            error_for=member_benefit_id,
            highlight=member_benefit_id,
            form=form,
        )
        return _desk(request, context, failure_status(exc))
    return _desk(request, _desk_context(console, member_id, result=result, highlight=result.entitlement.id))


@router.post("/console/benefits/desk/entitlements/{member_benefit_id}/book")
def desk_book(
    request: Request,
    member_benefit_id: int,
    console: Writer,
    starts_at: Annotated[str, Form(max_length=40)] = "",
    store_id: Annotated[str, Form(max_length=20)] = "",
    note: Annotated[str, Form(max_length=200)] = "",
    key: Annotated[str, Form(max_length=64)] = "",
) -> Response:
    """Book a slot of an appointment entitlement for the member at the desk. The form carries a key
    made when it was shown, so submitting it twice books once."""
    session = console.session
    mb = entitlements.get_entitlement(session, member_benefit_id)
    member_id = mb.member_id
    form = {"starts_at": starts_at, "store_id": store_id, "note": note}
    try:
        errors: list[dict[str, Any]] = []
        start = local_datetime(starts_at, "starts_at", console.timezone(), errors)
        store = whole_number(store_id, "store_id", errors)
        if start is None and not errors:
            errors.append(field_error("starts_at", "choose the slot's start", "missing"))
        check(errors)
        assert start is not None
        booking = appointments.book(
            session,
            actor=console.principal,
            member_benefit_id=member_benefit_id,
            starts_at=start,
            key=f"console:{key.strip() or uuid.uuid4().hex}",
            store_id=store,
            note=note.strip() or None,
        )
    except AppError as exc:
        if isinstance(exc, NotFound):
            raise
        session.rollback()
        context = _desk_context(
            console,
            member_id,
            errors=problems(exc),
            error_for=member_benefit_id,
            highlight=member_benefit_id,
            form=form,
        )
        return _desk(request, context, exc.status)
    booked = appointments.appointment_out(booking.appointment)
    return _desk(request, _desk_context(console, member_id, booked=booked))


# -- appointments of a day -------------------------------------------------------------------------


def _day(console: Console, day: date | None) -> tuple[date, datetime, datetime]:
    zone = ZoneInfo(console.timezone())
    chosen = day or utcnow().astimezone(zone).date()
    start = datetime.combine(chosen, time(), tzinfo=zone)
    return chosen, start, datetime.combine(chosen + timedelta(days=1), time(), tzinfo=zone)


def _appointments_context(
    console: Console,
    day: date | None,
    status: str,
    *,
    message: str | None = None,
    errors: list[dict[str, Any]] | None = None,
    error_for: int | None = None,
) -> dict[str, Any]:
    session = console.session
    chosen, start, end = _day(console, day)
    context: dict[str, Any] = {
        "has_brand": console.brand_id is not None,
        "day": chosen,
        "status": status,
        "rows": [],
        "message": message,
        "errors": errors or [],
        "error_for": error_for,
        "can_verify": console.can("benefits:verify"),
        "can_write": console.can("benefits:write"),
        "zone": console.timezone(),
    }
    if console.brand_id is None:
        return context
    repo = BenefitRepository(session)
    found = repo.appointments(status=status or None, start=start, end=end, limit=DAY_ROWS)
    definitions = repo.definitions_by_id({a.definition_id for a in found})
    people = {m: members.get_member(session, m) for m in {a.member_id for a in found}}
    stores = {s.id: s.name for s in TenancyRepository(session).stores(console.brand_id)}
    if error_for not in {a.id for a in found}:
        context["error_for"] = None  # not on this day's list: show the errors on top
    context["rows"] = [
        {
            "appointment": appointments.appointment_out(a),
            "benefit": definitions[a.definition_id],
            "member": people[a.member_id],
            "store": stores.get(a.store_id) if a.store_id is not None else None,
        }
        for a in found
    ]
    return context


@router.get("/console/benefits/appointments")
def appointments_page(
    request: Request,
    console: Reader,
    day: date | None = None,
    status: Annotated[str, Query(pattern="^(|booked|cancelled|verified)$")] = "",
) -> Response:
    return render(request, "benefits_appointments.html", _appointments_context(console, day, status))


def _after_appointment(
    request: Request,
    console: Console,
    appointment_id: int,
    view: str,
    *,
    day: date,
    message: str | None = None,
    exc: ValidationError | AppError | None = None,
    result: verification.UseResult | None = None,
) -> Response:
    """Where an appointment action lands: the desk panel of the member, or the day's list."""
    errors = problems(exc) if exc is not None else None
    status = failure_status(exc) if exc is not None else 200
    member_id = appointments.get_appointment(console.session, appointment_id).member_id
    if view == "desk":
        if not is_htmx(request) and exc is None:
            return RedirectResponse(f"/console/benefits/desk?member_id={member_id}", status_code=303)
        context = _desk_context(console, member_id, result=result, errors=errors, form={})
        return _desk(request, context, status)
    if not is_htmx(request) and exc is None:
        return RedirectResponse(f"/console/benefits/appointments?day={day.isoformat()}", status_code=303)
    context = _appointments_context(
        console, day, "", message=message, errors=errors, error_for=appointment_id
    )
    template = "benefits_appointments_table.html" if is_htmx(request) else "benefits_appointments.html"
    return render(request, template, context, status=status)


def _action_day(console: Console, appointment_id: int, raw: str) -> date:
    try:
        return date.fromisoformat(raw.strip())
    except ValueError:
        starts = appointments.get_appointment(console.session, appointment_id).starts_at
        return starts.astimezone(ZoneInfo(console.timezone())).date()


View = Annotated[str, Form(pattern="^(day|desk)$")]


@router.post("/console/benefits/appointments/{appointment_id}/verify")
def verify_appointment(
    request: Request,
    appointment_id: int,
    console: Verifier,
    view: View = "day",
    day: Annotated[str, Form(max_length=10)] = "",
    note: Annotated[str, Form(max_length=200)] = "",
) -> Response:
    session = console.session
    shown = _action_day(console, appointment_id, day)  # 404 for other brands' appointments
    try:
        result = appointments.verify(
            session, actor=console.principal, appointment_id=appointment_id, note=note.strip() or None
        )
    except AppError as exc:
        session.rollback()
        return _after_appointment(request, console, appointment_id, view, day=shown, exc=exc)
    message = translate(console.lang, "benefits.appointment_verified")
    return _after_appointment(
        request, console, appointment_id, view, day=shown, message=message, result=result
    )


@router.post("/console/benefits/appointments/{appointment_id}/cancel")
def cancel_appointment(
    request: Request,
    appointment_id: int,
    console: Writer,
    view: View = "day",
    day: Annotated[str, Form(max_length=10)] = "",
    reason: Annotated[str, Form(max_length=200)] = "",
) -> Response:
    session = console.session
    shown = _action_day(console, appointment_id, day)
    try:
        appointments.cancel(
            session, actor=console.principal, appointment_id=appointment_id, reason=reason.strip() or None
        )
    except AppError as exc:
        session.rollback()
        return _after_appointment(request, console, appointment_id, view, day=shown, exc=exc)
    message = translate(console.lang, "benefits.appointment_cancelled")
    return _after_appointment(request, console, appointment_id, view, day=shown, message=message)


@router.post("/console/benefits/appointments/{appointment_id}/rebook")
def rebook_appointment(
    request: Request,
    appointment_id: int,
    console: Writer,
    view: View = "day",
    day: Annotated[str, Form(max_length=10)] = "",
    starts_at: Annotated[str, Form(max_length=40)] = "",
) -> Response:
    session = console.session
    shown = _action_day(console, appointment_id, day)
    try:
        errors: list[dict[str, Any]] = []
        start = local_datetime(starts_at, "starts_at", console.timezone(), errors)
        if start is None and not errors:
            errors.append(field_error("starts_at", "choose the new start", "missing"))
        check(errors)
        assert start is not None
        appointments.rebook(session, actor=console.principal, appointment_id=appointment_id, starts_at=start)
    except AppError as exc:
        session.rollback()
        return _after_appointment(request, console, appointment_id, view, day=shown, exc=exc)
    message = translate(console.lang, "benefits.appointment_moved")
    return _after_appointment(request, console, appointment_id, view, day=shown, message=message)
