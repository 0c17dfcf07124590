"""Retries that race: the same order (or batch) sent by several writers at once lands once, and every
writer gets the first result back. On PostgreSQL the losers meet the unique constraint and fall back
to the replay path; on SQLite ``BEGIN IMMEDIATE`` queues them."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from sqlalchemy import func, select

from huiyuan.kit.scope import system_for_brand
from huiyuan.orders import service
from huiyuan.orders.bulk import record_orders_bulk
from huiyuan.orders.models import Order, OrderItem
from huiyuan.orders.repository import orders_for_member
from huiyuan.orders.schemas import OrderIn
from huiyuan.outbox.models import OutboxEvent
from tests.conftest import World
from tests.factories import enroll
from tests.orders.helpers import order_body


def _race(n: int, work: Callable[[], Any]) -> list[Any]:
    barrier = threading.Barrier(n)
    out: list[Any] = []
    lock = threading.Lock()

    def run() -> None:
        barrier.wait()
        try:
            result = work()
        except Exception as exc:  # collected and asserted on below
            result = exc
        with lock:
            out.append(result)

    threads = [threading.Thread(target=run) for _ in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return out


def test_same_order_from_racing_writers_lands_once(world: World) -> None:
    a = world.brands[0]
    data = OrderIn.model_validate(order_body())

    def record() -> tuple[int, bool]:
        with world.db.unit_of_work() as s:
            order, created = service.record_order(s, actor=system_for_brand(a.id), data=data)
            return order.id, created

    results = _race(4, record)
    assert not [r for r in results if isinstance(r, Exception)], results
    assert len({oid for oid, _ in results}) == 1
    assert sorted(created for _, created in results) == [False, False, False, True]
    with world.db.unit_of_work() as s:
        assert s.scalar(select(func.count()).select_from(Order)) == 1
        assert s.scalar(select(func.count()).select_from(OrderItem)) == 2
        assert (
            s.scalar(select(func.count()).select_from(OutboxEvent).where(OutboxEvent.type == "order.paid"))
            == 1
        )


def test_same_batch_from_racing_importers_lands_once(world: World) -> None:
    a = world.brands[0]
    orders = [OrderIn.model_validate(order_body(f"R-{n}")) for n in range(40)]

    def run() -> list[str]:
        with world.db.unit_of_work() as s:
            return [r.status for r in record_orders_bulk(s, actor=system_for_brand(a.id), orders=orders)]

    results = _race(2, run)
    assert not [r for r in results if isinstance(r, Exception)], results
    # Each order was created by exactly one importer; the other saw it as a duplicate.
    for statuses in zip(*results, strict=True):
        assert sorted(statuses) == ["created", "duplicate"]
    with world.db.unit_of_work() as s:
        assert s.scalar(select(func.count()).select_from(Order)) == 40
        assert (
            s.scalar(select(func.count()).select_from(OutboxEvent).where(OutboxEvent.type == "order.paid"))
            == 40
        )


def test_orders_for_member_newest_first(client, world: World) -> None:
    a, b = world.brands
    m = enroll(client, a.headers)
    for n, day in enumerate(("12", "15", "13")):
        body = order_body(f"M-{n}", member_id=m["id"], paid_at=f"2026-03-{day}T00:00:00Z")
        assert client.post("/api/v1/orders", json=body, headers=a.headers).status_code == 201
    with world.db.unit_of_work(system_for_brand(a.id).scope) as s:
        assert [o.order_number for o in orders_for_member(s, m["id"], limit=2)] == ["M-1", "M-2"]
    with world.db.unit_of_work(system_for_brand(b.id).scope) as s:
        assert orders_for_member(s, m["id"]) == []
    assert client.get("/openapi.json").status_code == 200
