"""Locks redeemed from a dispatch batch (the ``order.paid`` preparer ``find_held_locks``) end as one
event at a time without it, through a failing event, a failing preparer and events dispatched
again."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from huiyuan.coupons import handlers as coupon_handlers
from huiyuan.coupons.models import Coupon, CouponLock, CouponShare
from huiyuan.kit.clock import utcnow
from huiyuan.kit.db import Database
from huiyuan.kit.scope import system_for_brand
from huiyuan.outbox import handlers as outbox_handlers
from huiyuan.outbox.dispatcher import dispatch_pending
from huiyuan.outbox.models import OutboxEvent
from tests.conftest import BrandFixture, World
from tests.coupons.test_coupons_api import template
from tests.factories import enroll
from tests.orders.helpers import order_body

# (order number, index of the member holding a lock for it or None, index of the member who pays)
ORDERS: list[tuple[str, int | None, int]] = [
    ("POS-0", 0, 0),
    ("POS-1", None, 1),
    ("POS-2", 1, 1),  # fails once in the batch run
    ("POS-3", 2, 0),  # paid by another member: the lock stays held
    ("POS-4", None, 2),
    ("POS-5", 3, 3),
]
FAILING = "POS-2"
CART = {"lines": [{"line_id": "1", "sku": "TS-1", "unit_price": "80.00", "quantity": 2}], "scene": "in_store"}


def _checkout(client: Any, brand: BrandFixture) -> None:
    """Issue each of four members a coupon, lock the coupons for their orders and pay the orders."""
    h = brand.headers
    t = template(
        client,
        h,
        rules={
            "discount": {"kind": "amount_off", "amount": "20.00"},
            "validity": {"kind": "relative", "days": 3650},
        },
    )
    members = [enroll(client, h)["id"] for _ in range(4)]
    for n, member_id in enumerate(members):
        r = client.post(
            "/api/v1/coupons/issue",
            json={"template_id": t["id"], "member_id": member_id, "idempotency_key": f"iss-000{n}"},
            headers=h,
        )
        assert r.status_code == 201, r.text
    for number, holder, _ in ORDERS:
        if holder is None:
            continue
        r = client.post(
            "/api/v1/coupons/locks",
            json={
                "member_id": members[holder],
                "order_ref": number,
                "cart": CART,
                "idempotency_key": f"lock-{number}",
            },
            headers=h,
        )
        assert r.status_code in (200, 201), r.text
        assert r.json()["state"] == "held"
    for number, _, payer in ORDERS:
        body = order_body(number, store=f"{brand.code}-s1", member_id=members[payer])
        r = client.post("/api/v1/orders", json=body, headers=h)
        assert r.status_code == 201, r.text


def _coupons(db: Database, brand_id: int) -> dict[str, Any]:
    """What the brand's locks, coupons and cost shares hold, without ids or times."""
    with db.unit_of_work(system_for_brand(brand_id).scope, write=False) as s:
        locks = sorted(
            (lock.order_ref, lock.state, lock.payment_reference, lock.redeemed_at is not None)
            for lock in s.scalars(select(CouponLock))
        )
        coupons = sorted(c.status for c in s.scalars(select(Coupon)))
        shares = s.scalar(select(func.count()).select_from(CouponShare))
    return {"locks": locks, "coupons": coupons, "shares": shares}


def _fail_once(session: Session, event: OutboxEvent) -> None:
    if event.payload.get("order_number") == FAILING:
        raise RuntimeError("refused once")


def _retry(db: Database) -> None:
    """An hour later: the failed event is retried (with what the batch emitted meanwhile)."""
    later = utcnow() + timedelta(hours=1)
    failed = 0
    while (stats := dispatch_pending(db, batch=1, now=later)).taken:
        failed += stats.failed
    assert failed == 0


def _dispatch_again(db: Database, brand_id: int) -> None:
    """Every paid order of the brand dispatched once more (a retry after a crash before commit)."""
    with db.unit_of_work() as s:
        s.execute(
            update(OutboxEvent)
            .where(OutboxEvent.brand_id == brand_id, OutboxEvent.type == "order.paid")
            .values(dispatched_at=None, next_attempt_at=None)
        )
    assert dispatch_pending(db, batch=500).failed == 0


def _one_at_a_time(
    client: Any, world: World, brand: BrandFixture, monkeypatch: pytest.MonkeyPatch, *, fail: bool
) -> None:
    """The reference: the coupons preparer left out, one event a batch; with ``fail``, the
    ``FAILING`` order's event fails once and is retried after the others, as in the batch run."""
    with monkeypatch.context() as m:
        outbox_handlers.load_handler_modules()
        kept = [(t, f) for t, f in outbox_handlers._preparers if f is not coupon_handlers.find_held_locks]
        m.setattr(outbox_handlers, "_preparers", kept)
        _checkout(client, brand)
        if fail:
            outbox_handlers.subscribe("order.paid", _fail_once)
        try:
            while dispatch_pending(world.db, batch=1).taken:
                pass
        finally:
            outbox_handlers.unsubscribe(_fail_once)
        if fail:
            _retry(world.db)


@pytest.mark.parametrize("trouble", ["failing_event", "failing_preparer"])
def test_a_batch_redeems_locks_as_one_at_a_time(
    client: Any, world: World, monkeypatch: pytest.MonkeyPatch, trouble: str
) -> None:
    alpha, beta = world.brands
    _one_at_a_time(client, world, alpha, monkeypatch, fail=trouble == "failing_event")
    expected = _coupons(world.db, alpha.id)
    assert expected["locks"] == [
        ("POS-0", "redeemed", "POS-0", True),
        ("POS-2", "redeemed", "POS-2", True),
        ("POS-3", "held", None, False),
        ("POS-5", "redeemed", "POS-5", True),
    ]

    _checkout(client, beta)
    with monkeypatch.context() as m:
        if trouble == "failing_event":
            outbox_handlers.subscribe("order.paid", _fail_once)
        else:

            def broken(session: Session, order_refs: Any, state: str) -> set[str]:
                raise RuntimeError("preparer down")

            m.setattr(coupon_handlers.checkout, "order_refs_with_lock", broken)
        try:
            stats = dispatch_pending(world.db, batch=500)
        finally:
            outbox_handlers.unsubscribe(_fail_once)
    assert stats.taken >= len(ORDERS)
    assert stats.failed == (1 if trouble == "failing_event" else 0)
    if trouble == "failing_event":  # the failed order's lock waits for its retry
        assert ("POS-2", "held", None, False) in _coupons(world.db, beta.id)["locks"]
        _retry(world.db)
    assert _coupons(world.db, beta.id) == expected

    _dispatch_again(world.db, beta.id)  # idempotent: a redeemed lock is not redeemed twice
    assert _coupons(world.db, beta.id) == expected


def test_order_refs_with_lock_finds_only_that_state(client: Any, world: World) -> None:
    from huiyuan.coupons.checkout import order_refs_with_lock

    alpha = world.brands[0]
    _checkout(client, alpha)
    while dispatch_pending(world.db, batch=500).taken:
        pass
    refs = [number for number, _, _ in ORDERS] + ["POS-0", "NOPE"]
    with world.db.unit_of_work(system_for_brand(alpha.id).scope, write=False) as s:
        assert order_refs_with_lock(s, refs, "held") == {"POS-3"}
        assert order_refs_with_lock(s, refs, "redeemed") == {"POS-0", "POS-2", "POS-5"}
