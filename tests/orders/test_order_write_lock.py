"""``POST /api/v1/orders`` reads and checks an order before its writer transaction begins (on SQLite
the writer lock is held only for the writes), and a number taken between the two is a replay."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import event, func, select

from huiyuan.kit.scope import system_for_brand
from huiyuan.orders import service
from huiyuan.orders.models import Order
from huiyuan.orders.schemas import OrderIn
from huiyuan.outbox.models import OutboxEvent
from tests.conftest import World
from tests.orders.helpers import order_body


@contextmanager
def statements(world: World) -> Iterator[list[str]]:
    seen: list[str] = []

    def count(_conn: object, _cursor: object, statement: str, *_args: object) -> None:
        seen.append(" ".join(statement.split()[:3]).upper())

    def commit(_conn: object) -> None:
        seen.append("COMMIT")

    event.listen(world.db.engine, "before_cursor_execute", count)
    event.listen(world.db.engine, "commit", commit)
    try:
        yield seen
    finally:
        event.remove(world.db.engine, "before_cursor_execute", count)
        event.remove(world.db.engine, "commit", commit)


def _products(client, world: World) -> None:  # type: ignore[no-untyped-def]
    a = world.brands[0]
    for sku, price in (("TS-1", "100"), ("CAP-1", "50")):
        r = client.post(
            "/api/v1/products", json={"sku": sku, "name": sku, "list_price": price}, headers=a.headers
        )
        assert r.status_code == 201, r.text


def test_the_look_up_ends_before_the_writes_begin(client, world: World) -> None:
    a = world.brands[0]
    _products(client, world)
    client.get("/api/v1/orders", headers=a.headers)  # the key is checked and remembered first
    with statements(world) as seen:
        r = client.post("/api/v1/orders", json=order_body(), headers=a.headers)
    assert r.status_code == 201, r.text
    inserts = [i for i, q in enumerate(seen) if q.startswith("INSERT")]
    if world.db.is_sqlite:
        # BEGIN, the look-up, COMMIT; then BEGIN IMMEDIATE, the inserts, COMMIT.
        assert seen.index("BEGIN IMMEDIATE") < inserts[0], seen
        look_up = next(i for i, q in enumerate(seen) if q.startswith("SELECT"))
        assert seen[look_up - 1] == "BEGIN" and seen[look_up + 1] == "COMMIT", seen
        assert seen.count("COMMIT") == 2, seen
    else:
        # One transaction as before: the look-up and the writes commit together.
        assert seen.count("COMMIT") == 1, seen
    assert r.json()["items"][0]["id"] is not None

    # A replay is answered from the reading transaction: nothing is written, no writer begins.
    with statements(world) as seen:
        again = client.post("/api/v1/orders", json=order_body(), headers=a.headers)
    assert again.status_code == 200 and again.json() == r.json()
    assert not [q for q in seen if q.startswith(("INSERT", "UPDATE", "BEGIN IMMEDIATE"))], seen


def test_a_number_taken_after_the_look_up_is_answered_as_a_replay(client, world: World) -> None:
    a = world.brands[0]
    _products(client, world)
    actor = system_for_brand(a.id)
    data = OrderIn.model_validate(order_body(number="RACE-1"))
    with world.db.unit_of_work(actor.scope, write=False) as s:
        prepared = service.prepare(s, actor=actor, data=data)
    assert prepared.plan is not None and prepared.replay is None
    # Another request records the same order meanwhile.
    first = client.post("/api/v1/orders", json=order_body(number="RACE-1"), headers=a.headers)
    assert first.status_code == 201
    with world.db.unit_of_work(actor.scope) as s:
        result = service.write(s, actor=actor, data=data, prepared=prepared)
        assert not result.created and result.order.id == first.json()["id"]
    with world.db.unit_of_work(write=False) as s:
        assert s.scalar(select(func.count()).select_from(Order)) == 1
        paid = select(func.count()).select_from(OutboxEvent).where(OutboxEvent.type == "order.paid")
        assert s.scalar(paid) == 1


def test_checks_fail_before_any_write(client, world: World) -> None:
    a = world.brands[0]
    _products(client, world)
    with statements(world) as seen:
        r = client.post("/api/v1/orders", json=order_body(store="nowhere"), headers=a.headers)
    assert r.status_code == 422 and r.json()["errors"], r.text
    assert not [q for q in seen if q.startswith(("INSERT", "BEGIN IMMEDIATE"))], seen
