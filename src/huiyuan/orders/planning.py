"""Turning an ``OrderIn`` into the rows of an order, checked against the brand's stores, members and
catalogue, and writing many such orders with a handful of statements.

Shared by the single-order verb and the bulk import so both apply exactly the same rules. Everything
the checks need is pre-loaded into a ``Context`` (a few ``IN`` queries per batch, one statement for a
single order), so validating an order costs no database round trip. Must not audit, emit events or
decide idempotency outcomes: the callers in ``service`` and ``bulk`` do that.

Rules (documented for clients in ``OrderIn``):
- a SKU missing from the catalogue is accepted when the line names it (``name``), so tills can sell
  items the catalogue does not know yet; its ``list_price`` defaults to the deal price;
- ``deal_price`` may not exceed ``list_price``; Σ discounts may not exceed Σ deal_price × quantity;
- payments must add up to exactly Σ deal_price × quantity − Σ discounts.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC
from decimal import Decimal
from typing import Any, NamedTuple, cast

from sqlalchemy import Insert, Table, insert
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from huiyuan.kit import pii
from huiyuan.kit.clock import utcnow
from huiyuan.kit.errors import ValidationFailed, field_error
from huiyuan.kit.types import to_money
from huiyuan.orders.models import Order, OrderDiscount, OrderItem, OrderPayment
from huiyuan.orders.repository import CatalogRepository, OrderRepository
from huiyuan.orders.schemas import OrderIn

ZERO = Decimal("0.00")


class ProductRef(NamedTuple):
    """The columns of a catalogue product that an order line uses."""

    id: int
    name: str
    category_id: int | None
    list_price: Decimal


@dataclass
class Context:
    """What the checks of a batch need, loaded once."""

    brand_id: int
    store_ids: dict[str, int] = field(default_factory=dict)
    products: dict[str, ProductRef] = field(default_factory=dict)
    member_ids: set[int] = field(default_factory=set)
    member_numbers: dict[str, int] = field(default_factory=dict)


@dataclass
class OrderPlan:
    """The rows of one valid order, ready to insert (``order_id`` is filled in by ``write_plans``)."""

    data: OrderIn
    request_hash: str
    order: dict[str, Any]
    items: list[dict[str, Any]]
    discounts: list[dict[str, Any]]
    payments: list[dict[str, Any]]


def table(model: type[Any]) -> Table:
    """The Core table of a model: bulk writes skip the ORM's per-row bookkeeping."""
    return cast(Table, model.__table__)


def load_context(session: Session, brand_id: int, orders: Sequence[OrderIn]) -> Context:
    """Pre-load the stores, products and members that ``orders`` refer to (four queries at most)."""
    repo = OrderRepository(session)
    stores = {o.store_code for o in orders if o.store_code}
    skus = {i.sku for o in orders for i in o.items}
    ids = {o.member_id for o in orders if o.member_id is not None}
    numbers = {o.member_number for o in orders if o.member_number}
    return Context(
        brand_id=brand_id,
        store_ids={code: s.id for code, s in repo.stores_by_code(brand_id, stores).items()},
        products={
            sku: ProductRef(*ref)
            for sku, ref in CatalogRepository(session).product_refs_by_sku(brand_id, skus).items()
        },
        member_ids=repo.member_ids(brand_id, ids),
        member_numbers=repo.members_by_number(brand_id, numbers),
    )


def load_single(session: Session, brand_id: int, data: OrderIn) -> tuple[Context, tuple[int, str] | None]:
    """The ``Context`` of one order and the ``(id, request_hash)`` of an order already recorded under
    its number, if any: one statement instead of ``load_context``'s four plus the idempotency look-up."""
    ctx = Context(brand_id=brand_id)
    existing: tuple[int, str] | None = None
    rows = OrderRepository(session).lookup_for_order(
        brand_id,
        order_number=data.order_number,
        skus={i.sku for i in data.items},
        store_code=data.store_code,
        member_id=data.member_id,
        member_number=data.member_number,
    )
    for kind, id_, key, name, category_id, list_price in rows:
        if kind == "product":
            ctx.products[key] = ProductRef(id_, name, category_id, list_price)
        elif kind == "store":
            ctx.store_ids[key] = id_
        elif kind == "member":
            ctx.member_ids.add(id_)
            if key is not None:
                ctx.member_numbers[key] = id_
        else:
            existing = (id_, name)
    return ctx, existing


def fingerprint(body: str) -> str:
    """sha256 of a request's canonical JSON (amounts to the fen and times in UTC by the schemas)."""
    return hashlib.sha256(body.encode()).hexdigest()


def request_hash(data: OrderIn) -> str:
    """Fingerprint of an order request; identifier values enter only as blind indexes (no PII)."""
    body = data.model_dump_json(exclude={"identifiers"})
    for ident in data.identifiers:
        body += f"|{ident.type}:{pii.blind_index(ident.type, ident.value)}"
    return fingerprint(body)


def allocate(total: Decimal, weights: Sequence[Decimal]) -> list[Decimal]:
    """Split ``total`` over lines in proportion to ``weights``, to the fen, summing exactly to ``total``.

    Each share is ``round(total × w / Σw, 2)``; the rounding residue goes to the heaviest line.
    """
    whole = sum(weights, ZERO)
    if whole == 0 or total == 0:
        return [ZERO for _ in weights]
    shares = [to_money(total * w / whole) for w in weights]
    residue = total - sum(shares, ZERO)
    if residue:
        heaviest = max(range(len(weights)), key=lambda i: weights[i])
        shares[heaviest] += residue
    return shares


def build_plan(data: OrderIn, ctx: Context, digest: str | None = None) -> OrderPlan:
    """Check ``data`` against the brand and compute the order's rows; ``ValidationFailed`` lists every
    problem found (with field paths such as ``items.0.deal_price``). Amounts in ``data`` are already
    exact to the fen (the schema quantizes them), so sums and products here stay exact."""
    errors: list[dict[str, Any]] = []
    store_id = None
    if data.store_code:
        store_id = ctx.store_ids.get(data.store_code)
        if store_id is None:
            errors.append(field_error("store_code", "no such store in this brand", "unknown-store"))
    member_id = None
    if data.member_id is not None and data.member_number:
        errors.append(field_error("member_number", "give member_id or member_number, not both", "ambiguous"))
    elif data.member_id is not None:
        member_id = data.member_id if data.member_id in ctx.member_ids else None
        if member_id is None:
            errors.append(field_error("member_id", "no such member in this brand", "unknown-member"))
    elif data.member_number:
        member_id = ctx.member_numbers.get(data.member_number)
        if member_id is None:
            errors.append(field_error("member_number", "no such member in this brand", "unknown-member"))
    if data.identifiers and (data.member_id is not None or data.member_number):
        errors.append(
            field_error(
                "identifiers", "identifiers describe anonymous buyers; omit them for members", "invalid"
            )
        )

    items: list[dict[str, Any]] = []
    for n, line in enumerate(data.items):
        product = ctx.products.get(line.sku)
        if product is None and not line.name:
            errors.append(
                field_error(
                    f"items.{n}.name", "the SKU is not in the catalogue: give the item's name", "unknown-sku"
                )
            )
        deal = line.deal_price
        if line.list_price is not None:
            list_price = line.list_price
        else:
            list_price = product.list_price if product is not None else deal
        if deal > list_price:
            errors.append(
                field_error(
                    f"items.{n}.deal_price", f"exceeds the list price {list_price}", "above-list-price"
                )
            )
        items.append(
            {
                "brand_id": ctx.brand_id,
                "line_no": n + 1,
                "product_id": product.id if product is not None else None,
                "sku": line.sku,
                "name": line.name or (product.name if product is not None else line.sku),
                "category_id": product.category_id if product is not None else None,
                "quantity": line.quantity,
                "list_price": list_price,
                "deal_price": deal,
                "amount": deal * line.quantity,
                "refunded_quantity": 0,
                "refunded_amount": ZERO,
            }
        )

    list_amount = sum((i["list_price"] * i["quantity"] for i in items), ZERO)
    deal_amount = sum((i["amount"] for i in items), ZERO)
    discount_amount = sum((d.amount for d in data.discounts), ZERO)
    paid_amount = deal_amount - discount_amount
    if discount_amount > deal_amount:
        errors.append(
            field_error(
                "discounts", f"discounts {discount_amount} exceed the deal amount {deal_amount}", "too-large"
            )
        )
    paid = sum((p.amount for p in data.payments), ZERO)
    if discount_amount <= deal_amount and paid != paid_amount:
        errors.append(
            field_error(
                "payments",
                f"payments add up to {paid}; expected deal {deal_amount}"
                f" − discounts {discount_amount} = {paid_amount}",
                "totals-mismatch",
            )
        )
    if errors:
        raise ValidationFailed(f"Order {data.order_number} is not valid.", errors=errors)

    now = utcnow()
    for item, share in zip(items, allocate(discount_amount, [i["amount"] for i in items]), strict=True):
        item["paid_amount"] = item["amount"] - share
    anonymous = [
        {"type": i.type, "bidx": pii.blind_index(i.type, i.value), "masked": pii.mask(i.type, i.value)}
        for i in data.identifiers
    ]
    order = {
        "brand_id": ctx.brand_id,
        "order_number": data.order_number,
        "member_id": member_id,
        "anonymous_identifiers": anonymous,
        "store_id": store_id,
        "channel": data.channel,
        "status": "paid",
        "currency": data.currency,
        "list_amount": list_amount,
        "deal_amount": deal_amount,
        "discount_amount": discount_amount,
        "paid_amount": paid_amount,
        "refunded_amount": ZERO,
        "units": sum(i["quantity"] for i in items),
        "paid_at": data.paid_at or now,
        "request_hash": digest or request_hash(data),
        # Set here rather than by the column defaults so the single-order path can answer without
        # reading the row back.
        "created_at": now,
        "updated_at": now,
    }
    discounts = [
        {
            "brand_id": ctx.brand_id,
            "kind": d.kind,
            "code": d.code,
            "amount": d.amount,
            "funded_by": d.funded_by,
        }
        for d in data.discounts
    ]
    payments = [
        {"brand_id": ctx.brand_id, "method": p.method, "amount": p.amount, "reference": p.reference}
        for p in data.payments
    ]
    return OrderPlan(data, order["request_hash"], order, items, discounts, payments)


def _insert_orders_skipping_taken(session: Session) -> Insert:
    # ON CONFLICT DO NOTHING (SQLite and PostgreSQL): a number recorded meanwhile by another
    # transaction is skipped instead of failing the statement, so no savepoint is needed around it.
    dialect = session.get_bind().dialect.name
    stmt = sqlite_insert(table(Order)) if dialect == "sqlite" else pg_insert(table(Order))
    return stmt.on_conflict_do_nothing(index_elements=["brand_id", "order_number"])


def write_plans(
    session: Session, plans: Sequence[OrderPlan], *, item_ids: bool = False, skip_taken: bool = False
) -> list[int]:
    """Insert the orders and their lines, discounts and payments: one executemany per table.
    The plans' order numbers must be distinct. ``item_ids`` also stores each line's new id in its
    row (``"id"``), for a caller that renders the order from its plan. ``skip_taken``: an order whose
    number the brand already has is not written (nor its lines); only written plans get an id and
    only their ids are returned."""
    if not plans:
        return []
    # Rows come back matched by order number (unique within a batch) rather than by position: asking
    # for parameter order makes SQLite fall back to one INSERT per row.
    base = _insert_orders_skipping_taken(session) if skip_taken else insert(table(Order))
    stmt = base.returning(Order.order_number, Order.id)
    # Core statements on the transaction's connection: the session's per-statement machinery (its
    # events, the tenancy hook that leaves INSERTs alone anyway) is skipped; nothing is autoflushed
    # for Core statements either way.
    conn = session.connection()
    by_number = {number: oid for number, oid in conn.execute(stmt, [p.order for p in plans])}
    plans = [p for p in plans if p.order["order_number"] in by_number]
    ids = [by_number[p.order["order_number"]] for p in plans]
    if not plans:
        return []
    items: list[dict[str, Any]] = []
    discounts: list[dict[str, Any]] = []
    payments: list[dict[str, Any]] = []
    for order_id, plan in zip(ids, plans, strict=True):
        plan.order["id"] = order_id
        for rows, into in ((plan.items, items), (plan.discounts, discounts), (plan.payments, payments)):
            for row in rows:
                row["order_id"] = order_id
                into.append(row)
    if item_ids:
        # Matched by (order, line) like the orders above, so SQLite keeps one multi-row INSERT.
        item_stmt = insert(table(OrderItem)).returning(OrderItem.order_id, OrderItem.line_no, OrderItem.id)
        by_line = {(oid, no): iid for oid, no, iid in conn.execute(item_stmt, items)}
        for row in items:
            row["id"] = by_line[(row["order_id"], row["line_no"])]
    else:
        conn.execute(insert(table(OrderItem)), items)
    if discounts:
        conn.execute(insert(table(OrderDiscount)), discounts)
    if payments:
        conn.execute(insert(table(OrderPayment)), payments)
    return ids


def money(value: Decimal) -> str:
    return str(to_money(value))


def paid_event_payload(plan: OrderPlan) -> dict[str, Any]:
    """Payload of ``order.paid``; money as strings so no consumer meets a float."""
    o = plan.order
    return {
        "order_id": o["id"],
        "order_number": o["order_number"],
        "member_id": o["member_id"],
        "store_id": o["store_id"],
        "channel": o["channel"],
        "paid_at": o["paid_at"].astimezone(UTC).isoformat(),
        "deal_amount": money(o["deal_amount"]),
        "discount_amount": money(o["discount_amount"]),
        "paid_amount": money(o["paid_amount"]),
        "units": o["units"],
        "items": [
            {
                "sku": i["sku"],
                "category_id": i["category_id"],
                "quantity": i["quantity"],
                "amount": money(i["amount"]),
            }
            for i in plan.items
        ],
        "payments": [{"method": p["method"], "amount": money(p["amount"])} for p in plan.payments],
    }
