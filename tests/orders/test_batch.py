from __future__ import annotations

import time

from sqlalchemy import event, func, select

from huiyuan.audit.models import AuditEntry
from huiyuan.kit.scope import system_for_brand
from huiyuan.orders.bulk import record_orders_bulk
from huiyuan.orders.models import Order, OrderItem, OrderPayment
from huiyuan.orders.schemas import OrderIn
from huiyuan.outbox.models import OutboxEvent
from tests.conftest import World
from tests.factories import enroll
from tests.orders.helpers import order_body


def test_batch_lands_good_orders_and_reports_bad_ones(client, world: World) -> None:
    a = world.brands[0]
    m = enroll(client, a.headers)
    assert client.post("/api/v1/orders", json=order_body("OLD"), headers=a.headers).status_code == 201
    bad_totals = order_body("B-2", payments=[{"method": "cash", "amount": "1.00"}])
    orders = [
        order_body("B-1", member_id=m["id"]),
        bad_totals,
        {"order_number": "B-3", "channel": "fax"},  # not even an order
        order_body("OLD"),  # replay of an order recorded earlier
        order_body("OLD", channel="web"),  # the earlier number with another body
        order_body("B-1", member_id=m["id"]),  # repeated inside the batch
        order_body("B-4", store="nowhere"),
        order_body("B-5", member_number=m["member_number"]),
    ]
    r = client.post("/api/v1/orders/batch", json={"orders": orders}, headers=a.headers)
    assert r.status_code == 200, r.text
    body = r.json()
    statuses = [(x["order_number"], x["status"]) for x in body["results"]]
    assert statuses == [
        ("B-1", "created"),
        ("B-2", "error"),
        ("B-3", "error"),
        ("OLD", "duplicate"),
        ("OLD", "error"),
        ("B-1", "duplicate"),
        ("B-4", "error"),
        ("B-5", "created"),
    ]
    assert (body["created"], body["duplicates"], body["errors"]) == (2, 2, 4)
    res = body["results"]
    assert res[5]["id"] == res[0]["id"]
    assert res[1]["problem"]["errors"][0]["code"] == "totals-mismatch"
    assert {e["field"] for e in res[2]["problem"]["errors"]} >= {"channel", "items"}
    assert res[4]["problem"]["code"] == "idempotency-key-reused"
    assert res[6]["problem"]["errors"][0]["field"] == "store_code"

    got = client.get(f"/api/v1/orders/{res[7]['id']}", headers=a.headers).json()
    assert got["member_id"] == m["id"] and got["paid_amount"] == "180.00" and len(got["items"]) == 2
    with world.db.unit_of_work() as s:
        numbers = sorted(s.scalars(select(Order.order_number)))
        assert numbers == ["B-1", "B-5", "OLD"]
        assert s.scalar(select(func.count()).select_from(OrderItem)) == 6
        assert s.scalar(select(func.count()).select_from(OrderPayment)) == 6
        paid = s.scalars(
            select(OutboxEvent).where(OutboxEvent.type == "order.paid").order_by(OutboxEvent.id)
        ).all()
        assert [e.payload["order_number"] for e in paid] == ["OLD", "B-1", "B-5"]
        assert paid[1].payload["member_id"] == m["id"] and paid[1].payload["paid_amount"] == "180.00"
        batch_audit = s.scalars(select(AuditEntry).where(AuditEntry.action == "orders.imported")).one()
        assert batch_audit.changes["created"] == [None, 2] and batch_audit.changes["error"] == [None, 4]


def test_batch_limits(client, world: World) -> None:
    a = world.brands[0]
    many = [order_body(f"L-{n}") for n in range(1001)]
    r = client.post("/api/v1/orders/batch", json={"orders": many}, headers=a.headers)
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "orders"
    r = client.post("/api/v1/orders/batch", json={"orders": many[:3]}, headers=world.platform_headers)
    assert r.status_code == 422 and r.json()["code"] == "brand-required"


def test_bulk_is_a_few_statements_and_fast(world: World) -> None:
    a = world.brands[0]
    orders = [OrderIn.model_validate(order_body(f"F-{n}")) for n in range(300)]
    statements: list[str] = []

    def count(*args: object) -> None:
        statements.append(str(args[2]))

    event.listen(world.db.engine, "before_cursor_execute", count)
    try:
        started = time.perf_counter()
        with world.db.unit_of_work() as s:
            results = record_orders_bulk(s, actor=system_for_brand(a.id), orders=orders)
        elapsed = time.perf_counter() - started
    finally:
        event.remove(world.db.engine, "before_cursor_execute", count)
    assert {r.status for r in results} == {"created"}
    # Four look-ups, one batched insert per table, the audit row: not one statement per order.
    assert len(statements) < 25, len(statements)
    # Generous bound for a shared 2-core machine; the benchmark measures the real rate.
    assert elapsed < 5, elapsed
    with world.db.unit_of_work() as s:
        assert s.scalar(select(func.count()).select_from(Order)) == 300
        assert (
            s.scalar(select(func.count()).select_from(OutboxEvent).where(OutboxEvent.type == "order.paid"))
            == 300
        )
    # A second run is all duplicates and writes nothing but its audit row.
    statements.clear()
    event.listen(world.db.engine, "before_cursor_execute", count)
    try:
        with world.db.unit_of_work() as s:
            again = record_orders_bulk(s, actor=system_for_brand(a.id), orders=orders[:10])
    finally:
        event.remove(world.db.engine, "before_cursor_execute", count)
    assert {r.status for r in again} == {"duplicate"}
    inserts = [q.split("(")[0].strip() for q in statements if q.startswith("INSERT")]
    assert inserts == ["INSERT INTO audit_log"], statements
