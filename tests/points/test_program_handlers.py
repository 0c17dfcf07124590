"""Programme points earned automatically from paid orders (once, taken back pro rata by refunds), and
the memory of brands outside every programme: their paid orders cost no query once known."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import event as sa_event
from sqlalchemy import select

from huiyuan.kit.clock import FrozenClock
from huiyuan.kit.db import Database
from huiyuan.kit.scope import Scope
from huiyuan.outbox.dispatcher import dispatch_pending
from huiyuan.outbox.models import OutboxEvent
from huiyuan.points import program_admin, program_cache, program_handlers
from huiyuan.points.program_models import PointProgramOperation
from huiyuan.points.program_schemas import ParticipationIn, ParticipationUpdate
from tests.factories import make_key
from tests.orders.helpers import order_body
from tests.points.helpers import check_ledger
from tests.points.program_helpers import Alliance, api_headers, make_alliance

pytestmark = pytest.mark.usefixtures("fresh_programme_memory")


# -- automatic earning from paid orders -----------------------------------------------------------


def test_paid_orders_earn_programme_points_once_and_refunds_take_them_back(client: Any, db: Database) -> None:
    al = make_alliance(db)
    bb = api_headers(make_key(db, al.b))
    linked = al.enroll(al.b, "linked")
    unlinked = al.enroll(al.b, "not linked", phone="13700137000")
    al.link(al.b, linked)
    orders = {}
    for number, member in (("B-1", linked), ("B-2", unlinked)):
        body = order_body(number, store=f"{al.codes[al.b]}-s1", member_id=member)
        made = client.post("/api/v1/orders", json=body, headers=bb)
        assert made.status_code == 201, made.text
        orders[number] = made.json()["id"]

    dispatch_pending(db)
    dispatch_pending(db)  # nothing left to do: the event was handled once

    view = al.points(al.b, linked)
    assert view.balance.available == 360  # 180.00 paid × 2 points per yuan
    assert [(e.kind, e.amount, e.order_ref) for e in view.entries] == [("earn", 360, "B-1")]
    assert view.entries[0].key.startswith("order#")
    with db.unit_of_work(write=False) as s:
        ops = list(s.scalars(select(PointProgramOperation)))
        assert [(op.kind, op.member_id, op.paid_amount) for op in ops] == [
            ("earn", linked, Decimal("180.00"))
        ]

    # Refund one T-shirt (72.00 of 180.00): 40 % of the programme lot is taken back, then the rest.
    url = f"/api/v1/orders/{orders['B-1']}/refunds"
    one = {"refund_number": "RF-1", "items": [{"line_no": 1, "quantity": 1}]}
    assert client.post(url, json=one, headers=bb).status_code == 201
    dispatch_pending(db)
    dispatch_pending(db)
    assert al.points(al.b, linked).balance.available == 216  # 360 − 144
    assert client.post(url, json={"refund_number": "RF-2", "full": True}, headers=bb).status_code == 201
    dispatch_pending(db)
    view = al.points(al.b, linked)
    assert view.balance.available == 0
    assert [(e.kind, e.amount) for e in view.entries] == [("reverse", -216), ("reverse", -144), ("earn", 360)]
    check_ledger(db, al.host)


# -- automatic earning: brands outside every programme --------------------------------------------


def _paid(brand_id: int, member_id: int, order_id: int) -> OutboxEvent:
    return OutboxEvent(
        brand_id=brand_id,
        type="order.paid",
        aggregate_type="order",
        aggregate_id=str(order_id),
        payload={"member_id": member_id, "order_id": order_id, "paid_amount": "10.00", "order_number": "N"},
    )


def _queries(al: Alliance, brand_id: int, event: OutboxEvent) -> int:
    """SQL statements the order.paid handler runs for the event."""
    seen: list[str] = []

    def count(*args: Any) -> None:
        seen.append(args[2])

    engine = al.db.engine
    sa_event.listen(engine, "before_cursor_execute", count)
    try:
        with al.db.unit_of_work(Scope(brand_id=brand_id)) as s:
            program_handlers.earn_programme_points_on_order_paid(s, event)
    finally:
        sa_event.remove(engine, "before_cursor_execute", count)
    return len([q for q in seen if "point_program" in q])


def test_paid_orders_of_brands_in_no_programme_cost_no_query_once_known(
    al: Alliance, clock: FrozenClock
) -> None:
    outsider = al.enroll(al.d, "小明@D")
    assert _queries(al, al.d, _paid(al.d, outsider, 1)) == 1  # learnt once …
    assert _queries(al, al.d, _paid(al.d, outsider, 2)) == 0  # … then answered from memory
    clock.advance(seconds=program_cache.TTL_SECONDS + 1)
    assert _queries(al, al.d, _paid(al.d, outsider, 3)) == 1  # the memory expires

    # D joins (in this process): its very next paid order earns, with no wait for the memory to expire.
    assert _queries(al, al.d, _paid(al.d, outsider, 4)) == 0
    al.run(
        None,
        program_admin.add_brand,
        code=al.code,
        data=ParticipationIn(brand=al.codes[al.d], earn_rate=Decimal(1)),
    )
    al.link(al.d, outsider)
    assert _queries(al, al.d, _paid(al.d, outsider, 5)) > 0
    assert al.points(al.d, outsider).balance.available == 10
    # A brand in a programme is looked up each time (nothing stale is earned after it leaves).
    assert _queries(al, al.d, _paid(al.d, outsider, 6)) > 0
    al.run(
        None,
        program_admin.update_participation,
        code=al.code,
        brand_code=al.codes[al.d],
        data=ParticipationUpdate(status="left"),
    )
    with al.db.unit_of_work(Scope(brand_id=al.d)) as s:
        program_handlers.earn_programme_points_on_order_paid(s, _paid(al.d, outsider, 7))
    assert al.points(al.d, outsider).balance.available == 20
