"""Coupons follow the orders they were locked for.

* ``order.paid`` — a held coupon lock whose ``order_ref`` is the order's number is redeemed (the
  checkout may also call ``redeem`` itself; whichever comes second finds it done).
* ``order.refunded`` with ``full`` — the redeemed lock of that order is returned: cost shares
  reversed, still-valid coupons back to the member (``checkout.return_lock``). Partial refunds keep
  the coupons used.

Both are idempotent by the lock's state, as the dispatcher's retries require.

The ``order.paid`` events of a dispatch batch are looked at together by a preparer
(``find_held_locks``): one query for the batch tells which order numbers have no held lock (most
orders use no coupon), and their handler returns at once. An order with a held lock is redeemed by
its own handler, as without the preparer. The answer is kept for the session: no handler creates a
held lock (checkout does, in its own request).
"""

from __future__ import annotations

from sqlalchemy.orm import Session

from huiyuan.coupons import checkout
from huiyuan.kit.scope import system_for_brand
from huiyuan.outbox.handlers import on, prepare
from huiyuan.outbox.models import OutboxEvent

# (brand, order number) of this session's dispatch batch with no held lock (``find_held_locks``).
_NOT_HELD = "huiyuan.coupons.orders_without_held_lock"


@prepare("order.paid", lookahead=True)
def find_held_locks(session: Session, events: list[OutboxEvent]) -> None:
    """Tell, for one brand's batch of paid orders in one query, which order numbers have no held
    lock; their ``redeem_on_payment`` then returns without looking."""
    brand_id = events[0].brand_id
    if brand_id is None:
        return
    numbers = [str(n) for e in events if (n := (e.payload or {}).get("order_number"))]
    held = checkout.order_refs_with_lock(session, numbers, "held")
    session.info.setdefault(_NOT_HELD, set()).update((brand_id, n) for n in numbers if n not in held)


@on("order.paid")
def redeem_on_payment(session: Session, event: OutboxEvent) -> None:
    number = event.payload.get("order_number")
    if event.brand_id is None or not number:
        return
    if (event.brand_id, str(number)) in session.info.get(_NOT_HELD, ()):
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
