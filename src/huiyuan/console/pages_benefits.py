"""Console pages of benefits (A8): the catalogue (list; a definition's page with its event counts, its
issued-versus-verified chart and its trail; create and edit forms with the validation errors shown
per field) and the settlement between funding and serving parties (table, chart, CSV and XLSX). The
verification desk and the appointments of a day are ``pages_benefit_desk``; the benefit card
products and a member's cards are ``pages_benefit_cards``.

Handlers call the benefits services (``catalogue``, ``settlement``) — the same verbs and read models
as ``benefits.api`` — and, for the reads the API also makes directly, the benefits repository.
Forms are parsed only as far as a browser sends strings: usage limits and appointment rules are JSON
typed into text areas. No queries or business rules here.
"""

from __future__ import annotations

import json
from datetime import date
from typing import Annotated, Any, Literal
from urllib.parse import urlencode

from fastapi import APIRouter, Form, Query, Request
from fastapi.responses import JSONResponse, Response
from pydantic import ValidationError

from huiyuan.benefits import catalogue, settlement
from huiyuan.benefits.models import (
    DEFINITION_KINDS,
    DEFINITION_STATUSES,
    DELEGATED_KINDS,
    VERIFICATION_METHODS,
    BenefitDefinition,
)
from huiyuan.benefits.repository import BenefitRepository
from huiyuan.benefits.schemas import SERVICE_EXAMPLE, DefinitionUpdate
from huiyuan.console.deps import Console, requires
from huiyuan.console.forms import (
    JsonFields,
    check,
    done,
    failure_status,
    invalid_fields,
    present,
    problems,
    span,
)
from huiyuan.console.i18n import translate
from huiyuan.console.web import ConsoleRoute, is_htmx, render
from huiyuan.kit import tables
from huiyuan.kit.errors import AppError, ValidationFailed, field_error

router = APIRouter(route_class=ConsoleRoute, include_in_schema=False)

Reader = Annotated[Console, requires("benefits:read")]
Writer = Annotated[Console, requires("benefits:write")]
FromDate = Annotated[date | None, Query(alias="from")]
ToDate = Annotated[date | None, Query()]
SettlePeriod = Literal["day", "month", "all"]

CATALOGUE_ROWS = 200
EVENT_ROWS = 50
CHART_DAYS = 30
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


# -- catalogue -------------------------------------------------------------------------------------


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
