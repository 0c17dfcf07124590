from __future__ import annotations

from decimal import Decimal

from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import select

from huiyuan.orders.planning import allocate
from huiyuan.outbox.models import OutboxEvent
from tests.conftest import World
from tests.orders.helpers import order_body


def _order(client, headers, **kw):  # type: ignore[no-untyped-def]
    r = client.post("/api/v1/orders", json=order_body(**kw), headers=headers)
    assert r.status_code == 201, r.text
    return r.json()


def test_partial_then_full_refund(client, world: World) -> None:
    a = world.brands[0]
    o = _order(client, a.headers)
    url = f"/api/v1/orders/{o['id']}/refunds"
    r = client.post(
        url, json={"refund_number": "RF-1", "items": [{"line_no": 1, "quantity": 1}]}, headers=a.headers
    )
    assert r.status_code == 201, r.text
    first = r.json()
    # Line 1 paid 144.00 for 2 units after its share of the coupon: one unit is 72.00.
    assert first["amount"] == "72.00" and first["full"] is False
    assert first["items"] == [
        {"order_item_id": o["items"][0]["id"], "line_no": 1, "sku": "TS-1", "quantity": 1, "amount": "72.00"}
    ]
    got = client.get(f"/api/v1/orders/{o['id']}", headers=a.headers).json()
    assert got["status"] == "partially_refunded" and got["refunded_amount"] == "72.00"
    assert got["items"][0]["refunded_quantity"] == 1

    # Replay: the first refund, 200; another body under the number: 422.
    r = client.post(
        url, json={"refund_number": "RF-1", "items": [{"line_no": 1, "quantity": 1}]}, headers=a.headers
    )
    assert r.status_code == 200 and r.json()["id"] == first["id"]
    r = client.post(
        url, json={"refund_number": "RF-1", "items": [{"line_no": 2, "quantity": 1}]}, headers=a.headers
    )
    assert r.status_code == 422 and r.json()["code"] == "idempotency-key-reused"

    # Over-refund: 1 unit is left on line 1.
    r = client.post(
        url, json={"refund_number": "RF-2", "items": [{"line_no": 1, "quantity": 2}]}, headers=a.headers
    )
    assert r.status_code == 422
    assert r.json()["errors"] == [
        {"field": "items.0.quantity", "message": "only 1 left to refund on this line", "code": "over-refund"}
    ]
    r = client.post(
        url, json={"refund_number": "RF-2", "items": [{"line_no": 9, "quantity": 1}]}, headers=a.headers
    )
    assert r.json()["errors"][0]["code"] == "unknown-line"
    r = client.post(url, json={"refund_number": "RF-2"}, headers=a.headers)
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "items"

    r = client.post(
        url, json={"refund_number": "RF-2", "full": True, "reason": "cancelled"}, headers=a.headers
    )
    assert r.status_code == 201
    full = r.json()
    assert full["full"] is True and full["amount"] == "108.00"
    assert {(i["line_no"], i["quantity"]) for i in full["items"]} == {(1, 1), (2, 1)}
    got = client.get(f"/api/v1/orders/{o['id']}", headers=a.headers).json()
    assert got["status"] == "refunded" and got["refunded_amount"] == got["paid_amount"] == "180.00"
    assert [x["refund_number"] for x in got["refunds"]] == ["RF-1", "RF-2"]
    listed = client.get(url, headers=a.headers).json()
    assert [x["id"] for x in listed] == [first["id"], full["id"]]

    r = client.post(url, json={"refund_number": "RF-3", "full": True}, headers=a.headers)
    assert r.status_code == 409
    with world.db.unit_of_work() as s:
        events = s.scalars(
            select(OutboxEvent).where(OutboxEvent.type == "order.refunded").order_by(OutboxEvent.id)
        )
        payloads = [e.payload for e in events]
    assert [p["amount"] for p in payloads] == ["72.00", "108.00"]
    assert (
        payloads[1]["full"] is True
        and payloads[1]["order_id"] == o["id"]
        and payloads[1]["member_id"] is None
    )
    assert payloads[0]["items"] == [{"sku": "TS-1", "category_id": None, "quantity": 1, "amount": "72.00"}]


def test_unit_by_unit_refunds_add_up_to_what_was_paid(client, world: World) -> None:
    a = world.brands[0]
    body = order_body(
        items=[{"sku": "A", "name": "a", "quantity": 3, "list_price": "10.00", "deal_price": "10.00"}],
        discounts=[{"kind": "promotion", "amount": "1.00"}],
        payments=[{"method": "alipay", "amount": "29.00"}],
    )
    o = client.post("/api/v1/orders", json=body, headers=a.headers).json()
    amounts = []
    for n in range(3):
        r = client.post(
            f"/api/v1/orders/{o['id']}/refunds",
            json={"refund_number": f"U-{n}", "items": [{"line_no": 1, "quantity": 1}]},
            headers=a.headers,
        )
        amounts.append(r.json()["amount"])
    assert amounts == ["9.67", "9.67", "9.66"]
    got = client.get(f"/api/v1/orders/{o['id']}", headers=a.headers).json()
    assert got["status"] == "refunded" and got["refunds"][-1]["full"] is True


def test_refund_of_another_order_under_the_same_number_is_refused(client, world: World) -> None:
    a = world.brands[0]
    o1, o2 = _order(client, a.headers, number="O-1"), _order(client, a.headers, number="O-2")
    body = {"refund_number": "RF-X", "full": True}
    assert client.post(f"/api/v1/orders/{o1['id']}/refunds", json=body, headers=a.headers).status_code == 201
    r = client.post(f"/api/v1/orders/{o2['id']}/refunds", json=body, headers=a.headers)
    assert r.status_code == 422 and r.json()["code"] == "idempotency-key-reused"
    assert client.get(f"/api/v1/orders/{o2['id']}", headers=a.headers).json()["status"] == "paid"


@given(
    total_fen=st.integers(min_value=0, max_value=10_000_00),
    weights_fen=st.lists(st.integers(min_value=0, max_value=1_000_000_00), min_size=1, max_size=30),
)
def test_discount_allocation_is_exact(total_fen: int, weights_fen: list[int]) -> None:
    weights = [Decimal(w) / 100 for w in weights_fen]
    total = min(Decimal(total_fen) / 100, sum(weights, Decimal(0)))
    shares = allocate(total, weights)
    assert sum(shares, Decimal(0)) == (total if sum(weights) else 0)
    assert all(s >= 0 and s <= w for s, w in zip(shares, weights, strict=True))
    assert all(s == s.quantize(Decimal("0.01")) for s in shares)
