"""What recording one order costs in statements, and that the response built from the rows just
written is exactly what reading the order back returns."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from decimal import Decimal

from sqlalchemy import event, inspect, select

from huiyuan.kit.scope import system_for_brand
from huiyuan.orders import service, views
from huiyuan.orders.models import Order
from huiyuan.orders.schemas import OrderIn
from tests.conftest import World
from tests.factories import enroll
from tests.orders.helpers import order_body


@contextmanager
def statements(world: World) -> Iterator[list[str]]:
    seen: list[str] = []

    def count(_conn: object, _cursor: object, statement: str, *_args: object) -> None:
        seen.append(statement.strip())

    event.listen(world.db.engine, "before_cursor_execute", count)
    try:
        yield seen
    finally:
        event.remove(world.db.engine, "before_cursor_execute", count)


def _kinds(seen: list[str]) -> list[str]:
    out = []
    for q in seen:
        verb = q.split()[0].upper()
        out.append(f"INSERT {q.split()[2]}" if verb == "INSERT" else verb)
    return out


def test_one_order_is_one_look_up_and_one_insert_per_table(client, world: World) -> None:
    a = world.brands[0]
    client.post("/api/v1/products", json={"sku": "TS-1", "name": "T", "list_price": "100"}, headers=a.headers)
    m = enroll(client, a.headers)
    data = OrderIn.model_validate(order_body(member_number=m["member_number"]))
    actor = system_for_brand(a.id)
    with statements(world) as seen, world.db.unit_of_work(actor.scope) as s:
        result = service.record(s, actor=actor, data=data)
        out = views.recorded_order_out(s, result)
    kinds = [k for k in _kinds(seen) if k not in ("BEGIN", "COMMIT")]
    # Store, products, member and the idempotency check share one SELECT; a number taken meanwhile
    # is skipped by the INSERT itself (no savepoint); nothing is read back.
    assert kinds == [
        "SELECT",
        "INSERT orders",
        "INSERT order_items",
        "INSERT order_discounts",
        "INSERT order_payments",
        "INSERT audit_log",
        "INSERT outbox_events",
    ], seen
    assert result.created and out.member_id == m["id"] and out.items[0].product_id is not None

    # A replay writes nothing and answers the first order.
    with statements(world) as seen, world.db.unit_of_work(actor.scope) as s:
        again = service.record(s, actor=actor, data=data)
        assert views.recorded_order_out(s, again) == out
    assert not again.created and not [k for k in _kinds(seen) if k.startswith("INSERT")]


def test_record_order_returns_a_persistent_order_without_reading_it(world: World) -> None:
    a = world.brands[0]
    actor = system_for_brand(a.id)
    with world.db.unit_of_work(actor.scope) as s:
        order, created = service.record_order(s, actor=actor, data=OrderIn.model_validate(order_body()))
        with statements(world) as seen:
            assert inspect(order).persistent and s.get(Order, order.id) is order
            assert (order.paid_amount, order.units, order.status) == (Decimal("180.00"), 3, "paid")
            assert order.created_at == order.updated_at and order.paid_at.tzinfo is not None
        assert created and seen == []
        order.status = "refunded"  # changes made through it are tracked like any loaded row
    with world.db.unit_of_work(actor.scope) as s:
        assert s.scalars(select(Order.status)).one() == "refunded"


def test_response_of_a_new_order_equals_the_order_read_back(client, world: World) -> None:
    a = world.brands[0]
    client.post(
        "/api/v1/products", json={"sku": "TS-1", "name": "纯棉T恤", "list_price": "100"}, headers=a.headers
    )
    m = enroll(client, a.headers)
    # Catalogue line (name and list price from the product), member by number, default paid_at.
    body = order_body("EQ-1", member_number=m["member_number"])
    del body["paid_at"]
    body["items"][0] = {"sku": "TS-1", "quantity": 2, "deal_price": "80"}
    body["discounts"] = [{"kind": "promotion", "amount": "20", "funded_by": "store"}]
    r = client.post("/api/v1/orders", json=body, headers=a.headers)
    assert r.status_code == 201, r.text
    assert r.json() == client.get(f"/api/v1/orders/{r.json()['id']}", headers=a.headers).json()
    # Anonymous buyer, by member id on another order, several payments.
    anon = order_body("EQ-2", identifiers=[{"type": "email", "value": "li@example.com"}])
    r = client.post("/api/v1/orders", json=anon, headers=a.headers)
    assert r.status_code == 201 and r.json()["anonymous_identifiers"][0]["type"] == "email"
    assert r.json() == client.get(f"/api/v1/orders/{r.json()['id']}", headers=a.headers).json()
    r = client.post("/api/v1/orders", json=order_body("EQ-3", member_id=m["id"]), headers=a.headers)
    assert r.status_code == 201 and r.json()["member_id"] == m["id"]
    assert r.json() == client.get(f"/api/v1/orders/{r.json()['id']}", headers=a.headers).json()
