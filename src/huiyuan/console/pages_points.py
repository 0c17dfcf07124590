"""Console pages for points: point types and earn rules (list and create, with validation errors
shown in the form), a member's loyalty section, and the points liability dashboard with its charts.

Handlers call ``points.config`` and ``points.reads`` (the same verbs and read models as the API);
forms are parsed here only as far as a browser sends strings (JSON documents are typed into text
areas). The member's loyalty section is its own fragment (``/console/members/{id}/points``), loaded
by the member page with HTMX and readable as a page of its own without JavaScript. No queries or
business rules here.
"""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Annotated, Any
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Form, Request
from fastapi.responses import JSONResponse, RedirectResponse, Response
from pydantic import ValidationError

from huiyuan.console.deps import Console, requires
from huiyuan.console.forms import present
from huiyuan.console.i18n import translate
from huiyuan.console.web import ConsoleRoute, is_htmx, render
from huiyuan.kit.errors import AppError, ValidationFailed, field_error
from huiyuan.points import config, reads
from huiyuan.points.models import POINT_KINDS
from huiyuan.points.schemas import EarnRuleIn, PointTypeIn

router = APIRouter(route_class=ConsoleRoute, include_in_schema=False)

Reader = Annotated[Console, requires("points:read")]
Writer = Annotated[Console, requires("points:write")]

DETAIL_ROWS = 20
OUTLOOK_DAYS = 90
POLICY_EXAMPLE = '{"kind": "relative", "months": 12, "round_to": "end_of_month"}'
RULE_EXAMPLE = json.dumps(
    {
        "trigger": {"kind": "order"},
        "point_type": "points",
        "formula": {"kind": "per_amount", "per": "10.00", "points": 1},
    },
    ensure_ascii=False,
)


def _errors_of(exc: Exception) -> list[dict[str, Any]]:
    if isinstance(exc, ValidationError):
        return [field_error(".".join(str(p) for p in e["loc"]), e["msg"], e["type"]) for e in exc.errors()]
    assert isinstance(exc, AppError)
    return exc.errors or [{"field": "", "message": exc.detail, "code": exc.code}]


def _json_object(raw: str, field: str, default: dict[str, Any] | None = None) -> dict[str, Any]:
    if not raw.strip() and default is not None:
        return default
    try:
        value = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise ValidationFailed(
            "Not valid JSON.", errors=[field_error(field, f"not valid JSON: {exc.msg}", "json")]
        ) from None
    if not isinstance(value, dict):
        raise ValidationFailed(
            "Not a JSON object.", errors=[field_error(field, "must be a JSON object", "json")]
        )
    return value


def _created(request: Request, target: str) -> Response:
    if is_htmx(request):
        # The form fragment is replaced by a fresh page, so the new row shows in the list.
        return Response(status_code=200, headers={"HX-Redirect": target})
    return RedirectResponse(target, status_code=303)


# -- point types -----------------------------------------------------------------------------------


def _types_page(
    request: Request,
    console: Console,
    *,
    errors: list[dict[str, Any]] | None = None,
    form: dict[str, Any] | None = None,
    status: int = 200,
    fragment: bool = False,
) -> Response:
    context = {
        "types": config.list_point_types(console.session) if console.brand_id is not None else [],
        "errors": errors or [],
        "error_fields": {e.get("field", "").split(".")[0] for e in errors or []},
        "form": form or {"expiry_policy": POLICY_EXAMPLE, "kind": "spendable"},
        "kinds": [k for k in POINT_KINDS if k != "wallet"],  # wallet types are made by huiyuan.wallet
        "can_write": console.can("points:write"),
    }
    template = "points_type_form.html" if fragment else "points_types.html"
    return render(request, template, context, status=status)


@router.get("/console/points/types")
def point_types_page(request: Request, console: Reader) -> Response:
    return _types_page(request, console)


@router.post("/console/points/types")
def create_point_type(
    request: Request,
    console: Writer,
    code: Annotated[str, Form(max_length=32)] = "",
    name: Annotated[str, Form(max_length=80)] = "",
    kind: Annotated[str, Form(max_length=16)] = "spendable",
    fair_value: Annotated[str, Form(max_length=20)] = "",
    points_per_yuan: Annotated[str, Form(max_length=10)] = "",
    max_pay_ratio: Annotated[str, Form(max_length=10)] = "",
    pending_days: Annotated[str, Form(max_length=5)] = "",
    reservation_minutes: Annotated[str, Form(max_length=5)] = "",
    spendable: Annotated[str, Form(max_length=1)] = "",
    transferable: Annotated[str, Form(max_length=1)] = "",
    expiry_policy: Annotated[str, Form(max_length=2000)] = "",
) -> Response:
    form = {k: v for k, v in locals().items() if isinstance(v, str)}
    numbers = present(
        {
            "fair_value": fair_value,
            "points_per_yuan": points_per_yuan,
            "max_pay_ratio": max_pay_ratio,
            "pending_days": pending_days,
            "reservation_minutes": reservation_minutes,
        }
    )
    try:
        data = PointTypeIn.model_validate(
            {
                "code": code.strip(),
                "name": name,
                "kind": kind,
                **numbers,
                "spendable": None if spendable == "" else spendable == "1",
                "transferable": transferable == "1",
                "expiry_policy": _json_object(expiry_policy, "expiry_policy", {"kind": "never"}),
            }
        )
        config.create_point_type(console.session, actor=console.principal, data=data)
    except (ValidationError, AppError) as exc:
        console.session.rollback()
        status = exc.status if isinstance(exc, AppError) else 422
        return _types_page(
            request, console, errors=_errors_of(exc), form=form, status=status, fragment=is_htmx(request)
        )
    return _created(request, "/console/points/types")


# -- earn rules ------------------------------------------------------------------------------------


def _rules_page(
    request: Request,
    console: Console,
    *,
    errors: list[dict[str, Any]] | None = None,
    form: dict[str, Any] | None = None,
    status: int = 200,
    fragment: bool = False,
) -> Response:
    context = {
        "rules": config.list_rules(console.session) if console.brand_id is not None else [],
        "errors": errors or [],
        "error_fields": {e.get("field", "").split(".")[0] for e in errors or []},
        "form": form or {"definition": RULE_EXAMPLE},
        "can_write": console.can("points:write"),
    }
    template = "points_rule_form.html" if fragment else "points_rules.html"
    return render(request, template, context, status=status)


@router.get("/console/points/rules")
def rules_page(request: Request, console: Reader) -> Response:
    return _rules_page(request, console)


@router.post("/console/points/rules")
def create_rule(
    request: Request,
    console: Writer,
    code: Annotated[str, Form(max_length=40)] = "",
    name: Annotated[str, Form(max_length=120)] = "",
    definition: Annotated[str, Form(max_length=20_000)] = "",
) -> Response:
    form = {"code": code, "name": name, "definition": definition}
    try:
        data = EarnRuleIn.model_validate(
            {"code": code.strip(), "name": name, "definition": _json_object(definition, "definition")}
        )
        config.create_rule(console.session, actor=console.principal, data=data)
    except (ValidationError, AppError) as exc:
        console.session.rollback()
        status = exc.status if isinstance(exc, AppError) else 422
        return _rules_page(
            request, console, errors=_errors_of(exc), form=form, status=status, fragment=is_htmx(request)
        )
    return _created(request, "/console/points/rules")


@router.post("/console/points/rules/{rule_id}/status")
def change_rule_status(
    rule_id: int, console: Writer, status: Annotated[str, Form(pattern="^(active|paused|retired)$")]
) -> Response:
    config.change_rule_status(console.session, actor=console.principal, rule_id=rule_id, status=status)
    return RedirectResponse("/console/points/rules", status_code=303)


# -- a member's loyalty section --------------------------------------------------------------------


@router.get("/console/members/{member_id}/points")
def member_points(request: Request, member_id: int, console: Reader) -> Response:
    session = console.session
    member = reads.get_member(session, member_id)  # 404 page for other brands' members
    lots = reads.list_lots(session, member.id, before_id=None, limit=DETAIL_ROWS)
    entries = reads.list_entries(session, member.id, before_id=None, limit=DETAIL_ROWS)
    context = {
        "member": member,
        "summary": reads.member_summary(session, member.id),
        "lots": [reads.lot_out(lot, lots.codes, staff=True) for lot in lots.rows],
        "entries": [reads.entry_out(e, entries.codes, staff=True) for e in entries.rows],
    }
    template = "points_member_section.html" if is_htmx(request) else "points_member.html"
    return render(request, template, context)


# -- liability dashboard ---------------------------------------------------------------------------


@router.get("/console/points/liability")
def liability_page(request: Request, console: Reader) -> Response:
    return render(
        request,
        "points_liability.html",
        {"liability": reads.liability(console.session), "days": OUTLOOK_DAYS},
    )


@router.get("/console/points/liability.json")
def liability_chart(console: Reader) -> Response:
    """Chart data: point types on the x axis, the liability (yuan) stacked by who funds it."""
    liability = reads.liability(console.session)
    funders = sorted({f.funded_by for t in liability.point_types for f in t.by_funder})
    series = []
    for funder in funders:
        values = {
            t.point_type: f.value for t in liability.point_types for f in t.by_funder if f.funded_by == funder
        }
        label = translate(console.lang, f"points.funder.{funder}")
        series.append(
            {
                "name": funder if label.startswith("points.funder.") else label,
                "data": [float(values.get(t.point_type, 0)) for t in liability.point_types],
            }
        )
    return JSONResponse(
        {
            "title": translate(console.lang, "points.liability_chart"),
            "months": [t.name for t in liability.point_types],
            "series": series,
        }
    )


@router.get("/console/points/expiring.json")
def expiring_chart(console: Reader, days: int = OUTLOOK_DAYS) -> Response:
    """Chart data: every local day of the outlook on the x axis, expiring points per point type."""
    outlook = reads.expiring(console.session, actor=console.principal, days=days)
    today = outlook.as_of.astimezone(ZoneInfo(outlook.timezone)).date()
    dates = [today + timedelta(days=i) for i in range(outlook.days)]
    per_day = {d.date: d.by_type for d in outlook.per_day}
    names = {pt.code: pt.name for pt in config.list_point_types(console.session)}
    series = [
        {"name": names.get(code, code), "data": [per_day.get(d, {}).get(code, 0) for d in dates]}
        for code in sorted(outlook.by_type)
    ]
    return JSONResponse(
        {
            "title": translate(console.lang, "points.expiring_chart"),
            "months": [d.isoformat() for d in dates],
            "series": series,
        }
    )
