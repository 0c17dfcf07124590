"""The tracking plan through the operator API on both databases: definitions and versions, deprecation,
violations flagged or quarantined by the brand's setting, unplanned events listed and approved, the
quarantine released, violation counts, permissions, and the server-side endpoint for systems."""

from __future__ import annotations

from typing import Any

import pytest

from tests.conftest import World
from tests.events.conftest import basic, make_source
from tests.factories import make_key

PRODUCT_VIEWED = {
    "name": "Product Viewed",
    "description": "商品详情页曝光",
    "properties": [
        {"name": "sku", "type": "string", "required": True},
        {"name": "price", "type": "number", "required": True},
        {"name": "currency", "type": "string", "enum": ["CNY"]},
    ],
}


def track(client: Any, key: str, event: str, properties: dict[str, Any], **extra: Any) -> dict[str, Any]:
    r = client.post(
        "/v1/track",
        json={"userId": "LX1", "event": event, "properties": properties, **extra},
        headers=basic(key),
    )
    assert r.status_code == 200, r.text
    return dict(r.json())


def test_definitions_versions_and_status(client: Any, world: World) -> None:
    h = world.brands[0].headers
    r = client.post("/api/v1/tracking-plan/events", json=PRODUCT_VIEWED, headers=h)
    assert r.status_code == 201, r.text
    first = r.json()
    assert first["version"] == 1 and first["status"] == "active" and first["kind"] == "track"
    assert client.post("/api/v1/tracking-plan/events", json=PRODUCT_VIEWED, headers=h).status_code == 409
    bad = {"name": "x", "properties": [{"name": "a", "type": "decimal"}]}
    assert client.post("/api/v1/tracking-plan/events", json=bad, headers=h).status_code == 422
    dup = {"name": "x", "properties": [{"name": "a", "type": "string"}, {"name": "a", "type": "number"}]}
    assert client.post("/api/v1/tracking-plan/events", json=dup, headers=h).status_code == 422
    enum_on_object = {"name": "x", "properties": [{"name": "a", "type": "object", "enum": ["b"]}]}
    assert client.post("/api/v1/tracking-plan/events", json=enum_on_object, headers=h).status_code == 422

    v2 = client.post(
        f"/api/v1/tracking-plan/events/{first['id']}/versions",
        json={"properties": [*PRODUCT_VIEWED["properties"], {"name": "brand", "type": "string"}]},  # type: ignore[misc]
        headers=h,
    ).json()
    assert v2["version"] == 2 and v2["description"] == "商品详情页曝光"
    versions = client.get(f"/api/v1/tracking-plan/events/{first['id']}/versions", headers=h).json()
    assert [v["version"] for v in versions] == [2, 1]
    plan = client.get("/api/v1/tracking-plan/events", headers=h).json()
    assert [(d["name"], d["version"]) for d in plan] == [("Product Viewed", 2)]

    r = client.post(
        f"/api/v1/tracking-plan/events/{first['id']}/status", json={"status": "deprecated"}, headers=h
    )
    assert r.json()["status"] == "deprecated" and r.json()["version"] == 2
    assert client.get("/api/v1/tracking-plan/events?status=active", headers=h).json() == []
    audit = client.get("/api/v1/audit?entity_type=event_definition", headers=h).json()["items"]
    assert {a["action"] for a in audit} == {
        "event_definition.created",
        "event_definition.revised",
        "event_definition.status",
    }


def test_violations_flagged_then_quarantined_never_dropped(client: Any, world: World) -> None:
    brand = world.brands[0]
    h = brand.headers
    _sid, key = make_source(world.db, brand.id)
    definition = client.post("/api/v1/tracking-plan/events", json=PRODUCT_VIEWED, headers=h).json()

    ok = track(client, key, "Product Viewed", {"sku": "A", "price": 99, "currency": "CNY"})
    assert ok["flagged"] == 0 and ok["stored"] == 1
    bad = track(client, key, "Product Viewed", {"price": "99", "currency": "USD"})
    assert bad["flagged"] == 1 and bad["stored"] == 1 and bad["quarantined"] == 0
    flagged = client.get("/api/v1/events?flagged=true", headers=h).json()["items"]
    assert len(flagged) == 1
    assert {(v["property"], v["rule"]) for v in flagged[0]["violations"]} == {
        ("sku", "required"),
        ("price", "type"),
        ("currency", "enum"),
    }
    assert len(client.get("/api/v1/events", headers=h).json()["items"]) == 2

    r = client.put("/api/v1/tracking-plan/settings", json={"violation_mode": "quarantine"}, headers=h)
    assert r.json() == {"brand_id": brand.id, "violation_mode": "quarantine", "unplanned_policy": "allow"}
    bad = track(client, key, "Product Viewed", {"sku": "B", "price": "free"}, messageId="q-1")
    assert bad == {
        "success": True,
        "received": 1,
        "stored": 0,
        "duplicates": 0,
        "flagged": 0,
        "quarantined": 1,
    }
    assert len(client.get("/api/v1/events", headers=h).json()["items"]) == 2  # not in the main stream
    quarantined = client.get("/api/v1/events/quarantine", headers=h).json()["items"]
    assert len(quarantined) == 1
    assert quarantined[0]["message"]["properties"] == {"sku": "B", "price": "free"}
    assert quarantined[0]["violations"][0]["rule"] == "type"
    # A resend of the quarantined message is a duplicate there too.
    assert (
        track(client, key, "Product Viewed", {"sku": "B", "price": "free"}, messageId="q-1")["duplicates"]
        == 1
    )

    stats = client.get("/api/v1/tracking-plan/violations", headers=h).json()
    by_rule = {(s["property"], s["rule"]): (s["count"], s["quarantined"]) for s in stats}
    assert by_rule[("price", "type")] == (3, 2) and by_rule[("sku", "required")] == (1, 0)

    # The plan is fixed (price may be a string for a while); releasing moves the event, now clean.
    props = [{"name": "sku", "type": "string", "required": True}, {"name": "price", "type": "string"}]
    client.post(
        f"/api/v1/tracking-plan/events/{definition['id']}/versions", json={"properties": props}, headers=h
    )
    r = client.post("/api/v1/events/quarantine/release", json={"event": "Product Viewed"}, headers=h)
    assert r.json() == {"released": 1, "kept": 0}
    assert client.get("/api/v1/events/quarantine", headers=h).json()["items"] == []
    newest = client.get("/api/v1/events", headers=h).json()["items"][0]
    assert newest["message_id"] == "q-1" and newest["violations"] is None
    # Releasing flagged nothing for the future: the brand still quarantines.
    assert track(client, key, "Product Viewed", {"price": "x"})["quarantined"] == 1
    assert client.post("/api/v1/events/quarantine/release", json={}, headers=h).status_code == 422


def test_unplanned_events_are_listed_and_approved(client: Any, world: World) -> None:
    brand = world.brands[0]
    h = brand.headers
    _sid, key = make_source(world.db, brand.id)
    track(client, key, "Wishlist Added", {"sku": "A", "price": 9.9, "qty": 1})
    track(client, key, "Wishlist Added", {"sku": "B"})
    track(client, key, "Coupon Shown", {"template": "T1"})
    client.post(
        "/v1/page", json={"anonymousId": "a", "name": "首页"}, headers=basic(key)
    )  # pages are not listed
    listed = client.get("/api/v1/tracking-plan/unplanned", headers=h).json()["items"]
    assert [(u["name"], u["count"]) for u in listed] == [("Wishlist Added", 2), ("Coupon Shown", 1)]
    assert listed[0]["sample"] == {"sku": "A", "price": 9.9, "qty": 1}

    r = client.post(f"/api/v1/tracking-plan/unplanned/{listed[0]['id']}/approve", headers=h)
    assert r.status_code == 201
    assert {p["name"]: p["type"] for p in r.json()["properties"]} == {
        "sku": "string",
        "price": "number",
        "qty": "integer",
    }
    assert (
        client.post(f"/api/v1/tracking-plan/unplanned/{listed[0]['id']}/approve", headers=h).status_code
        == 409
    )
    ignored = client.post(f"/api/v1/tracking-plan/unplanned/{listed[1]['id']}/ignore", headers=h).json()
    assert ignored["status"] == "ignored"
    assert client.get("/api/v1/tracking-plan/unplanned", headers=h).json()["items"] == []
    everything = client.get("/api/v1/tracking-plan/unplanned?status=", headers=h).json()["items"]
    assert {u["status"] for u in everything} == {"approved", "ignored"}

    # Planned now: a wrong type is a violation.
    assert track(client, key, "Wishlist Added", {"sku": 1})["flagged"] == 1
    # With the strict policy, unplanned events are violations too.
    client.put("/api/v1/tracking-plan/settings", json={"unplanned_policy": "violation"}, headers=h)
    out = track(client, key, "Brand New", {})
    assert out["flagged"] == 1
    newest = client.get("/api/v1/events", headers=h).json()["items"][0]
    assert newest["violations"][0]["rule"] == "unplanned-event"


@pytest.mark.parametrize("db", ["sqlite"], indirect=True)
def test_permissions(client: Any, world: World) -> None:
    brand = world.brands[0]
    analyst = make_key(world.db, brand.id, ["events:read"], name="analyst")
    collector = make_key(world.db, brand.id, ["events:collect"], name="pos")
    ah = {"Authorization": f"Bearer {analyst}"}
    assert client.get("/api/v1/event-sources", headers=ah).status_code == 200
    assert client.get("/api/v1/tracking-plan/events", headers=ah).status_code == 200
    assert (
        client.post("/api/v1/event-sources", json={"name": "x", "kind": "web"}, headers=ah).status_code == 403
    )
    assert client.post("/api/v1/tracking-plan/events", json=PRODUCT_VIEWED, headers=ah).status_code == 403
    ch = {"Authorization": f"Bearer {collector}"}
    assert client.get("/api/v1/events", headers=ch).status_code == 403
    # The platform picks a brand for brand-level writes.
    ph = world.platform_headers
    assert (
        client.post("/api/v1/event-sources", json={"name": "x", "kind": "web"}, headers=ph).status_code == 422
    )
    r = client.post(
        "/api/v1/event-sources",
        json={"name": "x", "kind": "web"},
        headers={**ph, "X-Huiyuan-Brand": brand.code},
    )
    assert r.status_code == 201 and r.json()["brand_id"] == brand.id
    r = client.post("/api/v1/event-sources", json={"name": "x", "kind": "fax"}, headers=brand.headers)
    assert r.status_code == 422
    r = client.post(
        "/api/v1/event-sources",
        json={"name": "x", "kind": "web", "rate_limit": "lots"},
        headers=brand.headers,
    )
    assert r.status_code == 422


def test_server_side_batch_with_an_api_key(client: Any, world: World) -> None:
    brand = world.brands[0]
    sid, _key = make_source(world.db, brand.id, kind="pos")
    pos = {"Authorization": f"Bearer {make_key(world.db, brand.id, ['events:collect'], name='pos')}"}
    batch = [
        {
            "type": "track",
            "userId": "LX00000042",
            "event": "Offline Activity Attended",
            "properties": {"activity": "会员日沙龙", "store_code": "sh-01"},
            "timestamp": "2026-05-01T10:00:00+08:00",
            "messageId": "act-42",
        },
        {
            "type": "track",
            "anonymousId": "ad-device-9",
            "event": "Ad Impression",
            "properties": {"campaign": "618", "media": "douyin", "cost": 0.12},
            "messageId": "imp-9",
        },
    ]
    r = client.post("/api/v1/events/batch", json={"source_id": sid, "batch": batch}, headers=pos)
    assert r.status_code == 200, r.text
    assert r.json()["stored"] == 2
    r = client.post("/api/v1/events/batch", json={"source_id": sid, "batch": batch}, headers=pos)
    assert r.json()["duplicates"] == 2
    r = client.post("/api/v1/events/batch", json={"batch": batch}, headers=pos)
    assert r.status_code == 422
    r = client.post("/api/v1/events/batch", json={"source_id": sid, "batch": "x"}, headers=pos)
    assert r.status_code == 400 and r.json()["code"] == "invalid-request"
    assert r.headers["content-type"].startswith("application/problem+json")
    events = client.get(f"/api/v1/events?source_id={sid}", headers=brand.headers).json()["items"]
    assert {e["event"] for e in events} == {"Offline Activity Attended", "Ad Impression"}
    offline = next(e for e in events if e["message_id"] == "act-42")
    assert offline["timestamp"] == "2026-05-01T02:00:00Z"
