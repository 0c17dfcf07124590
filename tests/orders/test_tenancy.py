"""Brand beta must not see or change brand alpha's stores, products, orders and refunds, nor use
alpha's store or members in its own orders; the platform picks a brand with X-Huiyuan-Brand."""

from __future__ import annotations

from sqlalchemy import select

from huiyuan.orders.models import Order
from tests.conftest import World
from tests.factories import enroll, make_key
from tests.orders.helpers import order_body


def test_beta_cannot_touch_alpha(client, world: World) -> None:
    a, b = world.brands
    m = enroll(client, a.headers)
    product = client.post(
        "/api/v1/products", json={"sku": "TS-1", "name": "T", "list_price": "100"}, headers=a.headers
    ).json()
    order = client.post("/api/v1/orders", json=order_body(member_id=m["id"]), headers=a.headers).json()
    alpha_store = client.get("/api/v1/stores", headers=a.headers).json()[0]
    assert alpha_store["code"] == "alpha-s1"

    for path in (
        f"/api/v1/orders/{order['id']}",
        f"/api/v1/orders/{order['id']}/refunds",
        f"/api/v1/products/{product['id']}",
        f"/api/v1/stores/{alpha_store['id']}",
    ):
        assert client.get(path, headers=b.headers).status_code == 404, path
        assert client.get(path, headers=a.headers).status_code == 200, path
    r = client.patch(f"/api/v1/products/{product['id']}", json={"list_price": "1"}, headers=b.headers)
    assert r.status_code == 404
    r = client.post(
        f"/api/v1/orders/{order['id']}/refunds", json={"refund_number": "R", "full": True}, headers=b.headers
    )
    assert r.status_code == 404
    assert client.get("/api/v1/orders", headers=b.headers).json()["items"] == []
    assert client.get("/api/v1/products", headers=b.headers).json()["items"] == []
    assert [s["code"] for s in client.get("/api/v1/stores", headers=b.headers).json()] == ["beta-s1"]
    assert client.get(f"/api/v1/orders?member_id={m['id']}", headers=b.headers).json()["items"] == []

    # Alpha's store, member (by id or number) and SKU mean nothing to beta.
    r = client.post("/api/v1/orders", json=order_body("B-1", store="alpha-s1"), headers=b.headers)
    assert r.status_code == 422 and r.json()["errors"][0]["code"] == "unknown-store"
    r = client.post(
        "/api/v1/orders", json=order_body("B-2", store="beta-s1", member_id=m["id"]), headers=b.headers
    )
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "member_id"
    body = order_body("B-3", store="beta-s1", member_number=m["member_number"])
    r = client.post("/api/v1/orders", json=body, headers=b.headers)
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "member_number"
    r = client.post(
        "/api/v1/orders/batch", json={"orders": [order_body("B-4", member_id=m["id"])]}, headers=b.headers
    )
    assert r.json()["results"][0]["status"] == "error"

    # The same order number is free in another brand; the SKU there is not alpha's product.
    body = order_body(store="beta-s1")
    body["items"][0] = {
        "sku": "TS-1",
        "name": "beta tee",
        "quantity": 2,
        "list_price": "100",
        "deal_price": "80",
    }
    r = client.post("/api/v1/orders", json=body, headers=b.headers)
    assert r.status_code == 201 and r.json()["id"] != order["id"]
    assert r.json()["items"][0]["product_id"] is None
    with world.db.unit_of_work() as s:
        assert sorted(s.scalars(select(Order.brand_id))) == sorted([a.id, b.id])


def test_platform_picks_a_brand(client, world: World) -> None:
    a, b = world.brands
    order = client.post("/api/v1/orders", json=order_body(), headers=a.headers).json()
    assert client.get(f"/api/v1/orders/{order['id']}", headers=world.platform_headers).status_code == 200
    as_beta = {**world.platform_headers, "X-Huiyuan-Brand": "beta"}
    as_alpha = {**world.platform_headers, "X-Huiyuan-Brand": "alpha"}
    assert client.get(f"/api/v1/orders/{order['id']}", headers=as_beta).status_code == 404
    r = client.post("/api/v1/orders", json=order_body("P-1"), headers=world.platform_headers)
    assert r.status_code == 422 and r.json()["code"] == "brand-required"
    r = client.post("/api/v1/orders", json=order_body("P-1"), headers=as_alpha)
    assert r.status_code == 201
    r = client.post(
        f"/api/v1/orders/{order['id']}/refunds", json={"refund_number": "R-1", "full": True}, headers=as_beta
    )
    assert r.status_code == 404
    r = client.post("/api/v1/stores", json={"code": "beta-s2", "name": "B2"}, headers=as_beta)
    assert r.status_code == 201 and r.json()["brand_id"] == b.id


def test_brands_api(client, world: World) -> None:
    a, _b = world.brands
    assert [x["code"] for x in client.get("/api/v1/brands", headers=a.headers).json()] == ["alpha"]
    assert [x["code"] for x in client.get("/api/v1/brands", headers=world.platform_headers).json()] == [
        "alpha",
        "beta",
    ]
    body = {"code": "gamma", "name": "Gamma", "member_number_prefix": "GA"}
    assert client.post("/api/v1/brands", json=body, headers=a.headers).status_code == 403
    r = client.post("/api/v1/brands", json=body, headers=world.platform_headers)
    assert r.status_code == 201 and r.json()["code"] == "gamma"
    assert client.post("/api/v1/brands", json=body, headers=world.platform_headers).status_code == 409
    r = client.post(
        "/api/v1/brands",
        json={**body, "code": "delta", "timezone": "Mars/Base"},
        headers=world.platform_headers,
    )
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "timezone"
    # A read-only key may list stores but not add one.
    reader = {"Authorization": f"Bearer {make_key(world.db, a.id, ['orders:read'], name='reader')}"}
    assert client.get("/api/v1/stores", headers=reader).status_code == 200
    assert client.post("/api/v1/stores", json={"code": "x", "name": "x"}, headers=reader).status_code == 403
    assert client.post("/api/v1/orders", json=order_body(), headers=reader).status_code == 403
