"""Console pages of paid membership: plan categories and plan levels (lists, create forms with the
validation errors shown in the form, a level's page with its price, validity and benefits), and a
member's paid plan as a fragment of the member's loyalty section.

Handlers call ``paid.plans`` and ``paid.service`` (the same verbs and read models as the API);
configuring needs ``paid:configure``, everyone with ``paid:read`` sees the lists. Benefits are JSON
arrays typed into text areas. No queries or business rules here.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Form, Request
from fastapi.responses import Response
from pydantic import ValidationError

from huiyuan.console.deps import Console, requires
from huiyuan.console.forms import JsonFields, done, failure_status, form_errors, invalid_fields
from huiyuan.console.web import ConsoleRoute, is_htmx, render
from huiyuan.kit.errors import AppError
from huiyuan.members import service as members
from huiyuan.paid import plans, service, views
from huiyuan.paid.models import PlanLevel
from huiyuan.paid.schemas import CategoryIn, LevelIn

router = APIRouter(route_class=ConsoleRoute, include_in_schema=False)

Reader = Annotated[Console, requires("paid:read")]
Configurer = Annotated[Console, requires("paid:configure")]

VALIDITY_UNITS = ("month", "day")
BENEFIT_PERIODS = ("month", "week")
BENEFITS_EXAMPLE = '[{"kind": "points", "point_type": "points", "amount": 500}]'


def level_input(field: str) -> str:
    """The form input that shows an error of ``field`` (the service names fields of ``LevelIn``)."""
    parts = field.split(".")
    if parts[0] == "validity":
        return "validity_unit" if parts[1:2] == ["unit"] else "validity_count"
    if parts[0] == "benefits" and len(parts) > 1:
        if parts[1] == "one_time":
            return "one_time"
        if parts[1] == "periodic":
            return "periodic_period" if parts[2:3] == ["period"] else "periodic"
        return parts[1]  # points_multiplier
    return parts[0]


# -- the plans page --------------------------------------------------------------------------------


def _paid_page(
    request: Request,
    console: Console,
    *,
    category_errors: list[dict[str, Any]] | None = None,
    category_form: dict[str, str] | None = None,
    level_errors: list[dict[str, Any]] | None = None,
    level_form: dict[str, str] | None = None,
    status: int = 200,
    fragment: str | None = None,
) -> Response:
    has_brand = console.brand_id is not None
    categories = plans.list_categories(console.session) if has_brand else []
    context = {
        "has_brand": has_brand,
        "categories": categories,
        "category_names": {c.id: c.name for c in categories},
        "levels": [views.level_out(lv) for lv in plans.list_levels(console.session, category_id=None)]
        if has_brand
        else [],
        "can_configure": console.can("paid:configure"),
        "category_errors": category_errors or [],
        "category_error_fields": invalid_fields(category_errors or []),
        "category_form": category_form or {},
        "errors": level_errors or [],
        "error_fields": invalid_fields(level_errors or [], level_input),
        "form": level_form
        or {
            "validity_unit": "month",
            "validity_count": "12",
            "cooling_off_days": "7",
            "points_multiplier": "1",
            "one_time": BENEFITS_EXAMPLE,
        },
        "validity_units": VALIDITY_UNITS,
        "benefit_periods": BENEFIT_PERIODS,
    }
    return render(request, fragment or "paid_plans.html", context, status=status)


@router.get("/console/paid")
def paid_page(request: Request, console: Reader) -> Response:
    return _paid_page(request, console)


@router.post("/console/paid/categories")
def create_category(
    request: Request,
    console: Configurer,
    code: Annotated[str, Form(max_length=40)] = "",
    name: Annotated[str, Form(max_length=120)] = "",
    customer_group: Annotated[str, Form(max_length=40)] = "",
    description: Annotated[str, Form(max_length=500)] = "",
) -> Response:
    form = {k: v for k, v in locals().items() if isinstance(v, str)}
    try:
        data = CategoryIn.model_validate(
            {
                "code": code.strip(),
                "name": name,
                "customer_group": customer_group,
                "description": description.strip() or None,
            }
        )
        plans.create_category(console.session, actor=console.principal, data=data)
    except (ValidationError, AppError) as exc:
        console.session.rollback()
        return _paid_page(
            request,
            console,
            category_errors=form_errors(exc),
            category_form=form,
            status=failure_status(exc),
            fragment="paid_category_form.html" if is_htmx(request) else None,
        )
    return done(request, "/console/paid")


@router.post("/console/paid/levels")
def create_level(
    request: Request,
    console: Configurer,
    category_id: Annotated[str, Form(max_length=20)] = "",
    code: Annotated[str, Form(max_length=40)] = "",
    name: Annotated[str, Form(max_length=120)] = "",
    rank: Annotated[str, Form(max_length=5)] = "",
    price: Annotated[str, Form(max_length=20)] = "",
    validity_unit: Annotated[str, Form(max_length=8)] = "month",
    validity_count: Annotated[str, Form(max_length=5)] = "",
    cooling_off_days: Annotated[str, Form(max_length=5)] = "",
    points_multiplier: Annotated[str, Form(max_length=10)] = "",
    one_time: Annotated[str, Form(max_length=10_000)] = "",
    periodic_period: Annotated[str, Form(max_length=8)] = "",
    periodic: Annotated[str, Form(max_length=10_000)] = "",
) -> Response:
    form = {k: v for k, v in locals().items() if isinstance(v, str)}
    try:
        docs = JsonFields()
        one_time_specs = docs.parse(one_time, "benefits.one_time", shape=list, empty=[])
        periodic_specs = docs.parse(periodic, "benefits.periodic.benefits", shape=list, empty=[])
        docs.check()
        benefits: dict[str, Any] = {
            "one_time": one_time_specs,
            "points_multiplier": points_multiplier.strip() or "1",
        }
        if periodic_period or periodic_specs:
            benefits["periodic"] = {"period": periodic_period, "benefits": periodic_specs}
        data = LevelIn.model_validate(
            {
                "category_id": category_id.strip(),
                "code": code.strip(),
                "name": name,
                "rank": rank.strip(),
                "price": price.strip(),
                "validity": {"unit": validity_unit, "count": validity_count.strip()},
                "cooling_off_days": cooling_off_days.strip() or 7,
                "benefits": benefits,
            }
        )
        plans.create_level(console.session, actor=console.principal, data=data)
    except (ValidationError, AppError) as exc:
        console.session.rollback()
        return _paid_page(
            request,
            console,
            level_errors=form_errors(exc),
            level_form=form,
            status=failure_status(exc),
            fragment="paid_level_form.html" if is_htmx(request) else None,
        )
    return done(request, "/console/paid")


@router.get("/console/paid/levels/{level_id}")
def level_page(request: Request, level_id: int, console: Reader) -> Response:
    level: PlanLevel = plans.get_level(console.session, level_id)  # 404 page for other brands' levels
    category = plans.get_category(console.session, level.category_id)
    return render(request, "paid_level.html", {"level": views.level_out(level), "category": category})


# -- a member's paid plan (part of the loyalty section) --------------------------------------------


@router.get("/console/members/{member_id}/paid")
def member_paid(request: Request, member_id: int, console: Reader) -> Response:
    session = console.session
    member = members.get_member(session, member_id)  # 404 page for other brands' members
    subscriptions, events = service.member_history(session, member.id)
    paid = views.member_paid_out(session, subscriptions, events)
    current = paid.current
    category = plans.get_category(session, current.category_id) if current is not None else None
    context = {"member": member, "current": current, "category": category}
    template = "paid_member_section.html" if is_htmx(request) else "paid_member.html"
    return render(request, template, context)
