"""Console pages of member tiers: the programme settings and the level list with create and edit
forms (validation errors shown in the form), the distribution of members per level over time
(ECharts stacked area, drawn from the daily snapshots through ``tiers.distribution``), and a
member's tier (level, validity, progress to the next level, latest changes) as a fragment of the
member's loyalty section.

Handlers call ``tiers.configuration`` and ``tiers.reads`` (the same verbs and read models as the
API). Forms are parsed here only as far as a browser sends strings: conditions, validity and gifts
are JSON documents typed into text areas (the shared form helpers are in ``console.forms``). No
queries or business rules here.
"""

from __future__ import annotations

from datetime import date
from typing import Annotated, Any

from fastapi import APIRouter, Form, Query, Request
from fastapi.responses import JSONResponse, Response
from pydantic import ValidationError

from huiyuan.console.deps import Console, requires
from huiyuan.console.forms import JsonFields, done, failure_status, form_errors, invalid_fields, pretty
from huiyuan.console.i18n import translate
from huiyuan.console.web import ConsoleRoute, is_htmx, render
from huiyuan.kit.errors import AppError, NotFound
from huiyuan.members import service as members
from huiyuan.tiers import configuration, distribution, reads, views
from huiyuan.tiers.ladder import NoTierProgram
from huiyuan.tiers.models import TierLevel, TierProgram
from huiyuan.tiers.schemas import PROGRAM_EXAMPLE, LevelIn, LevelUpdate, ProgramIn

router = APIRouter(route_class=ConsoleRoute, include_in_schema=False)

Reader = Annotated[Console, requires("tiers:read")]
Writer = Annotated[Console, requires("tiers:write")]

HISTORY_ROWS = 10
UPGRADE_EXAMPLE = '{"basis": "growth", "min": 1000}'
VALIDITY_EXAMPLE = '{"kind": "months", "months": 12}'
WINDOW_KINDS = ("rolling_months", "calendar_year")
SETTLEMENT_MODES = ("realtime", "fixed_date")


# -- the tiers page: settings, levels, distribution ------------------------------------------------


def _program_form(program: TierProgram | None) -> dict[str, str]:
    doc: dict[str, Any] = (
        {"window": program.window, "settlement": program.settlement, "grace_days": program.grace_days}
        if program
        else PROGRAM_EXAMPLE
    )
    window: dict[str, Any] = doc["window"]
    settlement: dict[str, Any] = doc["settlement"]
    return {
        "window_kind": str(window.get("kind", "")),
        "window_months": str(window.get("months", "")),
        "settlement_mode": str(settlement.get("mode", "")),
        "settlement_month": str(settlement.get("month", "")),
        "settlement_day": str(settlement.get("day", "")),
        "grace_days": str(doc["grace_days"]),
    }


def _blank_level_form(levels: list[TierLevel]) -> dict[str, str]:
    base = not levels
    return {
        "rank": "0" if base else str(max(lv.rank for lv in levels) + 1),
        "upgrade": "" if base else UPGRADE_EXAMPLE,
        "validity": "" if base else VALIDITY_EXAMPLE,
        "points_multiplier": "1",
    }


def _level_form(level: TierLevel) -> dict[str, str]:
    return {
        "code": level.code,
        "name_zh": level.name_zh,
        "name_en": level.name_en,
        "rank": str(level.rank),
        "upgrade": pretty(level.upgrade),
        "retention": pretty(level.retention),
        "validity": pretty(level.validity),
        "downgrade_to": level.downgrade_to_code or "",
        "points_multiplier": format(level.points_multiplier.normalize(), "f"),
        "upgrade_gifts": pretty(level.upgrade_gifts),
        "benefits": pretty(level.benefits),
    }


def _tiers_page(
    request: Request,
    console: Console,
    *,
    program_errors: list[dict[str, Any]] | None = None,
    program_form: dict[str, str] | None = None,
    level_errors: list[dict[str, Any]] | None = None,
    level_form: dict[str, str] | None = None,
    status: int = 200,
    fragment: str | None = None,
) -> Response:
    program: TierProgram | None = None
    levels: list[TierLevel] = []
    if console.brand_id is not None:
        try:
            program, levels = configuration.get_program(console.session, actor=console.principal)
        except NotFound:  # no programme yet: the settings form comes first
            program, levels = None, []
    context = {
        "has_brand": console.brand_id is not None,
        "program": program,
        "levels": levels,
        "can_write": console.can("tiers:write"),
        "program_errors": program_errors or [],
        "program_error_fields": invalid_fields(program_errors or []),
        "program_form": program_form or _program_form(program),
        "errors": level_errors or [],
        "error_fields": invalid_fields(level_errors or []),
        "form": level_form or _blank_level_form(levels),
        "level": None,
        "window_kinds": WINDOW_KINDS,
        "settlement_modes": SETTLEMENT_MODES,
    }
    return render(request, fragment or "tiers.html", context, status=status)


@router.get("/console/tiers")
def tiers_page(request: Request, console: Reader) -> Response:
    return _tiers_page(request, console)


@router.post("/console/tiers/program")
def configure_program(
    request: Request,
    console: Writer,
    window_kind: Annotated[str, Form(max_length=20)] = "",
    window_months: Annotated[str, Form(max_length=5)] = "",
    settlement_mode: Annotated[str, Form(max_length=20)] = "",
    settlement_month: Annotated[str, Form(max_length=2)] = "",
    settlement_day: Annotated[str, Form(max_length=2)] = "",
    grace_days: Annotated[str, Form(max_length=5)] = "",
) -> Response:
    form = {k: v for k, v in locals().items() if isinstance(v, str)}
    window: dict[str, Any] = {"kind": window_kind}
    if window_kind == "rolling_months":
        window["months"] = window_months.strip()
    settlement: dict[str, Any] = {"mode": settlement_mode}
    if settlement_mode == "fixed_date":
        settlement.update(month=settlement_month.strip(), day=settlement_day.strip())
    try:
        data = ProgramIn.model_validate(
            {"window": window, "settlement": settlement, "grace_days": grace_days.strip() or 0}
        )
        configuration.configure_program(console.session, actor=console.principal, data=data)
    except (ValidationError, AppError) as exc:
        console.session.rollback()
        return _tiers_page(
            request,
            console,
            program_errors=form_errors(exc),
            program_form=form,
            status=failure_status(exc),
            fragment="tiers_program_form.html" if is_htmx(request) else None,
        )
    return done(request, "/console/tiers")


def _level_documents(
    upgrade: str, retention: str, validity: str, upgrade_gifts: str, benefits: str
) -> dict[str, Any]:
    docs = JsonFields()
    parsed = {
        "upgrade": docs.parse(upgrade, "upgrade", shape=dict, empty=None),
        "retention": docs.parse(retention, "retention", shape=dict, empty=None),
        "validity": docs.parse(validity, "validity", shape=dict, empty=None),
        "upgrade_gifts": docs.parse(upgrade_gifts, "upgrade_gifts", shape=list, empty=[]),
        "benefits": docs.parse(benefits, "benefits", shape=list, empty=[]),
    }
    docs.check()
    return parsed


@router.post("/console/tiers/levels")
def create_level(
    request: Request,
    console: Writer,
    code: Annotated[str, Form(max_length=40)] = "",
    name_zh: Annotated[str, Form(max_length=80)] = "",
    name_en: Annotated[str, Form(max_length=80)] = "",
    rank: Annotated[str, Form(max_length=5)] = "",
    upgrade: Annotated[str, Form(max_length=5000)] = "",
    retention: Annotated[str, Form(max_length=5000)] = "",
    validity: Annotated[str, Form(max_length=1000)] = "",
    downgrade_to: Annotated[str, Form(max_length=40)] = "",
    points_multiplier: Annotated[str, Form(max_length=10)] = "",
    upgrade_gifts: Annotated[str, Form(max_length=10_000)] = "",
    benefits: Annotated[str, Form(max_length=10_000)] = "",
) -> Response:
    form = {k: v for k, v in locals().items() if isinstance(v, str)}
    try:
        data = LevelIn.model_validate(
            {
                "code": code.strip(),
                "name_zh": name_zh,
                "name_en": name_en,
                "rank": rank.strip(),
                "downgrade_to": downgrade_to.strip() or None,
                "points_multiplier": points_multiplier.strip() or "1",
                **_level_documents(upgrade, retention, validity, upgrade_gifts, benefits),
            }
        )
        configuration.create_level(console.session, actor=console.principal, data=data)
    except (ValidationError, AppError) as exc:
        console.session.rollback()
        return _tiers_page(
            request,
            console,
            level_errors=form_errors(exc),
            level_form=form,
            status=failure_status(exc),
            fragment="tiers_level_form.html" if is_htmx(request) else None,
        )
    return done(request, "/console/tiers")


def _level_page(
    request: Request,
    console: Console,
    level: TierLevel,
    *,
    errors: list[dict[str, Any]] | None = None,
    form: dict[str, str] | None = None,
    status: int = 200,
    fragment: bool = False,
) -> Response:
    context = {
        "level": level,
        "levels": configuration.list_levels(console.session, actor=console.principal),
        "can_write": console.can("tiers:write"),
        "errors": errors or [],
        "error_fields": invalid_fields(errors or []),
        "form": form or _level_form(level),
    }
    template = "tiers_level_form.html" if fragment else "tiers_level.html"
    return render(request, template, context, status=status)


@router.get("/console/tiers/levels/{level_id}")
def level_page(request: Request, level_id: int, console: Reader) -> Response:
    level = configuration.get_level(console.session, level_id)  # 404 page for other brands' levels
    return _level_page(request, console, level)


@router.post("/console/tiers/levels/{level_id}")
def update_level(
    request: Request,
    level_id: int,
    console: Writer,
    name_zh: Annotated[str, Form(max_length=80)] = "",
    name_en: Annotated[str, Form(max_length=80)] = "",
    rank: Annotated[str, Form(max_length=5)] = "",
    upgrade: Annotated[str, Form(max_length=5000)] = "",
    retention: Annotated[str, Form(max_length=5000)] = "",
    validity: Annotated[str, Form(max_length=1000)] = "",
    downgrade_to: Annotated[str, Form(max_length=40)] = "",
    points_multiplier: Annotated[str, Form(max_length=10)] = "",
    upgrade_gifts: Annotated[str, Form(max_length=10_000)] = "",
    benefits: Annotated[str, Form(max_length=10_000)] = "",
) -> Response:
    level = configuration.get_level(console.session, level_id)
    form = {k: v for k, v in locals().items() if isinstance(v, str)}
    form["code"] = level.code
    try:
        data = LevelUpdate.model_validate(
            {
                "name_zh": name_zh,
                "name_en": name_en,
                "rank": rank.strip(),
                "downgrade_to": downgrade_to.strip() or None,
                "points_multiplier": points_multiplier.strip() or "1",
                **_level_documents(upgrade, retention, validity, upgrade_gifts, benefits),
            }
        )
        configuration.update_level(console.session, actor=console.principal, level_id=level.id, data=data)
    except (ValidationError, AppError) as exc:
        console.session.rollback()
        level = configuration.get_level(console.session, level_id)
        return _level_page(
            request,
            console,
            level,
            errors=form_errors(exc),
            form=form,
            status=failure_status(exc),
            fragment=is_htmx(request),
        )
    return done(request, "/console/tiers")


@router.get("/console/tiers/distribution.json")
def distribution_chart(
    console: Reader,
    from_: Annotated[date | None, Query(alias="from")] = None,
    to: Annotated[date | None, Query()] = None,
) -> Response:
    """Chart data: days on the x axis, one stacked series per level (base level first)."""
    if console.brand_id is None:
        return JSONResponse({"title": "", "days": [], "series": []})
    dist = distribution.distribution(console.session, actor=console.principal, start=from_, end=to)
    series = [
        {
            "code": lv.code,
            "name": lv.name_zh if console.lang == "zh" else lv.name_en,
            "data": dist.counts[lv.id],
        }
        for lv in dist.levels
    ]
    return JSONResponse(
        {
            "title": translate(console.lang, "tiers.chart_title"),
            "days": [d.isoformat() for d in dist.days],
            "series": series,
        }
    )


# -- a member's tier (part of the loyalty section) -------------------------------------------------


@router.get("/console/members/{member_id}/tier")
def member_tier(request: Request, member_id: int, console: Reader) -> Response:
    session = console.session
    member = members.get_member(session, member_id)  # 404 page for other brands' members
    context: dict[str, Any] = {"member": member, "tier": None, "changes": [], "names": {}}
    try:
        view = reads.member_tier(session, member.id)
    except NoTierProgram:
        pass
    else:
        rows, codes = reads.tier_history(session, member.id, before_id=None, limit=HISTORY_ROWS)
        context.update(
            tier=views.member_tier_out(view),
            changes=[views.change_out(c, codes) for c in rows],
            names={lv.code: lv.name_en if console.lang == "en" else lv.name_zh for lv in view.ladder.levels},
        )
    template = "tiers_member_section.html" if is_htmx(request) else "tiers_member.html"
    return render(request, template, context)
