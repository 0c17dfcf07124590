"""Console pages of coupons: the templates (list, and a create form with the validation errors shown
per field), a template's page (rules, stock and budget, status changes, restock, third-party code
import, push issue, recent coupons), a push run with its live progress and result report, the coupon
lookup (event trail, void), the settlement of a period (table, funder chart, CSV and XLSX) and the
coupon figures per template, store or channel.

Handlers call the coupons services (``templates``, ``issuing``, ``push``, ``reports``) — the same
verbs and read models as ``coupons.api``, never the HTTP API. Forms are parsed only as far as a
browser sends strings: the rules are a JSON document typed into a text area, and times and dates
typed without a zone are read in the brand's time zone. No queries or business rules here.
"""

from __future__ import annotations

import json
from collections import Counter
from datetime import date, datetime, time, timedelta
from typing import Annotated, Any, Literal
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

from fastapi import APIRouter, File, Form, Query, Request, UploadFile
from fastapi.responses import JSONResponse, RedirectResponse, Response
from pydantic import ValidationError

from huiyuan.console.deps import Console, requires
from huiyuan.console.forms import (
    JsonFields,
    done,
    failure_status,
    form_errors,
    invalid_fields,
    local_datetime,
    present,
)
from huiyuan.console.i18n import translate
from huiyuan.console.web import ConsoleRoute, is_htmx, render
from huiyuan.coupons import issuing, push, reports, templates
from huiyuan.coupons.models import ISSUE_CHANNELS
from huiyuan.coupons.rules import field_errors as rules_field_errors
from huiyuan.coupons.schemas import RestockIn, TemplateIn, TemplateUpdate
from huiyuan.jobs import service as jobs
from huiyuan.kit import tables
from huiyuan.kit.clock import utcnow
from huiyuan.kit.errors import AppError, NotFound, ValidationFailed, field_error
from huiyuan.points import config as points
from huiyuan.tenancy.repository import TenancyRepository

router = APIRouter(route_class=ConsoleRoute, include_in_schema=False)

Reader = Annotated[Console, requires("coupons:read")]
Writer = Annotated[Console, requires("coupons:write")]
FromDate = Annotated[date | None, Query(alias="from")]
ToDate = Annotated[date | None, Query()]
SettlePeriod = Literal["day", "month"]
Dimension = Literal["template", "store", "channel"]

TEMPLATE_ROWS = 200
RECENT_COUPONS = 20
LOOKUP_ROWS = 50
REPORT_ROWS = 100
IMPORT_ROWS = 20
RULES_EXAMPLE = json.dumps(
    {
        "discount": {"kind": "threshold", "threshold": "300.00", "amount": "50.00"},
        "conditions": {"scenes": ["online", "in_store"]},
        "stacking": "stackable",
        "cost_sharing": [{"party": "brand", "percent": "70"}, {"party": "store", "percent": "30"}],
        "validity": {"kind": "relative", "days": 30, "round_to": "end_of_day"},
    },
    ensure_ascii=False,
    indent=2,
)
NEW_TEMPLATE = {
    "rules": RULES_EXAMPLE,
    "status": "draft",
    "code_source": "generated",
    "return_on_refund": "1",
}
XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"


# -- helpers ---------------------------------------------------------------------------------------


def _errors(exc: ValidationError | AppError, body: Any = None) -> list[dict[str, Any]]:
    """Field errors of a failed form; pydantic's name the rules' fields as the API does
    (``rules.discount.amount``, without the tags of the discount union)."""
    if isinstance(exc, ValidationError):
        return rules_field_errors(exc, body, prefix="")
    return form_errors(exc)


def _decoded(raw: bytes, field: str) -> str:
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise ValidationFailed(
            "The file is not UTF-8 text.", errors=[field_error(field, "not UTF-8", "encoding")]
        ) from None


def _fixed_window(rules: dict[str, Any]) -> tuple[datetime, datetime] | None:
    validity = rules.get("validity") or {}
    if validity.get("kind") != "fixed":
        return None
    return datetime.fromisoformat(validity["start"]), datetime.fromisoformat(validity["end"])


def _back(template_id: int) -> Response:
    return RedirectResponse(f"/console/coupons/templates/{template_id}", status_code=303)


# -- templates -------------------------------------------------------------------------------------


def _templates_page(
    request: Request,
    console: Console,
    *,
    errors: list[dict[str, Any]] | None = None,
    form: dict[str, str] | None = None,
    status: int = 200,
    fragment: bool = False,
) -> Response:
    has_brand = console.brand_id is not None
    session = console.session
    rows = (
        templates.list_templates(session, status=None, claimable=None, after_id=None, limit=TEMPLATE_ROWS)
        if has_brand
        else []
    )
    can_write = console.can("coupons:write")
    context = {
        "has_brand": has_brand,
        "templates": templates.template_outs(session, rows),
        "can_write": can_write,
        "errors": errors or [],
        "error_fields": invalid_fields(errors or []),
        "form": form or NEW_TEMPLATE,
        "point_types": [
            pt
            for pt in points.list_point_types(session, include_retired=False)
            if pt.kind == "spendable" and pt.spendable
        ]
        if has_brand and can_write
        else [],
        "zone": console.timezone(),
    }
    template = "coupons_template_form.html" if fragment else "coupons_templates.html"
    return render(request, template, context, status=status)


@router.get("/console/coupons")
def templates_page(request: Request, console: Reader) -> Response:
    return _templates_page(request, console)


@router.post("/console/coupons/templates")
def create_template(
    request: Request,
    console: Writer,
    code: Annotated[str, Form(max_length=40)] = "",
    name: Annotated[str, Form(max_length=120)] = "",
    description: Annotated[str, Form(max_length=2000)] = "",
    status: Annotated[str, Form(max_length=16)] = "draft",
    code_source: Annotated[str, Form(max_length=16)] = "generated",
    rules: Annotated[str, Form(max_length=20_000)] = "",
    stock_total: Annotated[str, Form(max_length=12)] = "",
    budget_total: Annotated[str, Form(max_length=20)] = "",
    limit_per_member: Annotated[str, Form(max_length=12)] = "",
    limit_per_member_per_day: Annotated[str, Form(max_length=12)] = "",
    limit_per_day: Annotated[str, Form(max_length=12)] = "",
    claimable: Annotated[str, Form(max_length=1)] = "",
    claim_from: Annotated[str, Form(max_length=40)] = "",
    claim_to: Annotated[str, Form(max_length=40)] = "",
    point_type: Annotated[str, Form(max_length=32)] = "",
    points_price: Annotated[str, Form(max_length=12)] = "",
    cash_price: Annotated[str, Form(max_length=20)] = "",
    return_on_refund: Annotated[str, Form(max_length=1)] = "",
) -> Response:
    form = {k: v for k, v in locals().items() if isinstance(v, str)}
    body: dict[str, Any] = {}
    try:
        docs = JsonFields()
        parsed_rules = docs.parse(rules, "rules", shape=dict, empty=None)
        zone = console.timezone()
        window = {
            "claim_from": local_datetime(claim_from, "claim_from", zone, docs.errors),
            "claim_to": local_datetime(claim_to, "claim_to", zone, docs.errors),
        }
        docs.check()
        numbers = {
            "stock_total": stock_total,
            "budget_total": budget_total,
            "limit_per_member": limit_per_member,
            "limit_per_member_per_day": limit_per_member_per_day,
            "limit_per_day": limit_per_day,
            "points_price": points_price,
            "cash_price": cash_price,
        }
        body = {
            "code": code.strip(),
            "name": name.strip(),
            "description": description.strip() or None,
            "status": status,
            "code_source": code_source,
            "rules": parsed_rules,
            **present(numbers),
            "claimable": claimable == "1",
            **{k: v for k, v in window.items() if v is not None},
            "point_type": point_type.strip() or None,
            "return_on_refund": return_on_refund == "1",
        }
        data = TemplateIn.model_validate(body)
        created = templates.create_template(console.session, actor=console.principal, data=data)
    except (ValidationError, AppError) as exc:
        console.session.rollback()
        return _templates_page(
            request,
            console,
            errors=_errors(exc, body),
            form=form,
            status=failure_status(exc),
            fragment=is_htmx(request),
        )
    return done(request, f"/console/coupons/templates/{created.id}")


def _template_page(request: Request, console: Console, template_id: int, **extra: Any) -> Response:
    """A template's page; ``extra`` carries a failed form's errors and values, or an import result."""
    session = console.session
    template = templates.template_out(session, templates.get_template(session, template_id))
    recent = issuing.list_coupons(session, template_id=template.id, limit=RECENT_COUPONS)
    context: dict[str, Any] = {
        "template": template,
        "window": _fixed_window(template.rules),
        "rules_json": json.dumps(template.rules, ensure_ascii=False, indent=2),
        "coupons": issuing.coupon_outs(session, recent),
        "can_write": console.can("coupons:write"),
        "restock_errors": [],
        "restock_form": {},
        "import_errors": [],
        "import_result": None,
        "push_errors": [],
        "push_form": {},
        "import_rows": IMPORT_ROWS,
    }
    status = extra.pop("status", 200)
    context.update(extra)
    context["restock_fields"] = invalid_fields(context["restock_errors"])
    context["push_fields"] = invalid_fields(context["push_errors"])
    return render(request, "coupons_template.html", context, status=status)


@router.get("/console/coupons/templates/{template_id}")
def template_page(request: Request, template_id: int, console: Reader) -> Response:
    return _template_page(request, console, template_id)  # 404 page for other brands' templates


@router.post("/console/coupons/templates/{template_id}/status")
def change_status(
    template_id: int,
    console: Writer,
    status: Annotated[str, Form(pattern="^(active|paused|retired)$")],
) -> Response:
    data = TemplateUpdate.model_validate({"status": status})
    templates.update_template(console.session, actor=console.principal, template_id=template_id, data=data)
    return _back(template_id)


@router.post("/console/coupons/templates/{template_id}/stock")
def restock(
    request: Request,
    template_id: int,
    console: Writer,
    quantity: Annotated[str, Form(max_length=12)] = "",
    budget: Annotated[str, Form(max_length=20)] = "",
    reason: Annotated[str, Form(max_length=200)] = "",
) -> Response:
    form = {"quantity": quantity, "budget": budget, "reason": reason}
    try:
        data = RestockIn.model_validate(
            {"quantity": quantity.strip() or 0, "budget": budget.strip() or "0", "reason": reason.strip()}
        )
        templates.restock(console.session, actor=console.principal, template_id=template_id, data=data)
    except (ValidationError, AppError) as exc:
        if isinstance(exc, NotFound):
            raise
        console.session.rollback()
        return _template_page(
            request,
            console,
            template_id,
            status=failure_status(exc),
            restock_errors=_errors(exc),
            restock_form=form,
        )
    return _back(template_id)


@router.post("/console/coupons/templates/{template_id}/codes")
def import_codes(
    request: Request, template_id: int, console: Writer, file: Annotated[UploadFile, File()]
) -> Response:
    try:
        text = _decoded(file.file.read(), "file")
        result = templates.import_codes(
            console.session, actor=console.principal, template_id=template_id, text=text
        )
    except ValidationFailed as exc:
        console.session.rollback()
        return _template_page(request, console, template_id, status=422, import_errors=form_errors(exc))
    return _template_page(request, console, template_id, import_result=result)


@router.post("/console/coupons/templates/{template_id}/push")
def start_push(
    request: Request,
    template_id: int,
    console: Writer,
    member_ids: Annotated[str, Form(max_length=2_000_000)] = "",
    reference: Annotated[str, Form(max_length=120)] = "",
    file: Annotated[UploadFile | None, File()] = None,
) -> Response:
    session = console.session
    from_file = file is not None and bool(file.filename)
    source = "file" if from_file else "member_ids"
    try:
        text = _decoded(file.file.read(), "file") if file is not None and from_file else member_ids
        if not text.strip():
            raise ValidationFailed(
                "Paste member ids or choose a file.", errors=[field_error(source, "no members", "empty")]
            )
        ids = push.parse_targets_csv(session, text)
        run = push.start_push(
            session,
            actor=console.principal,
            template_id=template_id,
            member_ids=ids,
            member_filter=None,
            reference=reference.strip() or None,
        )
    except AppError as exc:
        if isinstance(exc, NotFound):
            raise
        session.rollback()
        # The service names the targets ``file``; pasted ids show their errors at the text area.
        errors = [{**e, "field": source} if e.get("field") == "file" else e for e in form_errors(exc)]
        return _template_page(
            request,
            console,
            template_id,
            status=exc.status,
            push_errors=errors,
            push_form={"member_ids": member_ids, "reference": reference},
        )
    return RedirectResponse(f"/console/coupons/push/{run.id}", status_code=303)


# -- push runs -------------------------------------------------------------------------------------


def _push_context(console: Console, run_id: int) -> dict[str, Any]:
    session = console.session
    run = push.get_run(session, run_id)
    try:
        job = jobs.get_run(session, run.job_id) if run.job_id is not None else None
    except NotFound:
        job = None
    failed = job is not None and job.status in ("failed", "cancelled")
    finished = run.status == "completed" or failed
    done_count = run.issued + run.skipped
    percent = None
    if run.requested:
        percent = round(100.0 * min(done_count, run.requested) / run.requested, 1)
    elif finished:
        percent = 100.0
    return {
        "run": run,
        "job": job,
        "template": templates.get_template(session, run.template_id),
        "finished": finished,
        "failed": failed,
        "percent": percent,
        "reasons": Counter(r.get("reason", "") for r in run.report).most_common(),
        "report": run.report[:REPORT_ROWS],
    }


@router.get("/console/coupons/push/{run_id}")
def push_run(request: Request, run_id: int, console: Reader) -> Response:
    return render(request, "coupons_push_run.html", _push_context(console, run_id))


@router.get("/console/coupons/push/{run_id}/progress")
def push_progress(request: Request, run_id: int, console: Reader) -> Response:
    """The progress block alone, polled by the run page until the run has finished."""
    return render(request, "coupons_push_progress.html", _push_context(console, run_id))


# -- coupon lookup ---------------------------------------------------------------------------------


def _lookup_page(
    request: Request,
    console: Console,
    *,
    code: str = "",
    member_id: str = "",
    coupon_id: int | None = None,
    status: int = 200,
    void_errors: list[dict[str, Any]] | None = None,
) -> Response:
    session = console.session
    errors: list[dict[str, Any]] = []
    rows = []
    searched = bool(code.strip() or member_id.strip())
    if coupon_id is not None:
        rows = [issuing.get_coupon(session, coupon_id)]  # 404 page for other brands' coupons
    elif searched and console.brand_id is not None:
        member = member_id.strip()
        if member and not member.isdigit():
            errors.append(field_error("member_id", "a member id is a number", "invalid"))
        else:
            rows = issuing.list_coupons(
                session, member_id=int(member) if member else None, code=code or None, limit=LOOKUP_ROWS
            )
    coupons = issuing.coupon_outs(session, rows)
    selected = coupons[0] if len(coupons) == 1 else None
    store = None
    if selected is not None and selected.store_id is not None:
        store = TenancyRepository(session).store(selected.store_id)
    context = {
        "has_brand": console.brand_id is not None,
        "query": {"code": code, "member_id": member_id},
        "searched": searched,
        "errors": errors,
        "coupons": coupons,
        "selected": selected,
        "events": issuing.coupon_events(session, selected.id) if selected is not None else [],
        "store": store,
        "can_write": console.can("coupons:write"),
        "void_errors": void_errors or [],
    }
    return render(request, "coupons_lookup.html", context, status=status)


@router.get("/console/coupons/lookup")
def lookup_page(
    request: Request,
    console: Reader,
    code: Annotated[str, Query(max_length=80)] = "",
    member_id: Annotated[str, Query(max_length=20)] = "",
) -> Response:
    return _lookup_page(request, console, code=code.strip(), member_id=member_id)


@router.get("/console/coupons/lookup/{coupon_id}")
def coupon_page(request: Request, coupon_id: int, console: Reader) -> Response:
    return _lookup_page(request, console, coupon_id=coupon_id)


@router.post("/console/coupons/lookup/{coupon_id}/void")
def void_coupon(
    request: Request,
    coupon_id: int,
    console: Writer,
    reason: Annotated[str, Form(max_length=200)] = "",
) -> Response:
    try:
        if not reason.strip():
            raise ValidationFailed(
                "Give the reason for voiding.", errors=[field_error("reason", "required", "missing")]
            )
        issuing.void(console.session, actor=console.principal, coupon_id=coupon_id, reason=reason.strip())
    except AppError as exc:
        if isinstance(exc, NotFound):
            raise
        console.session.rollback()
        return _lookup_page(
            request, console, coupon_id=coupon_id, status=exc.status, void_errors=form_errors(exc)
        )
    return RedirectResponse(f"/console/coupons/lookup/{coupon_id}", status_code=303)


# -- periods ---------------------------------------------------------------------------------------


def _period(console: Console, start_day: date | None, end_day: date | None) -> dict[str, Any]:
    """Local days ``from``–``to`` (both included; this month so far by default) as the instants the
    reports take: local midnight of ``from`` up to local midnight after ``to``."""
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


def _party_label(lang: str, key: str) -> str:
    party, _, party_id = key.partition(":")
    label = translate(lang, f"coupons.party.{party}")
    return f"{label} ({party_id})" if party_id else label


# -- settlement ------------------------------------------------------------------------------------


def _settle(console: Console, span: dict[str, Any], period: SettlePeriod) -> reports.Settlement:
    brand_id = console.principal.scope.require_brand()
    return reports.settle(
        console.session, brand_id=brand_id, start=span["start"], end=span["end"], period=period
    )


@router.get("/console/coupons/settlement")
def settlement_page(
    request: Request, console: Reader, from_: FromDate = None, to: ToDate = None, period: SettlePeriod = "day"
) -> Response:
    span = _period(console, from_, to)
    query = urlencode({"from": span["from"].isoformat(), "to": span["to"].isoformat(), "period": period})
    context: dict[str, Any] = {
        "has_brand": console.brand_id is not None,
        "span": span,
        "period": period,
        "query": query,
        "settlement": None,
        "errors": [],
        "parties": [],
    }
    status = 200
    if console.brand_id is not None:
        try:
            s = _settle(console, span, period)
        except ValidationFailed as exc:
            context["errors"], status = form_errors(exc), exc.status
        else:
            context["settlement"] = s
            context["parties"] = [(_party_label(console.lang, k), v) for k, v in s.by_party.items()]
    return render(request, "coupons_settlement.html", context, status=status)


@router.get("/console/coupons/settlement.json")
def settlement_chart(
    console: Reader, from_: FromDate = None, to: ToDate = None, period: SettlePeriod = "day"
) -> Response:
    """Chart data: funders on the x axis, the period's net coupon cost (yuan) of each."""
    if console.brand_id is None:
        return JSONResponse({"title": "", "months": [], "series": []})
    s = _settle(console, _period(console, from_, to), period)
    keys = list(s.by_party)
    series = (
        [{"name": translate(console.lang, "coupons.net"), "data": [float(s.by_party[k]) for k in keys]}]
        if keys
        else []
    )
    return JSONResponse(
        {
            "title": translate(console.lang, "coupons.settlement_chart"),
            "months": [_party_label(console.lang, k) for k in keys],
            "series": series,
        }
    )


def _settlement_file(
    console: Console, from_: date | None, to: date | None, period: SettlePeriod
) -> tuple[list[tables.Section], str]:
    span = _period(console, from_, to)
    name = f"coupon-settlement-{span['from'].isoformat()}-{span['to'].isoformat()}"
    return reports.settlement_sections(_settle(console, span, period)), name


@router.get("/console/coupons/settlement.csv")
def settlement_csv(
    console: Reader, from_: FromDate = None, to: ToDate = None, period: SettlePeriod = "day"
) -> Response:
    sections, name = _settlement_file(console, from_, to, period)
    return Response(
        tables.to_csv(sections),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{name}.csv"'},
    )


@router.get("/console/coupons/settlement.xlsx")
def settlement_xlsx(
    console: Reader, from_: FromDate = None, to: ToDate = None, period: SettlePeriod = "day"
) -> Response:
    sections, name = _settlement_file(console, from_, to, period)
    return Response(
        tables.to_xlsx(sections),
        media_type=XLSX,
        headers={"Content-Disposition": f'attachment; filename="{name}.xlsx"'},
    )


# -- figures ---------------------------------------------------------------------------------------


def _figures(
    console: Console, from_: date | None, to: date | None, by: Dimension
) -> tuple[dict[str, Any], list[reports.StatsRow], list[str]]:
    span = _period(console, from_, to)
    rows = reports.stats(
        console.session,
        brand_id=console.principal.scope.require_brand(),
        start=span["start"],
        end=span["end"],
        by=by,
    )
    labels = []
    for row in rows:
        if by == "channel" and row.key in ISSUE_CHANNELS:
            labels.append(translate(console.lang, f"coupons.channel.{row.key}"))
        elif by == "store" and row.key == "—":
            labels.append(translate(console.lang, "coupons.online"))
        else:
            labels.append(row.label)
    return span, rows, labels


@router.get("/console/coupons/figures")
def figures_page(
    request: Request, console: Reader, from_: FromDate = None, to: ToDate = None, by: Dimension = "template"
) -> Response:
    context: dict[str, Any] = {"has_brand": console.brand_id is not None, "by": by, "rows": [], "errors": []}
    status = 200
    if console.brand_id is None:
        context["span"] = _period(console, from_, to)
    else:
        try:
            span, rows, labels = _figures(console, from_, to, by)
        except ValidationFailed as exc:
            context.update(span=_period(console, from_, to), errors=form_errors(exc))
            status = exc.status
        else:
            context.update(span=span, rows=list(zip(labels, rows, strict=True)))
    span = context["span"]
    context["query"] = urlencode({"from": span["from"].isoformat(), "to": span["to"].isoformat(), "by": by})
    return render(request, "coupons_figures.html", context, status=status)


@router.get("/console/coupons/figures.json")
def figures_chart(
    console: Reader, from_: FromDate = None, to: ToDate = None, by: Dimension = "template"
) -> Response:
    """Chart data: one category per template, store or channel; coupons issued, used and expired as
    bars, the discount cost (yuan) as a line on its own axis."""
    if console.brand_id is None:
        return JSONResponse({"categories": [], "series": []})
    _, rows, labels = _figures(console, from_, to, by)
    counts = ("used",) if by == "store" else ("issued", "used", "expired")
    series: list[dict[str, Any]] = [
        {
            "name": translate(console.lang, f"coupons.{c}"),
            "type": "bar",
            "data": [getattr(r, c) for r in rows],
        }
        for c in counts
    ]
    series.append(
        {
            "name": translate(console.lang, "coupons.discount_cost"),
            "type": "line",
            "axis": 1,
            "data": [float(r.discount_cost) for r in rows],
        }
    )
    return JSONResponse({"categories": labels, "series": series if rows else []})
