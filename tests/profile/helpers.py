"""A small, hand-built brand for the profile tests (the worked example of docs/profile.md).

Brand A (alpha) sells in three categories. Its buyers:

* 王小明 (the person): 3 orders, net ¥800 — tops ¥200 in 2 orders, shoes ¥600 in 3 orders; two on
  the mini program at 20:xx local time, one in store alpha-s1 at 10:00; phone, WeChat OpenID and
  UnionID on the record; a user id, an anonymous id and a device id linked to it in OneID; two
  signed-in events at 20:xx and one anonymous page view at 09:00; 500 points; one coupon.
* 李华: 3 store orders at 14:00, tops ¥7,800 and bags ¥500.
* 张伟: 1 web order at 11:00, shoes ¥900.

So the brand's spend is tops ¥8,000, shoes ¥1,500, bags ¥500; one more event (another user, 14:00).
Brand B (beta) has a member of its own, to prove isolation.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from huiyuan.events import sources
from huiyuan.kit.scope import system_for_brand
from huiyuan.outbox.dispatcher import dispatch_pending
from tests.conftest import World
from tests.factories import enroll

RULES = {
    "discount": {"kind": "threshold", "threshold": "300.00", "amount": "50.00"},
    "stacking": "stackable",
    "validity": {"kind": "relative", "days": 30, "round_to": "end_of_day"},
}


@dataclass
class Seeded:
    oneid: int
    wang: dict[str, Any]
    li: dict[str, Any]
    zhang: dict[str, Any]
    other_brand_member: dict[str, Any]
    order_ids: list[int]


def _ok(r: Any) -> dict[str, Any]:
    assert r.status_code in (200, 201), r.text
    return dict(r.json())


def _order(
    client: Any,
    h: dict[str, str],
    number: str,
    member_number: str,
    channel: str,
    paid_at: str,
    lines: list[tuple[str, int, str]],
    store: str | None = None,
) -> int:
    total = sum(q * Decimal(price) for _sku, q, price in lines)
    body: dict[str, Any] = {
        "order_number": number,
        "channel": channel,
        "member_number": member_number,
        "paid_at": paid_at,
        "items": [
            {"sku": sku, "quantity": q, "list_price": price, "deal_price": price} for sku, q, price in lines
        ],
        "payments": [{"method": "wechat_pay", "amount": str(total)}],
    }
    if store:
        body["store_code"] = store
    return int(_ok(client.post("/api/v1/orders", json=body, headers=h))["id"])


def _link(client: Any, h: dict[str, str], left: str, right: str) -> dict[str, Any]:
    lt, _, lv = left.partition(":")
    rt, _, rv = right.partition(":")
    body = {"left": {"type": lt, "value": lv}, "right": {"type": rt, "value": rv}, "reason": "seed"}
    return _ok(client.post("/api/v1/oneid/links", json=body, headers=h))


def seed(client: Any, world: World) -> Seeded:
    a, b = world.brands
    h = a.headers
    for code, name in (("tops", "上装"), ("shoes", "鞋履"), ("bags", "箱包")):
        _ok(client.post("/api/v1/categories", json={"code": code, "name": name}, headers=h))
    for sku, name, cat, price in (
        ("TOP-1", "T恤", "tops", "100.00"),
        ("SHOE-1", "跑鞋", "shoes", "200.00"),
        ("BAG-1", "托特包", "bags", "500.00"),
    ):
        body = {"sku": sku, "name": name, "category_code": cat, "list_price": price}
        _ok(client.post("/api/v1/products", json=body, headers=h))

    wang = enroll(
        client,
        h,
        name="王小明",
        phone="13800138000",
        identifiers=[
            {"type": "wechat_openid", "value": "oWang-openid-1"},
            {"type": "wechat_unionid", "value": "uWang-unionid-1"},
        ],
    )
    li = enroll(client, h, name="李华", phone="13911112222")
    zhang = enroll(client, h, name="张伟")
    other = enroll(client, b.headers, name="王小明", phone="13800138000")
    dispatch_pending(world.db)

    orders = [
        # 王小明: 20:30 and 20:40 local on the mini program, 10:00 local in store.
        _order(
            client, h, "W-1", wang["member_number"], "mini_program", "2026-03-01T12:30:00Z",
            [("TOP-1", 1, "100.00"), ("SHOE-1", 1, "200.00")],
        ),
        _order(
            client, h, "W-2", wang["member_number"], "mini_program", "2026-03-08T12:40:00Z",
            [("TOP-1", 1, "100.00"), ("SHOE-1", 1, "200.00")],
        ),
        _order(
            client, h, "W-3", wang["member_number"], "store", "2026-03-10T02:00:00Z",
            [("SHOE-1", 1, "200.00")], store="alpha-s1",
        ),
    ]  # fmt: skip
    for n, day in enumerate(("02", "03", "04")):
        lines = [("TOP-1", 26, "100.00")] + ([("BAG-1", 1, "500.00")] if n == 2 else [])
        _order(
            client, h, f"L-{n}", li["member_number"], "store", f"2026-02-{day}T06:00:00Z", lines, "alpha-s1"
        )
    _order(client, h, "Z-1", zhang["member_number"], "web", "2026-01-15T03:00:00Z", [("SHOE-1", 3, "300.00")])
    dispatch_pending(world.db)

    # OneID: a user id, a device and an anonymous id joined to 王小明's member number.
    linked = _link(client, h, f"member_number:{wang['member_number']}", "user_id:u-wang")
    _link(client, h, "user_id:u-wang", "device_id:dev-wang-ipad")
    _link(client, h, "device_id:dev-wang-ipad", "anonymous_id:anon-wang")

    with world.db.unit_of_work() as s:
        key = sources.create_source(s, actor=system_for_brand(a.id), name="web", kind="web").write_key
    auth = {"Authorization": "Basic " + base64.b64encode(f"{key}:".encode()).decode()}
    batch = [
        {
            "type": "track",
            "userId": "u-wang",
            "event": "Product Viewed",
            "properties": {"sku": "SHOE-1"},
            "timestamp": "2026-03-05T12:10:00Z",
            "messageId": "m-1",
        },
        {
            "type": "track",
            "userId": "u-wang",
            "event": "Product Added",
            "properties": {"sku": "SHOE-1"},
            "timestamp": "2026-03-05T12:20:00Z",
            "messageId": "m-2",
        },
        {
            "type": "page",
            "anonymousId": "anon-wang",
            "name": "首页",
            "timestamp": "2026-03-04T01:00:00Z",
            "messageId": "m-3",
        },
        {
            "type": "track",
            "userId": "u-someone-else",
            "event": "Product Viewed",
            "timestamp": "2026-03-04T06:00:00Z",
            "messageId": "m-4",
        },
    ]
    r = client.post("/v1/batch", json={"batch": batch}, headers=auth)
    assert r.status_code == 200, r.text

    types = {
        "code": "points",
        "name": "积分",
        "kind": "spendable",
        "expiry_policy": {"kind": "relative", "days": 365},
        "points_per_yuan": 100,
        "max_pay_ratio": "0.5",
    }
    _ok(client.post("/api/v1/points/types", json=types, headers=h))
    grant = {"idempotency_key": "grant-0001", "point_type": "points", "amount": 500, "reason": "开业补发"}
    _ok(client.post(f"/api/v1/members/{wang['id']}/points/grant", json=grant, headers=h))
    template = _ok(
        client.post(
            "/api/v1/coupons/templates",
            json={"code": "SPRING-50", "name": "满300减50", "status": "active", "rules": RULES},
            headers=h,
        )
    )
    issue = {"template_id": template["id"], "member_id": wang["id"], "idempotency_key": "issue-0001"}
    _ok(client.post("/api/v1/coupons/issue", json=issue, headers=h))
    dispatch_pending(world.db)
    return Seeded(
        oneid=int(linked["oneid"]),
        wang=wang,
        li=li,
        zhang=zhang,
        other_brand_member=other,
        order_ids=orders,
    )
