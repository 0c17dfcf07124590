"""The profile API on both databases: search by every kind, the profile's record, identifiers,
graph, loyalty, orders and salient features (numbers of the hand-built brand in
``tests.profile.helpers``), the timeline's order, filter and keyset pages, permissions, and another
brand seeing nothing (404 problem details)."""

from __future__ import annotations

from typing import Any

import pytest

from tests.conftest import World
from tests.factories import enroll, make_key
from tests.profile.helpers import Seeded, seed

SEARCH = "/api/v1/profiles/search"


def _search(client: Any, h: dict[str, str], q: str, type_: str | None = None) -> dict[str, Any]:
    params = {"q": q} | ({"type": type_} if type_ else {})
    r = client.get(SEARCH, params=params, headers=h)
    assert r.status_code == 200, r.text
    return dict(r.json())


def _only(body: dict[str, Any]) -> dict[str, Any]:
    assert len(body["matches"]) == 1, body
    return dict(body["matches"][0])


def _headers(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def test_search_by_every_kind_and_brand_isolation(client: Any, world: World) -> None:
    seeded = seed(client, world)
    a, b = world.brands
    h = a.headers
    oneid, wang = seeded.oneid, seeded.wang

    cases = [
        # (query, type or None to detect, type searched, matched by)
        (wang["member_number"], None, "member_number", "member_number"),
        (wang["member_number"], "member_number", "member_number", "member_number"),
        (str(oneid), None, "oneid", "oneid"),
        (str(oneid), "oneid", "oneid", "oneid"),
        ("138 0013 8000", None, "phone", "phone"),
        ("+8613800138000", "phone", "phone", "phone"),
        ("王小", "name", "name", "name"),
        ("王小", None, "any", "name"),
        ("dev-wang-ipad", "device_id", "device_id", "device_id"),
        ("dev-wang-ipad", None, "any", "device_id"),
        ("oWang-openid-1", "wechat_openid", "wechat_openid", "wechat_openid"),
        ("uWang-unionid-1", "wechat_unionid", "wechat_unionid", "wechat_unionid"),
        ("u-wang", "user_id", "user_id", "user_id"),
    ]
    for q, type_, searched, by in cases:
        body = _search(client, h, q, type_)
        assert body["type"] == searched and body["detected"] is (type_ is None), (q, body)
        match = _only(body)
        assert match["oneid"] == oneid and match["matched_by"] == by, (q, match)
        assert match["member"]["id"] == wang["id"] and match["member"]["phone"] == "13800138000"

    # A name prefix shared by nobody else, then one shared by no one at all.
    assert {m["member"]["name"] for m in _search(client, h, "李", "name")["matches"]} == {"李华"}
    assert _search(client, h, "nobody-like-this")["matches"] == []
    assert _search(client, h, "13900000000")["matches"] == []
    bad = client.get(SEARCH, params={"q": "x", "type": "shoe_size"}, headers=h)
    assert bad.status_code == 422 and bad.json()["errors"][0]["field"] == "type"

    # Without members:pii the phone is masked.
    reader = _headers(make_key(world.db, a.id, ["members:read", "identity:read"]))
    assert _only(_search(client, reader, "13800138000"))["member"]["phone"] == "138****8000"

    # Brand B's key: B's own 王小明 only, never brand A's person, and A's OneID is a 404 problem.
    mine = _only(_search(client, b.headers, "13800138000"))
    assert mine["member"]["id"] == seeded.other_brand_member["id"] and mine["oneid"] != oneid
    assert _search(client, b.headers, "dev-wang-ipad")["matches"] == []
    assert _search(client, b.headers, wang["member_number"])["matches"] == []
    assert _search(client, b.headers, str(oneid), "oneid")["matches"] == []
    for url in (
        f"/api/v1/profiles/{oneid}",
        f"/api/v1/profiles/{oneid}/timeline",
        f"/api/v1/members/{wang['id']}/profile",
        f"/api/v1/members/{wang['id']}/profile/timeline",
    ):
        r = client.get(url, headers=b.headers)
        assert r.status_code == 404, (url, r.text)
        assert r.headers["content-type"].startswith("application/problem+json")
        assert r.json()["code"] == "not-found"
    # A platform key must choose a brand.
    assert client.get(SEARCH, params={"q": "x"}, headers=world.platform_headers).status_code == 422


def _profile(client: Any, h: dict[str, str], seeded: Seeded) -> dict[str, Any]:
    r = client.get(f"/api/v1/profiles/{seeded.oneid}", headers=h)
    assert r.status_code == 200, r.text
    return dict(r.json())


def test_profile_record_identifiers_graph_loyalty_orders_and_features(client: Any, world: World) -> None:
    seeded = seed(client, world)
    h = world.brands[0].headers
    body = _profile(client, h, seeded)
    assert body["oneid"] == seeded.oneid and body["status"] == "active" and body["hidden"] == []
    assert [m["id"] for m in body["members"]] == [seeded.wang["id"]]
    assert body["members"][0]["name"] == "王小明"

    identifiers = {i["type"]: i for i in body["identifiers"]}
    assert set(identifiers) == {
        "member_number",
        "phone",
        "wechat_openid",
        "wechat_unionid",
        "user_id",
        "device_id",
        "anonymous_id",
    }
    assert identifiers["phone"]["value"] == "+8613800138000" and identifiers["phone"]["source"] == "member"
    assert identifiers["member_number"]["value"] == seeded.wang["member_number"]
    assert all(0 < i["confidence"] <= 1 for i in body["identifiers"])
    assert body["golden"]["name"]["value"] == "王小明"

    graph = body["graph"]
    assert len(graph["nodes"]) == 7 and all(n["own"] for n in graph["nodes"])
    assert len(graph["edges"]) == 6 and {e["status"] for e in graph["edges"]} == {"active"}
    assert {"member", "manual"} == {e["link_source"] for e in graph["edges"]}
    assert set(graph["categories"]) == set(identifiers)

    (loyalty,) = body["loyalty"]
    points = {p["point_type"]: p for p in loyalty["points"]}
    assert points["points"]["available"] == 500 and points["points"]["pending"] == 0
    assert points["points"]["frozen"] == 0 and points["points"]["expiring_30d"] == 0
    assert loyalty["tier"] is None and loyalty["paid_plan"] is None  # no programs in this brand

    assert [o["order_number"] for o in body["orders"]] == ["W-3", "W-2", "W-1"]

    f = body["features"]
    assert f["buyers"] == 3 and f["orders"] == 3
    # Worked example (docs/profile.md): α = 10 yuan, K = 3 categories.
    shoes, tops = f["categories"]
    assert (shoes["code"], shoes["orders"], shoes["spend"]) == ("shoes", 3, "600.00")
    assert shoes["share"] == pytest.approx(610 / 830, abs=1e-4)
    assert shoes["brand_share"] == pytest.approx(1510 / 10030, abs=1e-4)
    assert shoes["lift"] == pytest.approx(4.8818, abs=1e-4)
    assert (tops["code"], tops["orders"]) == ("tops", 2)
    assert tops["lift"] == pytest.approx(0.3168, abs=1e-4)
    # Bags: never bought, so not shown (support below 2 orders).
    # Hours: the person 20:00 ×4 (2 orders, 2 events), 09:00 ×1, 10:00 ×1 of 6; the brand 20:00 ×4 of 11.
    (hour,) = f["active_hours"]
    assert hour["hour"] == 20 and hour["count"] == 4
    assert hour["lift"] == pytest.approx((5 / 30) / (5 / 35), abs=1e-4)
    assert sum(x["count"] for x in f["hours"]) == 6
    channel = f["preferred_channel"]
    assert (channel["key"], channel["orders"]) == ("mini_program", 2)
    assert channel["lift"] == pytest.approx((3 / 6) / (3 / 10), abs=1e-4)
    assert f["preferred_store"]["key"] == "alpha-s1" and f["preferred_store"]["orders"] == 1
    # AOV ¥266.67 is the lowest of 266.67, 900, 2766.67; 3 orders tie with 李华's; the newest buyer.
    assert f["aov"] == {"value": 266.67, "percentile": pytest.approx(100 / 6, abs=1e-3)}
    assert f["frequency"]["percentile"] == pytest.approx(200 / 3, abs=1e-3)
    assert f["recency"]["percentile"] == pytest.approx(500 / 6, abs=1e-3)

    # The member route answers the same profile.
    same = client.get(f"/api/v1/members/{seeded.wang['id']}/profile", headers=h)
    assert same.status_code == 200 and same.json()["oneid"] == seeded.oneid

    # A reader without points/orders permissions: those sections are hidden, not refused.
    narrow = _headers(make_key(world.db, world.brands[0].id, ["members:read", "identity:read"]))
    limited = _profile(client, narrow, seeded)
    assert limited["loyalty"] is None and limited["orders"] is None and limited["features"] is None
    assert set(limited["hidden"]) == {"points", "tier", "paid_plan", "orders", "features"}
    assert {i["type"]: i["value"] for i in limited["identifiers"]}["phone"] == "138****8000"
    only_members = _headers(make_key(world.db, world.brands[0].id, ["members:read"]))
    assert client.get(f"/api/v1/profiles/{seeded.oneid}", headers=only_members).status_code == 403

    # A member not (yet) in the identity graph still has a profile, without a OneID.
    fresh = enroll(client, h, name="新会员")
    alone = client.get(f"/api/v1/members/{fresh['id']}/profile", headers=h).json()
    assert alone["oneid"] is None and alone["identifiers"] == [] and alone["graph"]["nodes"] == []
    assert alone["features"]["orders"] == 0 and alone["features"]["aov"] is None
    assert client.get("/api/v1/profiles/999999", headers=h).status_code == 404


def _timeline(client: Any, h: dict[str, str], oneid: int, **params: Any) -> dict[str, Any]:
    r = client.get(f"/api/v1/profiles/{oneid}/timeline", params=params, headers=h)
    assert r.status_code == 200, r.text
    return dict(r.json())


def test_timeline_order_filter_and_keyset_pages(client: Any, world: World) -> None:
    seeded = seed(client, world)
    h = world.brands[0].headers
    full = _timeline(client, h, seeded.oneid)
    assert full["kinds"] == ["event", "order", "points", "coupon"] and full["next_cursor"] is None
    items = full["items"]
    kinds = [i["kind"] for i in items]
    # 3 own events (the other user's is not theirs), 3 orders, 1 grant, 1 coupon issued.
    assert sorted(kinds) == sorted(["event"] * 3 + ["order"] * 3 + ["points", "coupon"])
    times = [i["at"] for i in items]
    assert times == sorted(times, reverse=True)
    # Oldest first reading: page view 03-04, order W-1 03-01 is older … check the tail exactly.
    assert [(i["kind"], i["title"]) for i in items[-6:]] == [
        ("order", "W-3"),
        ("order", "W-2"),
        ("event", "Product Added"),
        ("event", "Product Viewed"),
        ("event", "首页"),
        ("order", "W-1"),
    ]
    assert {i["kind"]: i["subtype"] for i in items[:2]} == {"points": "earn", "coupon": "issued"}

    # Keyset pages of 3: the same items, in the same order, no repeats, then no cursor.
    seen: list[tuple[str, int]] = []
    cursor = None
    pages = 0
    while True:
        params: dict[str, Any] = {"limit": 3} | ({"before": cursor} if cursor else {})
        page = _timeline(client, h, seeded.oneid, **params)
        seen += [(i["kind"], i["id"]) for i in page["items"]]
        pages += 1
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert pages == 3 and seen == [(i["kind"], i["id"]) for i in items]

    # Filters: one kind, two kinds; the member route gives the same.
    orders = _timeline(client, h, seeded.oneid, kinds="order")
    assert [i["title"] for i in orders["items"]] == ["W-3", "W-2", "W-1"] and orders["kinds"] == ["order"]
    assert orders["items"][0]["amount"] == "200.00"
    two = _timeline(client, h, seeded.oneid, kinds="event,points", limit=2)
    assert [i["kind"] for i in two["items"]] == ["points", "event"] and two["next_cursor"]
    rest = _timeline(client, h, seeded.oneid, kinds="event,points", before=two["next_cursor"])
    assert [i["title"] for i in rest["items"]] == ["Product Viewed", "首页"] and rest["next_cursor"] is None
    by_member = client.get(
        f"/api/v1/members/{seeded.wang['id']}/profile/timeline", params={"kinds": "order"}, headers=h
    )
    assert by_member.status_code == 200 and by_member.json()["items"] == orders["items"]

    # Errors: an unknown kind, a malformed cursor, a limit out of range, a kind without permission.
    for params, field in (
        ({"kinds": "message"}, "kinds"),
        ({"before": "not-a-cursor"}, "before"),
        ({"limit": 0}, "limit"),
    ):
        r = client.get(f"/api/v1/profiles/{seeded.oneid}/timeline", params=params, headers=h)
        assert r.status_code == 422 and r.json()["errors"][0]["field"] == field, r.text
    narrow = _headers(
        make_key(world.db, world.brands[0].id, ["members:read", "identity:read", "orders:read"])
    )
    assert _timeline(client, narrow, seeded.oneid)["kinds"] == ["order"]
    refused = client.get(
        f"/api/v1/profiles/{seeded.oneid}/timeline", params={"kinds": "event"}, headers=narrow
    )
    assert refused.status_code == 403
