"""Console pages of benefit cards (权益卡, A8): the card products (list with cards sold, a product's
page, create and edit forms with the validation errors shown per field) and a member's cards with
what refunding each now would give back.

Handlers call the benefits services (``cards``, ``card_refunds``) — the same verbs and read models
as ``benefits.api`` — and, for the list of products, the card repository. Forms are parsed only as
far as a browser sends strings: card lines are JSON typed into a text area, the sale window typed
without a zone is read in the brand's time zone. No queries or business rules here.
"""

from __future__ import annotations

import contextlib
import json
from typing import Annotated, Any

from fastapi import APIRouter, Form, Request
from fastapi.responses import Response
from pydantic import ValidationError

from huiyuan.benefits import card_refunds, cards
from huiyuan.benefits.card_repository import CardRepository
from huiyuan.benefits.card_schemas import PRODUCT_EXAMPLE, CardProductIn, CardProductUpdate
from huiyuan.benefits.cards import CardClosed
from huiyuan.console.deps import Console, requires
from huiyuan.console.forms import (
    JsonFields,
    done,
    failure_status,
    invalid_fields,
    local_datetime,
    local_input,
    present,
    problems,
)
from huiyuan.console.web import ConsoleRoute, render
from huiyuan.kit.errors import AppError
from huiyuan.members import identity
from huiyuan.members import service as members

router = APIRouter(route_class=ConsoleRoute, include_in_schema=False)

Reader = Annotated[Console, requires("benefits:read")]
Writer = Annotated[Console, requires("benefits:write")]

PRODUCT_ROWS = 200
LINES_EXAMPLE = json.dumps(PRODUCT_EXAMPLE["lines"][:1], ensure_ascii=False, indent=2)
NEW_PRODUCT = {"validity_months": "12", "activation": "immediate", "status": "active", "lines": LINES_EXAMPLE}


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
