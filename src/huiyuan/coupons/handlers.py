"""Coupons follow the orders they were locked for.

* ``order.paid`` — a held coupon lock whose ``order_ref`` is the order's number is redeemed (the
  checkout may also call ``redeem`` itself; whichever comes second finds it done).
* ``order.refunded`` with ``full`` — the redeemed lock of that order is returned: cost shares
  reversed, still-valid coupons back to the member (``checkout.return_lock``). Partial refunds keep
  the coupons used.

Both are idempotent by the lock's state, as the dispatcher's retries require.
"""

from __future__ import annotations

from sqlalchemy.orm import Session

from huiyuan.coupons import checkout
from huiyuan.kit.scope import system_for_brand
from huiyuan.outbox.handlers import on
from huiyuan.outbox.models import OutboxEvent


@on("order.paid")
def redeem_on_payment(session: Session, event: OutboxEvent) -> None:
    number = event.payload.get("order_number")
    if event.brand_id is None or not number:
        return
    held = checkout.lock_by_order(session, str(number), "held")
    if held is None or held.member_id != event.payload.get("member_id"):
        return
    checkout.redeem(
        session, actor=system_for_brand(event.brand_id), lock_id=held.id, payment_reference=str(number)
    )


@on("order.refunded")
def return_on_full_refund(session: Session, event: OutboxEvent) -> None:
    if event.brand_id is None or not event.payload.get("full"):
        return
    number = _order_number(session, int(event.payload["order_id"]))
    redeemed = checkout.lock_by_order(session, number, "redeemed") if number else None
    if redeemed is None:
        return
    checkout.return_lock(
        session,
        actor=system_for_brand(event.brand_id),
        lock_id=redeemed.id,
        reason=f"order refunded ({event.payload.get('refund_number')})",
    )


def _order_number(session: Session, order_id: int) -> str | None:
    from huiyuan.orders.models import Order

    order = session.get(Order, order_id)
    return order.order_number if order is not None else None
