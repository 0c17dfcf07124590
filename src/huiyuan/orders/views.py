"""Shaping catalogue rows, orders and refunds into response models, with the derived values
(units, discount rate). Read-only: loads what a response needs through the repository, changes nothing."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from sqlalchemy.orm import Session

from huiyuan.orders.models import Category, Order, Product, Refund
from huiyuan.orders.planning import OrderPlan
from huiyuan.orders.repository import OrderRepository
from huiyuan.orders.schemas import (
    AnonymousIdentifierOut,
    CategoryOut,
    DiscountOut,
    OrderItemOut,
    OrderOut,
    OrderSummary,
    PaymentOut,
    ProductOut,
    RefundItemOut,
    RefundOut,
)
from huiyuan.orders.service import RecordedOrder

RATE_PLACES = Decimal("0.0001")


def discount_rate(list_amount: Decimal, deal_amount: Decimal) -> Decimal:
    """1 − deal/list rounded to 4 places; 0 when nothing had a list price."""
    if list_amount <= 0:
        return Decimal("0.0000")
    return (1 - deal_amount / list_amount).quantize(RATE_PLACES)


def category_out(c: Category) -> CategoryOut:
    return CategoryOut(id=c.id, parent_id=c.parent_id, code=c.code, name=c.name, path=c.path, level=c.level)


def product_out(p: Product) -> ProductOut:
    return ProductOut(
        id=p.id,
        sku=p.sku,
        name=p.name,
        product_brand=p.product_brand,
        category_id=p.category_id,
        list_price=p.list_price,
        status=p.status,
        created_at=p.created_at,
        updated_at=p.updated_at,
    )


def _summary_fields(o: Order) -> dict[str, Any]:
    return {
        "id": o.id,
        "order_number": o.order_number,
        "member_id": o.member_id,
        "store_id": o.store_id,
        "channel": o.channel,
        "status": o.status,
        "currency": o.currency,
        "list_amount": o.list_amount,
        "deal_amount": o.deal_amount,
        "discount_amount": o.discount_amount,
        "paid_amount": o.paid_amount,
        "refunded_amount": o.refunded_amount,
        "units": o.units,
        "discount_rate": discount_rate(o.list_amount, o.deal_amount),
        "paid_at": o.paid_at,
        "created_at": o.created_at,
    }


def order_summary(o: Order) -> OrderSummary:
    return OrderSummary(**_summary_fields(o))


def refunds_out(session: Session, refunds: list[Refund]) -> list[RefundOut]:
    repo = OrderRepository(session)
    refund_items = repo.refund_items([r.id for r in refunds])
    lines = repo.items_by_id({ri.order_item_id for ris in refund_items.values() for ri in ris})
    return [
        RefundOut(
            id=r.id,
            refund_number=r.refund_number,
            order_id=r.order_id,
            amount=r.amount,
            reason=r.reason,
            full=r.full,
            refunded_at=r.refunded_at,
            items=[
                RefundItemOut(
                    order_item_id=ri.order_item_id,
                    line_no=lines[ri.order_item_id].line_no,
                    sku=lines[ri.order_item_id].sku,
                    quantity=ri.quantity,
                    amount=ri.amount,
                )
                for ri in refund_items.get(r.id, [])
            ],
        )
        for r in refunds
    ]


def recorded_order_out(session: Session, result: RecordedOrder) -> OrderOut:
    """The response to ``service.record``: a new order is rendered from the rows just written (what a
    read-back would return, without the queries); a replay reads the first order."""
    if result.plan is not None:
        return _written_order_out(result.plan)
    return order_out(session, result.order)


def order_out(session: Session, o: Order) -> OrderOut:
    """The order with its lines, discounts, payments and refunds."""
    repo = OrderRepository(session)
    return OrderOut(
        **_summary_fields(o),
        anonymous_identifiers=[
            AnonymousIdentifierOut(type=i["type"], masked=i.get("masked") or "")
            for i in (o.anonymous_identifiers or [])
        ],
        items=[
            OrderItemOut(
                id=i.id,
                line_no=i.line_no,
                product_id=i.product_id,
                sku=i.sku,
                name=i.name,
                category_id=i.category_id,
                quantity=i.quantity,
                list_price=i.list_price,
                deal_price=i.deal_price,
                amount=i.amount,
                paid_amount=i.paid_amount,
                refunded_quantity=i.refunded_quantity,
                refunded_amount=i.refunded_amount,
            )
            for i in repo.items(o.id)
        ],
        discounts=[
            DiscountOut(kind=d.kind, code=d.code, amount=d.amount, funded_by=d.funded_by)
            for d in repo.discounts(o.id)
        ],
        payments=[
            PaymentOut(method=p.method, amount=p.amount, reference=p.reference) for p in repo.payments(o.id)
        ],
        refunds=refunds_out(session, repo.refunds(o.id)),
    )


def _written_order_out(plan: OrderPlan) -> OrderOut:
    # A new order has no refunds; its lines carry the ids ``write_plans(item_ids=True)`` stored.
    o = plan.order
    return OrderOut(
        **{f: o[f] for f in _ORDER_COLUMNS},
        discount_rate=discount_rate(o["list_amount"], o["deal_amount"]),
        anonymous_identifiers=[
            AnonymousIdentifierOut(type=i["type"], masked=i.get("masked") or "")
            for i in plan.order["anonymous_identifiers"]
        ],
        items=[OrderItemOut(**{f: i[f] for f in _ITEM_FIELDS}) for i in plan.items],
        discounts=[
            DiscountOut(kind=d["kind"], code=d["code"], amount=d["amount"], funded_by=d["funded_by"])
            for d in plan.discounts
        ],
        payments=[
            PaymentOut(method=p["method"], amount=p["amount"], reference=p["reference"])
            for p in plan.payments
        ],
        refunds=[],
    )


_ITEM_FIELDS = tuple(OrderItemOut.model_fields)
_ORDER_COLUMNS = tuple(f for f in OrderSummary.model_fields if f != "discount_rate")
