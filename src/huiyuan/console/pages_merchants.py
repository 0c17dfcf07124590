"""Console pages for the brand's merchant registry (商户), beside the point types: the list with a
create form, and a merchant's edit form (name, contact, status) below the same list. Validation
errors show in the form; an HTMX request that fails gets the form fragment back.

Handlers call ``points.merchants`` (the same verbs as the API); forms are parsed here only as far as
a browser sends strings (an empty contact means none). No queries or business rules here.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Form, Request
from fastapi.responses import Response
from pydantic import ValidationError

from huiyuan.console.deps import Console, requires
from huiyuan.console.forms import done, failure_status, form_errors, invalid_fields
from huiyuan.console.web import ConsoleRoute, is_htmx, render
from huiyuan.kit.errors import AppError, NotFound
from huiyuan.points.merchant_models import MERCHANT_STATUSES, Merchant
from huiyuan.points.merchants import (
    FUNDER_PREFIX,
    MerchantIn,
    MerchantUpdate,
    create_merchant,
    get_merchant,
    list_merchants,
    update_merchant,
)

router = APIRouter(route_class=ConsoleRoute, include_in_schema=False)

Reader = Annotated[Console, requires("points:read")]
Writer = Annotated[Console, requires("points:write")]

LIST_PATH = "/console/points/merchants"
PAGE_ROWS = 100


def _edit_form(merchant: Merchant) -> dict[str, str]:
    return {
        "code": merchant.code,
        "name": merchant.name,
        "contact": merchant.contact or "",
        "status": merchant.status,
    }


def _page(
    request: Request,
    console: Console,
    *,
    merchant: Merchant | None = None,
    after: int | None = None,
    errors: list[dict[str, Any]] | None = None,
    form: dict[str, str] | None = None,
    status: int = 200,
    fragment: bool = False,
) -> Response:
    """The list of merchants with the create form, or with ``merchant``'s edit form."""
    rows: list[Merchant] = []
    if console.brand_id is not None and not fragment:
        rows = list_merchants(console.session, status=None, after_id=after, limit=PAGE_ROWS + 1)
    context = {
        "merchants": rows[:PAGE_ROWS],
        "next_after": rows[PAGE_ROWS - 1].id if len(rows) > PAGE_ROWS else None,
        "merchant": merchant,
        "funder_prefix": FUNDER_PREFIX,
        "statuses": MERCHANT_STATUSES,
        "errors": errors or [],
        "error_fields": invalid_fields(errors or []),
        "form": form or (_edit_form(merchant) if merchant is not None else {"status": "active"}),
        "can_write": console.can("points:write"),
    }
    template = "points_merchant_form.html" if fragment else "points_merchants.html"
    return render(request, template, context, status=status)


def _merchant(console: Console, code: str) -> Merchant:
    if console.brand_id is None:  # a platform user who has not chosen a brand edits none
        raise NotFound(f"Merchant '{code}' was not found.")
    return get_merchant(console.session, actor=console.principal, code=code)


@router.get(LIST_PATH)
def merchants_page(request: Request, console: Reader, after: int | None = None) -> Response:
    return _page(request, console, after=after)


@router.post(LIST_PATH)
def create_merchant_form(
    request: Request,
    console: Writer,
    code: Annotated[str, Form(max_length=40)] = "",
    name: Annotated[str, Form(max_length=120)] = "",
    contact: Annotated[str, Form(max_length=250)] = "",
    status: Annotated[str, Form(max_length=16)] = "active",
) -> Response:
    form = {"code": code, "name": name, "contact": contact, "status": status}
    try:
        data = MerchantIn.model_validate(
            {"code": code.strip(), "name": name, "contact": contact.strip() or None, "status": status}
        )
        create_merchant(console.session, actor=console.principal, data=data)
    except (ValidationError, AppError) as exc:
        console.session.rollback()
        return _page(
            request,
            console,
            errors=form_errors(exc),
            form=form,
            status=failure_status(exc),
            fragment=is_htmx(request),
        )
    return done(request, LIST_PATH)


@router.get(LIST_PATH + "/{code}")
def merchant_page(request: Request, code: str, console: Reader) -> Response:
    return _page(request, console, merchant=_merchant(console, code))


@router.post(LIST_PATH + "/{code}")
def update_merchant_form(
    request: Request,
    code: str,
    console: Writer,
    name: Annotated[str, Form(max_length=120)] = "",
    contact: Annotated[str, Form(max_length=250)] = "",
    status: Annotated[str, Form(max_length=16)] = "active",
) -> Response:
    merchant = _merchant(console, code)  # 404 for other brands' merchants
    form = {"code": merchant.code, "name": name, "contact": contact, "status": status}
    try:
        data = MerchantUpdate.model_validate(
            {"name": name, "contact": contact.strip() or None, "status": status}
        )
        update_merchant(console.session, actor=console.principal, code=merchant.code, data=data)
    except (ValidationError, AppError) as exc:
        console.session.rollback()
        return _page(
            request,
            console,
            merchant=_merchant(console, code),
            errors=form_errors(exc),
            form=form,
            status=failure_status(exc),
            fragment=is_htmx(request),
        )
    return done(request, LIST_PATH)
