from __future__ import annotations

from decimal import Decimal

import pytest
from sqlalchemy import select

from huiyuan.audit.models import AuditEntry
from huiyuan.kit.scope import system_for_brand
from huiyuan.orders import service
from huiyuan.orders.models import Order, OrderItem
from huiyuan.orders.schemas import OrderIn
from huiyuan.outbox.models import OutboxEvent
from tests.conftest import World
from tests.factories import enroll
from tests.orders.helpers import order_body


def test_create_replay_and_reused_number(client, world: World) -> None:
    a = world.brands[0]
    r = client.post("/api/v1/orders", json=order_body(), headers=a.headers)
    assert r.status_code == 201, r.text
    first = r.json()
    # Same request, formatted differently (numbers instead of strings): the first order, 200.
    again = order_body()
    again["discounts"][0]["amount"] = 20
    r = client.post("/api/v1/orders", json=again, headers=a.headers)
    assert r.status_code == 200 and r.json()["id"] == first["id"]
    r = client.post("/api/v1/orders", json=order_body(channel="web"), headers=a.headers)
    assert r.status_code == 422
    assert r.json()["code"] == "idempotency-key-reused" and r.json()["existing_order_id"] == first["id"]
    with world.db.unit_of_work() as s:
        assert len(s.scalars(select(Order)).all()) == 1
        assert [e.type for e in s.scalars(select(OutboxEvent).where(OutboxEvent.type == "order.paid"))] == [
            "order.paid"
        ]


def test_order_values_and_derived_fields(client, world: World) -> None:
    a = world.brands[0]
    r = client.post("/api/v1/orders", json=order_body(), headers=a.headers)
    o = r.json()
    assert o["list_amount"] == "250.00" and o["deal_amount"] == "200.00"
    assert o["discount_amount"] == "20.00" and o["paid_amount"] == "180.00"
    assert o["units"] == 3 and o["discount_rate"] == "0.2000" and o["status"] == "paid"
    # The coupon is shared over the lines in proportion to their amounts: 160/200 and 40/200.
    assert [i["paid_amount"] for i in o["items"]] == ["144.00", "36.00"]
    assert [p["method"] for p in o["payments"]] == ["wechat_pay", "cash"]
    assert o["discounts"][0]["code"] == "SPRING20"
    got = client.get(f"/api/v1/orders/{o['id']}", headers=a.headers).json()
    assert got == o


def test_validation_reports_every_field(client, world: World) -> None:
    a = world.brands[0]
    body = order_body(store="nowhere", member_id=999999)
    body["items"][0]["deal_price"] = "120.00"  # above its list price
    body["items"].append({"sku": "UNKNOWN", "quantity": 1, "deal_price": "1.00"})  # no name
    r = client.post("/api/v1/orders", json=body, headers=a.headers)
    assert r.status_code == 422, r.text
    fields = {e["field"]: e["code"] for e in r.json()["errors"]}
    assert fields == {
        "store_code": "unknown-store",
        "member_id": "unknown-member",
        "items.0.deal_price": "above-list-price",
        "items.2.name": "unknown-sku",
        "payments": "totals-mismatch",
    }
    r = client.post("/api/v1/orders", json=order_body(payments=[]), headers=a.headers)
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "payments"
    body = order_body(items=[{"sku": "X", "name": "x", "quantity": 0, "deal_price": "-1"}])
    r = client.post("/api/v1/orders", json=body, headers=a.headers)
    assert {e["field"] for e in r.json()["errors"]} >= {"items.0.quantity", "items.0.deal_price"}
    r = client.post("/api/v1/orders", json=order_body(items=[]), headers=a.headers)
    assert r.status_code == 422
    with world.db.unit_of_work() as s:
        assert s.scalars(select(Order)).all() == [] and s.scalars(select(OrderItem)).all() == []
        assert s.scalars(select(OutboxEvent).where(OutboxEvent.type == "order.paid")).all() == []


def test_catalogue_prices_and_members(client, world: World) -> None:
    a = world.brands[0]
    assert client.post(
        "/api/v1/categories", json={"code": "apparel", "name": "服装"}, headers=a.headers
    ).is_success
    r = client.post(
        "/api/v1/categories",
        json={"code": "tops", "name": "上装", "parent_code": "apparel"},
        headers=a.headers,
    )
    assert r.status_code == 201 and r.json()["path"] == "apparel/tops" and r.json()["level"] == 2
    p = client.post(
        "/api/v1/products",
        json={"sku": "TS-1", "name": "纯棉T恤", "category_code": "tops", "list_price": "100"},
        headers=a.headers,
    ).json()
    m = enroll(client, a.headers, name="王")
    body = order_body(member_number=m["member_number"])
    body["items"][0] = {"sku": "TS-1", "quantity": 2, "deal_price": "80.00"}  # list price from the catalogue
    o = client.post("/api/v1/orders", json=body, headers=a.headers).json()
    line = o["items"][0]
    assert line["product_id"] == p["id"] and line["name"] == "纯棉T恤" and line["list_price"] == "100.00"
    assert line["category_id"] == r.json()["id"] and o["member_id"] == m["id"]
    # Catalogue filters include sub-categories; a later price change leaves recorded orders alone.
    listed = client.get("/api/v1/products?category=apparel", headers=a.headers).json()["items"]
    assert [x["sku"] for x in listed] == ["TS-1"]
    r = client.patch(f"/api/v1/products/{p['id']}", json={"list_price": "90.00"}, headers=a.headers)
    assert r.json()["list_price"] == "90.00"
    assert (
        client.get(f"/api/v1/orders/{o['id']}", headers=a.headers).json()["items"][0]["list_price"]
        == "100.00"
    )
    r = client.post(
        "/api/v1/products", json={"sku": "TS-1", "name": "x", "list_price": "1"}, headers=a.headers
    )
    assert r.status_code == 409 and r.json()["existing_product_id"] == p["id"]
    assert (
        client.get(f"/api/v1/orders?member_id={m['id']}", headers=a.headers).json()["items"][0]["id"]
        == o["id"]
    )


def test_anonymous_buyer_keeps_no_plaintext(client, world: World) -> None:
    a = world.brands[0]
    body = order_body(identifiers=[{"type": "phone", "value": "13800138000"}])
    o = client.post("/api/v1/orders", json=body, headers=a.headers).json()
    assert o["member_id"] is None
    assert o["anonymous_identifiers"] == [{"type": "phone", "masked": "138****8000"}]
    with world.db.engine.connect() as conn:
        raw = conn.exec_driver_sql("SELECT anonymous_identifiers, request_hash FROM orders").one()
    assert "13800138000" not in str(raw[0]) and "bidx" in str(raw[0])
    m = enroll(client, a.headers)
    r = client.post(
        "/api/v1/orders",
        json=order_body("POS-2", member_id=m["id"], identifiers=body["identifiers"]),
        headers=a.headers,
    )
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "identifiers"


def test_order_paid_event_and_audit(client, world: World) -> None:
    a = world.brands[0]
    o = client.post("/api/v1/orders", json=order_body(), headers=a.headers).json()
    with world.db.unit_of_work() as s:
        event = s.scalars(select(OutboxEvent).where(OutboxEvent.type == "order.paid")).one()
        audit = s.scalars(select(AuditEntry).where(AuditEntry.action == "order.recorded")).one()
    p = event.payload
    assert event.brand_id == a.id and event.aggregate_id == str(o["id"])
    assert p["order_id"] == o["id"] and p["order_number"] == "POS-1" and p["channel"] == "store"
    assert (p["deal_amount"], p["discount_amount"], p["paid_amount"], p["units"]) == (
        "200.00",
        "20.00",
        "180.00",
        3,
    )
    assert p["items"] == [
        {"sku": "TS-1", "category_id": None, "quantity": 2, "amount": "160.00"},
        {"sku": "CAP-1", "category_id": None, "quantity": 1, "amount": "40.00"},
    ]
    assert p["payments"] == [
        {"method": "wechat_pay", "amount": "150.00"},
        {"method": "cash", "amount": "30.00"},
    ]
    assert p["paid_at"].startswith("2026-03-15T06:30:00") and p["store_id"] == o["store_id"]
    assert audit.entity_id == str(o["id"])


def test_event_rolls_back_with_the_order(world: World) -> None:
    a = world.brands[0]
    with pytest.raises(RuntimeError), world.db.unit_of_work() as s:
        order, created = service.record_order(
            s, actor=system_for_brand(a.id), data=OrderIn.model_validate(order_body())
        )
        assert created and order.paid_amount == Decimal("180.00")
        raise RuntimeError("the caller fails after recording")
    with world.db.unit_of_work() as s:
        assert s.scalars(select(Order)).all() == []
        assert s.scalars(select(OutboxEvent)).all() == []


def test_list_filters_and_cursor(client, world: World) -> None:
    a = world.brands[0]
    for n in range(5):
        body = order_body(
            f"N-{n}", channel="store" if n % 2 == 0 else "web", paid_at=f"2026-03-1{n}T00:00:00Z"
        )
        assert client.post("/api/v1/orders", json=body, headers=a.headers).status_code == 201
    page = client.get("/api/v1/orders?limit=2", headers=a.headers).json()
    assert len(page["items"]) == 2 and page["next_cursor"]
    numbers = [o["order_number"] for o in page["items"]]
    while page["next_cursor"]:
        page = client.get(f"/api/v1/orders?limit=2&cursor={page['next_cursor']}", headers=a.headers).json()
        numbers += [o["order_number"] for o in page["items"]]
    assert numbers == [f"N-{n}" for n in range(5)]
    web = client.get("/api/v1/orders?channel=web", headers=a.headers).json()["items"]
    assert [o["order_number"] for o in web] == ["N-1", "N-3"]
    r = client.get(
        "/api/v1/orders",
        params={
            "paid_from": "2026-03-11T00:00:00Z",
            "paid_to": "2026-03-13T00:00:00Z",
            "store_code": "alpha-s1",
        },
        headers=a.headers,
    )
    assert [o["order_number"] for o in r.json()["items"]] == ["N-1", "N-2"]
    assert client.get("/api/v1/orders?store_code=other", headers=a.headers).json()["items"] == []
