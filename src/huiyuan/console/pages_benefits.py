"""Console pages of benefits (A8, A9): the catalogue (list; a definition's page with its event counts,
its issued-versus-verified chart and its trail; create and edit forms with the validation errors
shown per field), the verification desk (find a member by member number, phone, member QR code or
a benefit's one-time code; verify by scan, by hand or against an ID document; book appointments),
the appointments of a day (change, verify, cancel), the settlement between funding and serving
parties (table, chart, CSV and XLSX), and the benefit card products (list with cards sold, a
product's page, create and edit) with a member's cards and their refund quotes.

Handlers call the benefits services (``catalogue``, ``entitlements``, ``verification``,
``appointments``, ``settlement``, ``cards``, ``card_refunds``) — the same verbs and read models as
``benefits.api`` — and, for the reads the API also makes directly, the benefits repositories.
Forms are parsed only as far as a browser sends strings: usage limits, appointment rules and card
lines are JSON typed into text areas, times typed without a zone are read in the brand's time zone.
No queries or business rules here.
"""

from __future__ import annotations

import contextlib
import json
import uuid
from datetime import date, datetime, time, timedelta
from typing import Annotated, Any, Literal
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Form, Query, Request
from fastapi.responses import JSONResponse, RedirectResponse, Response
from pydantic import ValidationError

from huiyuan.benefits import (
    appointments,
    card_refunds,
    cards,
    catalogue,
    entitlements,
    settlement,
    verification,
)
from huiyuan.benefits.card_repository import CardRepository
from huiyuan.benefits.card_schemas import PRODUCT_EXAMPLE, CardProductIn, CardProductUpdate
from huiyuan.benefits.cards import CardClosed
from huiyuan.benefits.models import (
    DEFINITION_KINDS,
    DEFINITION_STATUSES,
    DELEGATED_KINDS,
    VERIFICATION_METHODS,
    BenefitDefinition,
)
from huiyuan.benefits.repository import BenefitRepository
from huiyuan.benefits.schemas import SERVICE_EXAMPLE, DefinitionUpdate, DeskVerifyIn
from huiyuan.console.deps import Console, requires
from huiyuan.console.i18n import translate
from huiyuan.console.pages_tiers import JsonFields, done, failure_status, form_errors, invalid_fields
from huiyuan.console.web import ConsoleRoute, is_htmx, render
from huiyuan.kit import tables
from huiyuan.kit.clock import utcnow
from huiyuan.kit.errors import AppError, NotFound, ValidationFailed, field_error
from huiyuan.members import identity
from huiyuan.members import service as members
from huiyuan.members.repository import MemberFilter
from huiyuan.tenancy.repository import TenancyRepository

router = APIRouter(route_class=ConsoleRoute, include_in_schema=False)

Reader = Annotated[Console, requires("benefits:read")]
Writer = Annotated[Console, requires("benefits:write")]
Verifier = Annotated[Console, requires("benefits:verify")]
FromDate = Annotated[date | None, Query(alias="from")]
ToDate = Annotated[date | None, Query()]
SettlePeriod = Literal["day", "month", "all"]

CATALOGUE_ROWS = 200
EVENT_ROWS = 50
CHART_DAYS = 30
DESK_ROWS = 100
DESK_MATCHES = 10
DAY_ROWS = 500
PRODUCT_ROWS = 200
SERVICE_TYPES = (
    "parking",
    "lounge",
    "free_shipping",
    "priority_service",
    "gift_wrap",
    "wifi",
    "nursing_room",
    "other",
)
OFFERS = ("points_swap", "coupon", "code", "service")
LIMITS_EXAMPLE = json.dumps(SERVICE_EXAMPLE["limits"], ensure_ascii=False)
APPOINTMENT_EXAMPLE = '{"slot_minutes": 30, "capacity": 4, "min_notice_minutes": 60}'
NEW_DEFINITION = {
    "kind": "service",
    "service_type": "parking",
    "verification": "scan",
    "limits": LIMITS_EXAMPLE,
    "unit_cost": "0.00",
    "funded_by": "brand",
    "served_by": "brand",
    "claim_limit": "1",
    "status": "active",
}
LINES_EXAMPLE = json.dumps(PRODUCT_EXAMPLE["lines"][:1], ensure_ascii=False, indent=2)
NEW_PRODUCT = {"validity_months": "12", "activation": "immediate", "status": "active", "lines": LINES_EXAMPLE}


# -- form helpers (shared with the wallet pages) ---------------------------------------------------


def present(values: dict[str, str]) -> dict[str, str]:
    """Inputs left empty mean "not set" (the default), not an empty value."""
    return {k: v.strip() for k, v in values.items() if v.strip()}


def local_datetime(raw: str, field: str, zone: str, errors: list[dict[str, Any]]) -> datetime | None:
    """A ``datetime-local`` input read in the brand's time zone (an explicit offset is kept)."""
    if not raw.strip():
        return None
    try:
        value = datetime.fromisoformat(raw.strip())
    except ValueError:
        errors.append(field_error(field, "not a date and time (YYYY-MM-DDTHH:MM)", "datetime"))
        return None
    return value if value.tzinfo is not None else value.replace(tzinfo=ZoneInfo(zone))


def local_input(value: datetime | None, zone: str) -> str:
    """A stored time as a ``datetime-local`` input shows it (brand time, to the minute)."""
    return value.astimezone(ZoneInfo(zone)).strftime("%Y-%m-%dT%H:%M") if value else ""


def whole_number(raw: str, field: str, errors: list[dict[str, Any]]) -> int | None:
    """An optional whole number typed into a form."""
    if not raw.strip():
        return None
    if not raw.strip().isdigit():
        errors.append(field_error(field, "a whole number", "int"))
        return None
    return int(raw.strip())


def check(errors: list[dict[str, Any]]) -> None:
    if errors:
        raise ValidationFailed("Some fields are not valid.", errors=errors)


def span(console: Console, start_day: date | None, end_day: date | None) -> dict[str, Any]:
    """Local days ``from``–``to`` (both included; this month so far by default) as instants: local
    midnight of ``from`` up to local midnight after ``to``."""
    zone = ZoneInfo(console.timezone())
    today = utcnow().astimezone(zone).date()
    first = start_day or today.replace(day=1)
    last = end_day or today
    return {
        "from": first,
        "to": last,
        "start": datetime.combine(first, time(), tzinfo=zone),
        "end": datetime.combine(last + timedelta(days=1), time(), tzinfo=zone),
    }


def problems(exc: ValidationError | AppError) -> list[dict[str, Any]]:
    """What a failed form shows: the field errors, led by the service's own sentence when it refused
    for a reason of its own (a full slot, a used code) rather than for malformed fields."""
    errors = form_errors(exc)
    if isinstance(exc, AppError) and not isinstance(exc, ValidationFailed) and exc.errors:
        return [field_error("", exc.detail, exc.code), *errors]
    return errors


def _definition_errors(exc: ValidationError | AppError) -> list[dict[str, Any]]:
    """Field errors as the API names them: without the ``kind`` tag of the definition union
    (``limits.time_windows.0``, not ``service.limits.time_windows.0``); a bad kind on ``kind``."""
    if isinstance(exc, AppError):
        return problems(exc)
    out = []
    for e in exc.errors():
        loc = [str(p) for p in e["loc"]]
        if loc and loc[0] in DEFINITION_KINDS:
            loc = loc[1:]
        out.append(field_error(".".join(loc) or "kind", e["msg"], e["type"]))
    return out


def _pretty(document: Any) -> str:
    return json.dumps(document, ensure_ascii=False) if document else ""


# -- catalogue -------------------------------------------------------------------------------------


def _catalogue_page(
    request: Request,
    console: Console,
    *,
    kind: str = "",
    status: str = "",
    errors: list[dict[str, Any]] | None = None,
    form: dict[str, str] | None = None,
    http_status: int = 200,
    fragment: bool = False,
) -> Response:
    has_brand = console.brand_id is not None
    rows = (
        BenefitRepository(console.session).list_definitions(
            kind=kind or None, status=status or None, limit=CATALOGUE_ROWS
        )
        if has_brand
        else []
    )
    context = {
        "has_brand": has_brand,
        "definitions": [catalogue.definition_out(d) for d in rows],
        "filter": {"kind": kind, "status": status},
        "kinds": DEFINITION_KINDS,
        "statuses": DEFINITION_STATUSES,
        "methods": VERIFICATION_METHODS,
        "service_types": SERVICE_TYPES,
        "offers": OFFERS,
        "can_write": console.can("benefits:write"),
        "errors": errors or [],
        "error_fields": invalid_fields(errors or []),
        "form": form or NEW_DEFINITION,
        "appointment_example": APPOINTMENT_EXAMPLE,
    }
    template = "benefits_definition_form.html" if fragment else "benefits_catalogue.html"
    return render(request, template, context, status=http_status)


@router.get("/console/benefits")
def catalogue_page(
    request: Request,
    console: Reader,
    kind: Annotated[str, Query(max_length=16)] = "",
    status: Annotated[str, Query(max_length=16)] = "",
) -> Response:
    return _catalogue_page(
        request,
        console,
        kind=kind if kind in DEFINITION_KINDS else "",
        status=status if status in DEFINITION_STATUSES else "",
    )


@router.post("/console/benefits")
def create_definition(
    request: Request,
    console: Writer,
    code: Annotated[str, Form(max_length=40)] = "",
    name: Annotated[str, Form(max_length=120)] = "",
    description: Annotated[str, Form(max_length=2000)] = "",
    kind: Annotated[str, Form(max_length=16)] = "",
    service_type: Annotated[str, Form(max_length=40)] = "",
    verification_method: Annotated[str, Form(alias="verification", max_length=16)] = "",
    template: Annotated[str, Form(max_length=40)] = "",
    point_type: Annotated[str, Form(max_length=40)] = "",
    amount: Annotated[str, Form(max_length=12)] = "",
    partner_id: Annotated[str, Form(max_length=64)] = "",
    offer: Annotated[str, Form(max_length=16)] = "",
    reference: Annotated[str, Form(max_length=120)] = "",
    valid_days: Annotated[str, Form(max_length=6)] = "",
    unit_cost: Annotated[str, Form(max_length=20)] = "",
    funded_by: Annotated[str, Form(max_length=40)] = "",
    served_by: Annotated[str, Form(max_length=40)] = "",
    claimable: Annotated[str, Form(max_length=1)] = "",
    claim_limit: Annotated[str, Form(max_length=4)] = "",
    status: Annotated[str, Form(max_length=16)] = "active",
    limits: Annotated[str, Form(max_length=20_000)] = "",
    appointment: Annotated[str, Form(max_length=5_000)] = "",
) -> Response:
    form = {k: v for k, v in locals().items() if isinstance(v, str)}
    form["verification"] = form.pop("verification_method")
    try:
        body: dict[str, Any] = {
            "code": code.strip(),
            "name": name.strip(),
            "description": description.strip() or None,
            "kind": kind,
            "claimable": claimable == "1",
            "status": status,
            **present(
                {
                    "valid_days": valid_days,
                    "unit_cost": unit_cost,
                    "funded_by": funded_by,
                    "served_by": served_by,
                    "claim_limit": claim_limit,
                }
            ),
        }
        if kind == "coupon":
            body["template"] = template.strip()
        elif kind in ("points", "growth"):
            body.update(point_type=point_type.strip(), amount=amount.strip() or None)
        else:
            docs = JsonFields()
            parsed_limits = docs.parse(limits, "limits", shape=dict, empty=None)
            parsed_appointment = docs.parse(appointment, "appointment", shape=dict, empty=None)
            docs.check()
            body["verification"] = verification_method
            if parsed_limits is not None:
                body["limits"] = parsed_limits
            if parsed_appointment is not None:
                body["appointment"] = parsed_appointment
            if kind == "service":
                body["service_type"] = service_type
            elif kind == "third_party":
                body.update(partner_id=partner_id.strip(), offer=offer, reference=reference.strip() or None)
        data = catalogue.DEFINITION_ADAPTER.validate_python(body)
        created = catalogue.create_definition(console.session, actor=console.principal, data=data)
    except (ValidationError, AppError) as exc:
        console.session.rollback()
        return _catalogue_page(
            request,
            console,
            errors=_definition_errors(exc),
            form=form,
            http_status=failure_status(exc),
            fragment=is_htmx(request),
        )
    return done(request, f"/console/benefits/definitions/{created.id}")


def _edit_form(d: BenefitDefinition) -> dict[str, str]:
    return {
        "name": d.name,
        "description": d.description or "",
        "valid_days": str(d.valid_days or ""),
        "unit_cost": f"{d.unit_cost:.2f}",
        "funded_by": d.funded_by,
        "served_by": d.served_by,
        "claimable": "1" if d.claimable else "",
        "claim_limit": str(d.claim_limit),
        "status": d.status,
        "limits": _pretty(d.limits),
        "appointment": _pretty(d.appointment),
    }


def _definition_page(
    request: Request,
    console: Console,
    definition_id: int,
    *,
    errors: list[dict[str, Any]] | None = None,
    form: dict[str, str] | None = None,
    http_status: int = 200,
) -> Response:
    session = console.session
    d = catalogue.get_definition(session, definition_id)  # 404 page for other brands' benefits
    activity = catalogue.definition_activity(session, d.id, days=CHART_DAYS)
    context = {
        "definition": catalogue.definition_out(d),
        "delegated": d.kind in DELEGATED_KINDS,
        "counts": activity.counts,
        "events": BenefitRepository(session).events(definition_id=d.id, limit=EVENT_ROWS, newest_first=True),
        "can_write": console.can("benefits:write"),
        "statuses": DEFINITION_STATUSES,
        "errors": errors or [],
        "error_fields": invalid_fields(errors or []),
        "form": form or _edit_form(d),
        "chart_days": CHART_DAYS,
    }
    return render(request, "benefits_definition.html", context, status=http_status)


@router.get("/console/benefits/definitions/{definition_id}")
def definition_page(request: Request, definition_id: int, console: Reader) -> Response:
    return _definition_page(request, console, definition_id)


@router.get("/console/benefits/definitions/{definition_id}/activity.json")
def definition_activity(definition_id: int, console: Reader) -> Response:
    """Chart data: local days on the x axis, the grants (issued) and the uses (verified) of each."""
    activity = catalogue.definition_activity(console.session, definition_id, days=CHART_DAYS)
    series = [
        {"name": translate(console.lang, "benefits.event.issued"), "data": activity.issued},
        {"name": translate(console.lang, "benefits.event.verified"), "data": activity.verified},
    ]
    empty = not any(activity.issued) and not any(activity.verified)
    return JSONResponse({"days": activity.days, "series": [] if empty else series})


@router.post("/console/benefits/definitions/{definition_id}")
def update_definition(
    request: Request,
    definition_id: int,
    console: Writer,
    name: Annotated[str, Form(max_length=120)] = "",
    description: Annotated[str, Form(max_length=2000)] = "",
    valid_days: Annotated[str, Form(max_length=6)] = "",
    unit_cost: Annotated[str, Form(max_length=20)] = "",
    funded_by: Annotated[str, Form(max_length=40)] = "",
    served_by: Annotated[str, Form(max_length=40)] = "",
    claimable: Annotated[str, Form(max_length=1)] = "",
    claim_limit: Annotated[str, Form(max_length=4)] = "",
    status: Annotated[str, Form(max_length=16)] = "",
    limits: Annotated[str, Form(max_length=20_000)] = "",
    appointment: Annotated[str, Form(max_length=5_000)] = "",
) -> Response:
    form = {k: v for k, v in locals().items() if isinstance(v, str)}
    session = console.session
    d = catalogue.get_definition(session, definition_id)
    try:
        required = {
            "name": name,
            "unit_cost": unit_cost,
            "funded_by": funded_by,
            "served_by": served_by,
            "claim_limit": claim_limit,
            "status": status,
        }
        check([field_error(k, "required", "missing") for k, v in required.items() if not v.strip()])
        body: dict[str, Any] = {
            "name": name.strip(),
            "description": description.strip() or None,
            "valid_days": valid_days.strip() or None,
            "unit_cost": unit_cost.strip(),
            "funded_by": funded_by.strip(),
            "served_by": served_by.strip(),
            "claimable": claimable == "1",
            "claim_limit": claim_limit.strip(),
            "status": status,
        }
        docs = JsonFields()
        if d.kind not in DELEGATED_KINDS:
            body["limits"] = docs.parse(limits, "limits", shape=dict, empty={})
        if d.verification == "appointment":
            body["appointment"] = docs.parse(appointment, "appointment", shape=dict, empty={})
        docs.check()
        data = DefinitionUpdate.model_validate(body)
        catalogue.update_definition(session, actor=console.principal, definition_id=d.id, data=data)
    except (ValidationError, AppError) as exc:
        session.rollback()
        return _definition_page(
            request,
            console,
            definition_id,
            errors=_definition_errors(exc),
            form=form,
            http_status=failure_status(exc),
        )
    return done(request, f"/console/benefits/definitions/{definition_id}")


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


# -- settlement ------------------------------------------------------------------------------------


def _settle(console: Console, period_span: dict[str, Any], period: SettlePeriod) -> settlement.Settlement:
    return settlement.settle(
        console.session,
        brand_id=console.principal.scope.require_brand(),
        start=period_span["start"],
        end=period_span["end"],
        period=period,
    )


def party_label(lang: str, party: str) -> str:
    """A party code as people read it: 品牌 / 平台, ``store:x`` as 门店 x, others as they are."""
    kind, _, ident = party.partition(":")
    if kind in ("brand", "platform", "store", "partner", "member"):
        label = translate(lang, f"benefits.party.{kind}")
        return f"{label} {ident}" if ident else label
    return party


@router.get("/console/benefits/settlement")
def settlement_page(
    request: Request, console: Reader, from_: FromDate = None, to: ToDate = None, period: SettlePeriod = "day"
) -> Response:
    chosen = span(console, from_, to)
    query = urlencode({"from": chosen["from"].isoformat(), "to": chosen["to"].isoformat(), "period": period})
    context: dict[str, Any] = {
        "has_brand": console.brand_id is not None,
        "span": chosen,
        "period": period,
        "query": query,
        "settlement": None,
        "errors": [],
    }
    status = 200
    if console.brand_id is not None:
        try:
            context["settlement"] = _settle(console, chosen, period)
        except ValidationFailed as exc:
            context["errors"], status = problems(exc), exc.status
    return render(request, "benefits_settlement.html", context, status=status)


@router.get("/console/benefits/settlement.json")
def settlement_chart(
    console: Reader, from_: FromDate = None, to: ToDate = None, period: SettlePeriod = "day"
) -> Response:
    """Chart data: funders on the x axis, one stacked series per serving party (yuan owed)."""
    if console.brand_id is None:
        return JSONResponse({"months": [], "series": []})
    s = _settle(console, span(console, from_, to), period)
    funders = list(s.by_funder)
    servers = list(s.by_server)
    owed = {(b.funded_by, b.served_by): float(b.amount) for b in s.between}
    series = [
        {"name": party_label(console.lang, server), "data": [owed.get((f, server), 0.0) for f in funders]}
        for server in servers
    ]
    return JSONResponse({"months": [party_label(console.lang, f) for f in funders], "series": series})


def _settlement_download(
    console: Console, from_: date | None, to: date | None, period: SettlePeriod, fmt: str
) -> Response:
    chosen = span(console, from_, to)
    name = f"benefit-settlement-{chosen['from'].isoformat()}-{chosen['to'].isoformat()}"
    return tables.download(settlement.settlement_sections(_settle(console, chosen, period)), name, fmt)


@router.get("/console/benefits/settlement.csv")
def settlement_csv(
    console: Reader, from_: FromDate = None, to: ToDate = None, period: SettlePeriod = "day"
) -> Response:
    return _settlement_download(console, from_, to, period, "csv")


@router.get("/console/benefits/settlement.xlsx")
def settlement_xlsx(
    console: Reader, from_: FromDate = None, to: ToDate = None, period: SettlePeriod = "day"
) -> Response:
    return _settlement_download(console, from_, to, period, "xlsx")


# -- benefit card products -------------------------------------------------------------------------


def _card_input(field: str) -> str:
    """The form input of a card product field: ``perks.x`` and ``rules.x`` are inputs ``x``; the
    sale window's own check (``rules``) marks ``sale_to``."""
    parts = field.split(".")
    if parts[0] in ("perks", "rules"):
        return parts[1] if len(parts) > 1 else "sale_to"
    return parts[0]


def _product_body(
    console: Console, values: dict[str, str], *, tiers: str, docs: JsonFields
) -> dict[str, Any]:
    """The card product's request body from the form's strings; malformed inputs land in ``docs``."""
    zone, errors = console.timezone(), docs.errors
    lines = docs.parse(values["lines"], "lines", shape=list, empty=[])
    window = {
        "sale_from": local_datetime(values["sale_from"], "sale_from", zone, errors),
        "sale_to": local_datetime(values["sale_to"], "sale_to", zone, errors),
    }
    rules: dict[str, Any] = {
        "eligible_tiers": [t for t in tiers.replace("，", ",").replace(",", " ").split() if t],
        **present({"limit_per_member": values["limit_per_member"]}),
        **{k: v for k, v in window.items() if v is not None},
    }
    perks: dict[str, Any] = {
        **present(
            {"discount_percent": values["discount_percent"], "points_multiplier": values["points_multiplier"]}
        ),
        "free_shipping": values["free_shipping"] == "1",
    }
    return {
        "name": values["name"].strip() or None,
        "description": values["description"].strip() or None,
        "price": values["price"].strip() or None,
        "validity_months": values["validity_months"].strip() or None,
        "activation": values["activation"],
        "status": values["status"],
        "lines": lines,
        "perks": perks,
        "rules": rules,
    }


def _products_page(
    request: Request,
    console: Console,
    *,
    errors: list[dict[str, Any]] | None = None,
    form: dict[str, str] | None = None,
    http_status: int = 200,
) -> Response:
    has_brand = console.brand_id is not None
    rows = CardRepository(console.session).products(limit=PRODUCT_ROWS) if has_brand else []
    context = {
        "has_brand": has_brand,
        "products": [cards.product_out(p) for p in rows],
        "sold": cards.sold_counts(console.session, [p.id for p in rows]),
        "can_write": console.can("benefits:write"),
        "errors": errors or [],
        "error_fields": invalid_fields(errors or [], _card_input),
        "form": form or NEW_PRODUCT,
        "zone": console.timezone(),
    }
    return render(request, "benefits_cards.html", context, status=http_status)


@router.get("/console/benefits/cards")
def products_page(request: Request, console: Reader) -> Response:
    return _products_page(request, console)


ProductField = Annotated[str, Form(max_length=120)]


@router.post("/console/benefits/cards")
def create_product(
    request: Request,
    console: Writer,
    code: Annotated[str, Form(max_length=40)] = "",
    name: ProductField = "",
    description: Annotated[str, Form(max_length=2000)] = "",
    price: Annotated[str, Form(max_length=20)] = "",
    validity_months: Annotated[str, Form(max_length=4)] = "",
    activation: Annotated[str, Form(max_length=16)] = "immediate",
    status: Annotated[str, Form(max_length=16)] = "active",
    lines: Annotated[str, Form(max_length=20_000)] = "",
    discount_percent: Annotated[str, Form(max_length=10)] = "",
    points_multiplier: Annotated[str, Form(max_length=10)] = "",
    free_shipping: Annotated[str, Form(max_length=1)] = "",
    eligible_tiers: Annotated[str, Form(max_length=500)] = "",
    limit_per_member: Annotated[str, Form(max_length=6)] = "",
    sale_from: Annotated[str, Form(max_length=40)] = "",
    sale_to: Annotated[str, Form(max_length=40)] = "",
) -> Response:
    form = {k: v for k, v in locals().items() if isinstance(v, str)}
    try:
        docs = JsonFields()
        body = _product_body(console, form, tiers=eligible_tiers, docs=docs)
        docs.check()
        data = CardProductIn.model_validate({"code": code.strip(), **body})
        created = cards.create_product(console.session, actor=console.principal, data=data)
    except (ValidationError, AppError) as exc:
        console.session.rollback()
        return _products_page(
            request, console, errors=problems(exc), form=form, http_status=failure_status(exc)
        )
    return done(request, f"/console/benefits/cards/{created.id}")


def _product_form(p: Any, zone: str) -> dict[str, str]:
    perks = p.perks or {}
    return {
        "name": p.name,
        "description": p.description or "",
        "price": f"{p.price:.2f}",
        "validity_months": str(p.validity_months),
        "activation": p.activation,
        "status": p.status,
        "lines": json.dumps(p.lines, ensure_ascii=False, indent=2),
        "discount_percent": str(perks.get("discount_percent") or ""),
        "points_multiplier": str(perks.get("points_multiplier") or ""),
        "free_shipping": "1" if perks.get("free_shipping") else "",
        "eligible_tiers": ", ".join(p.eligible_tiers or []),
        "limit_per_member": str(p.limit_per_member or ""),
        "sale_from": local_input(p.sale_from, zone),
        "sale_to": local_input(p.sale_to, zone),
    }


def _product_page(
    request: Request,
    console: Console,
    product_id: int,
    *,
    errors: list[dict[str, Any]] | None = None,
    form: dict[str, str] | None = None,
    http_status: int = 200,
) -> Response:
    session = console.session
    product = cards.get_product(session, product_id)  # 404 page for other brands' products
    zone = console.timezone()
    context = {
        "product": cards.product_out(product),
        "sold": cards.sold_counts(session, [product.id]).get(product.id, {}),
        "can_write": console.can("benefits:write"),
        "errors": errors or [],
        "error_fields": invalid_fields(errors or [], _card_input),
        "form": form or _product_form(product, zone),
        "zone": zone,
    }
    return render(request, "benefits_card.html", context, status=http_status)


@router.get("/console/benefits/cards/{product_id}")
def product_page(request: Request, product_id: int, console: Reader) -> Response:
    return _product_page(request, console, product_id)


@router.post("/console/benefits/cards/{product_id}")
def update_product(
    request: Request,
    product_id: int,
    console: Writer,
    name: ProductField = "",
    description: Annotated[str, Form(max_length=2000)] = "",
    price: Annotated[str, Form(max_length=20)] = "",
    validity_months: Annotated[str, Form(max_length=4)] = "",
    activation: Annotated[str, Form(max_length=16)] = "immediate",
    status: Annotated[str, Form(max_length=16)] = "active",
    lines: Annotated[str, Form(max_length=20_000)] = "",
    discount_percent: Annotated[str, Form(max_length=10)] = "",
    points_multiplier: Annotated[str, Form(max_length=10)] = "",
    free_shipping: Annotated[str, Form(max_length=1)] = "",
    eligible_tiers: Annotated[str, Form(max_length=500)] = "",
    limit_per_member: Annotated[str, Form(max_length=6)] = "",
    sale_from: Annotated[str, Form(max_length=40)] = "",
    sale_to: Annotated[str, Form(max_length=40)] = "",
) -> Response:
    form = {k: v for k, v in locals().items() if isinstance(v, str)}
    session = console.session
    cards.get_product(session, product_id)
    try:
        docs = JsonFields()
        body = _product_body(console, form, tiers=eligible_tiers, docs=docs)
        docs.check()
        data = CardProductUpdate.model_validate(body)
        cards.update_product(session, actor=console.principal, product_id=product_id, data=data)
    except (ValidationError, AppError) as exc:
        session.rollback()
        return _product_page(
            request, console, product_id, errors=problems(exc), form=form, http_status=failure_status(exc)
        )
    return done(request, f"/console/benefits/cards/{product_id}")


@router.get("/console/benefits/members/{member_id}/cards")
def member_cards_page(request: Request, member_id: int, console: Reader) -> Response:
    """A member's benefit cards, each with what refunding it now would give back."""
    session = console.session
    member = members.get_member(session, member_id)  # 404 page for other brands' members
    rows = cards.member_cards(session, member.id)
    quotes: dict[int, card_refunds.Quote] = {}
    for card in rows:
        if card.status in ("pending", "active"):
            with contextlib.suppress(CardClosed):  # expired since the job last ran
                quotes[card.id] = card_refunds.quote_refund(session, card_id=card.id)
    names = {pid: cards.get_product(session, pid).name for pid in {c.product_id for c in rows}}
    context = {
        "member": identity.member_summary(member),
        "cards": [cards.card_out(c) for c in rows],
        "quotes": quotes,
        "names": names,
    }
    return render(request, "benefits_member_cards.html", context)
