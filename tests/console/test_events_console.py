"""Console pages of events in both languages: the tracking plan (list, a definition with its typed
properties and versions, deprecate / reactivate, audited), violations flagged and quarantined, the
quarantine and its release, unplanned events approved and ignored through HTMX, the live stream
(rows fragment, filters, events per minute), event sources; read-only roles, another brand's ids
and platform users without a brand. The browser test (stream updating in Chromium) is in
``test_oneid_console.py``.
"""

from __future__ import annotations

import re
from typing import Any

import pytest

from tests.conftest import World
from tests.console.conftest import make_user, signed_in
from tests.events.conftest import basic, make_source

HX = {"HX-Request": "true"}
PRODUCT_VIEWED = {
    "name": "Product Viewed",
    "description": "商品详情页曝光",
    "properties": [
        {"name": "sku", "type": "string", "required": True},
        {"name": "price", "type": "number", "required": True},
        {"name": "currency", "type": "string", "enum": ["CNY"]},
    ],
}


def _text(html: str) -> str:
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html))


def _part(html: str, marker: str, end: str = "</table>") -> str:
    return html.split(marker, 1)[1].split(end, 1)[0]


def track(client: Any, key: str, event: str, properties: dict[str, Any], **extra: Any) -> dict[str, Any]:
    body = {"userId": "LX1", "event": event, "properties": properties, **extra}
    r = client.post("/v1/track", json=body, headers=basic(key))
    assert r.status_code == 200, r.text
    return dict(r.json())


def _audit(client: Any, h: dict[str, str], entity_type: str) -> list[str]:
    items = client.get(f"/api/v1/audit?entity_type={entity_type}", headers=h).json()["items"]
    return [a["action"] for a in items]


def _seed(client: Any, world: World) -> dict[str, Any]:
    """Brand A: a web source, Product Viewed planned, a clean and a flagged event, one quarantined
    (after switching to quarantine and back), and two unplanned track events."""
    brand = world.brands[0]
    h = brand.headers
    source_id, key = make_source(world.db, brand.id)
    r = client.post("/api/v1/tracking-plan/events", json=PRODUCT_VIEWED, headers=h)
    assert r.status_code == 201, r.text
    assert track(client, key, "Product Viewed", {"sku": "A", "price": 99, "currency": "CNY"})["flagged"] == 0
    assert track(client, key, "Product Viewed", {"sku": "B", "price": "99"})["flagged"] == 1
    client.put("/api/v1/tracking-plan/settings", json={"violation_mode": "quarantine"}, headers=h)
    assert track(client, key, "Product Viewed", {"price": "free"}, userId="LX9")["quarantined"] == 1
    client.put("/api/v1/tracking-plan/settings", json={"violation_mode": "flag"}, headers=h)
    track(client, key, "Wishlist Added", {"sku": "A", "price": 9.9, "qty": 1})
    track(client, key, "Coupon Shared", {"template": "T1"})
    identify = client.post(
        "/v1/identify", json={"anonymousId": "dev-1", "traits": {"tier": "gold"}}, headers=basic(key)
    )
    assert identify.status_code == 200
    return {"definition": r.json(), "key": key, "source_id": source_id}


def test_plan_violations_quarantine_and_unplanned(client: Any, world: World) -> None:
    seeded = _seed(client, world)
    h = world.brands[0].headers
    make_user(world.db, "op", "operator", world.brands[0].id)
    s = signed_in(client, "op")
    assert 'href="/console/events"' in client.get("/console").text

    # The plan: the newest version of each event, with its property count and status.
    page = client.get("/console/events")
    assert page.status_code == 200
    row = _text(_part(page.text, 'id="event-definitions"'))
    assert "Product Viewed" in row and "v1" in row and "生效" in row and "3" in row
    assert "标记并保留在事件流" in _text(_part(page.text, 'id="plan-settings"', "</section>"))
    first = seeded["definition"]["id"]
    detail = client.get(f"/console/events/plan/{first}")
    props = _text(_part(detail.text, 'id="definition-properties"'))
    assert "sku 字符串 是" in props and "price 数字 是" in props and '"CNY"' in props
    assert 'id="definition-status-actions"' in detail.text

    # A second version: the list shows v2, the first version links to the newest.
    revised = client.post(
        f"/api/v1/tracking-plan/events/{first}/versions",
        json={"properties": [*PRODUCT_VIEWED["properties"], {"name": "brand", "type": "string"}]},  # type: ignore[misc]
        headers=h,
    ).json()
    assert "v2" in _text(_part(client.get("/console/events").text, 'id="event-definitions"'))
    old = client.get(f"/console/events/plan/{first}")
    assert f'href="/console/events/plan/{revised["id"]}">最新为 v2' in old.text
    versions = _text(_part(old.text, 'id="definition-versions"'))
    assert versions.index("v2") < versions.index("v1") and "brand: string" in versions

    # Deprecate (from the old version's page: it acts on the newest) and make active again.
    done = s.post(f"/console/events/plan/{first}/status", {"status": "deprecated"}, follow_redirects=False)
    assert done.status_code == 303 and done.headers["location"] == f"/console/events/plan/{revised['id']}"
    deprecated = client.get(done.headers["location"])
    assert "已弃用" in deprecated.text and 'value="active"' in deprecated.text
    assert s.post(f"/console/events/plan/{first}/status", {"status": "retired"}).status_code == 422
    again = s.post(f"/console/events/plan/{first}/status", {"status": "active"}, headers=HX)
    assert again.status_code == 200 and again.headers["hx-redirect"].endswith(f"/{revised['id']}")
    assert _audit(client, h, "event_definition").count("event_definition.status") == 2

    # Violations: counts per rule, and the latest events flagged or quarantined.
    violations = client.get("/console/events/violations")
    stats = _text(_part(violations.text, 'id="violation-stats"'))
    assert "Product Viewed" in stats and "类型不符" in stats and "缺少必填属性" in stats
    recent = _part(violations.text, 'id="violating-events"')
    assert recent.count('data-handling="flagged"') == 1 and recent.count('data-handling="quarantined"') == 1
    assert "expected number, got string" in recent and "LX9" in recent and "已隔离" in recent

    # The quarantine, and releasing its event into the stream (still flagged: the price is text).
    quarantine = client.get("/console/events/quarantine")
    listed = _part(quarantine.text, 'id="quarantined-events"')
    assert "Product Viewed" in listed and "free" in listed
    qid = re.search(r'action="/console/events/quarantine/(\d+)/release"', listed)
    assert qid
    released = s.post(f"/console/events/quarantine/{qid.group(1)}/release")
    assert released.status_code == 200 and "已放行 1 条；0 条保留" in _text(released.text)
    assert "隔离区为空" in released.text
    assert s.post(f"/console/events/quarantine/{qid.group(1)}/release").status_code == 404
    assert client.get("/console/events/quarantine?event=Nothing").status_code == 200

    # Unplanned events: approve one (HTMX swaps the row), ignore the other.
    unplanned = client.get("/console/events/unplanned")
    rows = _part(unplanned.text, 'id="unplanned-events"')
    ids = dict(
        (name, int(i)) for i, name in re.findall(r'<tr id="unplanned-(\d+)"[^>]*>\s*<td><b>([^<]+)</b>', rows)
    )
    assert set(ids) == {"Wishlist Added", "Coupon Shared"}
    assert "price: number" in rows and "qty: integer" in rows
    approved = s.post(f"/console/events/unplanned/{ids['Wishlist Added']}/approve", headers=HX)
    assert approved.status_code == 200 and "<html" not in approved.text
    assert approved.text.lstrip().startswith(
        f'<tr id="unplanned-{ids["Wishlist Added"]}" data-status="approved"'
    )
    assert "已批准" in approved.text and "/console/events/plan/" in approved.text
    assert "/approve" not in approved.text  # no more buttons on the row
    ignored = s.post(f"/console/events/unplanned/{ids['Coupon Shared']}/ignore", follow_redirects=False)
    assert ignored.status_code == 303 and ignored.headers["location"] == "/console/events/unplanned"
    assert "这里没有未规划事件" in client.get("/console/events/unplanned").text
    everything = client.get("/console/events/unplanned?status=ignored").text
    assert "Coupon Shared" in everything and 'data-status="ignored"' in everything
    plan = _text(_part(client.get("/console/events").text, 'id="event-definitions"'))
    assert "Wishlist Added" in plan
    assert "event_definition.created" in _audit(client, h, "event_definition")
    assert _audit(client, h, "unplanned_event") == ["unplanned_event.ignored"]

    # Approving a name planned meanwhile is refused in the row (the row stays pending).
    track(client, seeded["key"], "Store Visited", {"store": "sh-01"})
    pending = client.get("/console/events/unplanned").text
    visited = re.search(r'<tr id="unplanned-(\d+)"', pending)
    assert visited
    client.post("/api/v1/tracking-plan/events", json={"name": "Store Visited"}, headers=h)
    refused = s.post(f"/console/events/unplanned/{visited.group(1)}/approve", headers=HX)
    assert refused.status_code == 200 and 'data-status="pending"' in refused.text
    assert "already in the plan" in refused.text and 'role="alert"' in refused.text
    assert s.post(f"/console/events/unplanned/{visited.group(1)}/approve").status_code == 409

    client.get("/console/lang?to=en&next=/console", follow_redirects=False)
    english = _text(client.get("/console/events/violations").text)
    assert "Latest events with violations" in english and "wrong type" in english and "违规" not in english


def test_stream_chart_and_sources(client: Any, world: World) -> None:
    seeded = _seed(client, world)
    make_user(world.db, "ana", "analyst", world.brands[0].id)
    signed_in(client, "ana")

    page = client.get("/console/events/stream")
    assert page.status_code == 200 and 'hx-trigger="every 3s"' in page.text
    assert 'hx-get="/console/events/stream/rows?type=&amp;event="' in page.text
    body = _part(page.text, 'id="stream-rows"', "</tbody>")
    assert body.count("<tr data-event-id=") == 5  # the quarantined one is not in the stream
    assert "web source" in body and body.count('class="flagged"') == 1 and "dev-1" in body
    assert body.index("identify") < body.index("Coupon Shared")  # newest first

    rows = client.get("/console/events/stream/rows", headers=HX)
    assert rows.status_code == 200 and "<html" not in rows.text and rows.text.count("<tr data-event-id=") == 5
    track(client, seeded["key"], "Checkout Started", {"value": 399})
    fresh = client.get("/console/events/stream/rows", headers=HX).text
    assert fresh.count("<tr data-event-id=") == 6 and fresh.index("Checkout Started") < fresh.index(
        "identify"
    )
    only = client.get("/console/events/stream/rows", params={"event": "Product Viewed"}, headers=HX).text
    assert only.count("<tr data-event-id=") == 2 and "Coupon Shared" not in only
    typed = client.get("/console/events/stream", params={"type": "identify"})
    assert _part(typed.text, 'id="stream-rows"', "</tbody>").count("<tr data-event-id=") == 1
    assert 'hx-get="/console/events/stream/rows?type=identify&amp;event="' in typed.text
    assert "暂无事件" in client.get("/console/events/stream/rows?event=Nope", headers=HX).text

    chart = client.get("/console/events/stream/minutes.json").json()
    assert len(chart["minutes"]) == 60 and re.fullmatch(r"\d\d:\d\d", chart["minutes"][-1])
    assert chart["total"] == 6 and sum(chart["series"][0]["data"][-2:]) == 6
    assert chart["title"] == "近一小时每分钟事件数"

    sources = client.get("/console/events/sources")
    table = _text(_part(sources.text, 'id="event-sources"'))
    assert "web source" in table and "网站" in table and "hyw_" in table and "启用" in table
    assert seeded["key"] not in sources.text  # only the prefix, never the key


# Brand isolation is the ORM's scope criteria, the same on both backends: SQLite is enough here.
@pytest.mark.parametrize("db", ["sqlite"], indirect=True)
def test_read_only_roles_other_brands_and_platform_users(client: Any, world: World) -> None:
    seeded = _seed(client, world)
    a, b = world.brands
    definition = seeded["definition"]["id"]
    unplanned = client.get("/api/v1/tracking-plan/unplanned", headers=a.headers).json()["items"]
    quarantined = client.get("/api/v1/events/quarantine", headers=a.headers).json()["items"]
    uid, qid = unplanned[0]["id"], quarantined[0]["id"]

    make_user(world.db, "ana", "analyst", a.id)
    s = signed_in(client, "ana")
    assert 'id="definition-status-actions"' not in client.get(f"/console/events/plan/{definition}").text
    listed = client.get("/console/events/unplanned").text
    assert "Wishlist Added" in listed and "/approve" not in listed and "/ignore" not in listed
    assert "/release" not in client.get("/console/events/quarantine").text
    assert s.post(f"/console/events/plan/{definition}/status", {"status": "deprecated"}).status_code == 403
    assert s.post(f"/console/events/unplanned/{uid}/approve", headers=HX).status_code == 403
    assert s.post(f"/console/events/unplanned/{uid}/ignore").status_code == 403
    assert s.post(f"/console/events/quarantine/{qid}/release").status_code == 403
    client.post("/console/logout", data={"csrf_token": s.csrf})

    make_user(world.db, "bob", "brand_admin", b.id)
    s = signed_in(client, "bob")
    assert client.get(f"/console/events/plan/{definition}").status_code == 404
    assert s.post(f"/console/events/plan/{definition}/status", {"status": "deprecated"}).status_code == 404
    assert s.post(f"/console/events/unplanned/{uid}/approve", headers=HX).status_code == 404
    assert s.post(f"/console/events/unplanned/{uid}/ignore").status_code == 404
    assert s.post(f"/console/events/quarantine/{qid}/release").status_code == 404
    assert "Product Viewed" not in client.get("/console/events").text
    assert "Wishlist Added" not in client.get("/console/events/unplanned").text
    assert "Product Viewed" not in client.get("/console/events/violations").text
    assert "暂无事件" in client.get("/console/events/stream").text
    assert client.get("/console/events/stream/minutes.json").json()["total"] == 0
    assert "web source" not in client.get("/console/events/sources").text
    client.post("/console/logout", data={"csrf_token": s.csrf})

    make_user(world.db, "root", "platform_admin", None)
    signed_in(client, "root")
    for url in (
        "/console/events",
        "/console/events/violations",
        "/console/events/quarantine",
        "/console/events/unplanned",
        "/console/events/stream",
        "/console/events/sources",
    ):
        shown = client.get(url)
        assert shown.status_code == 200 and "请先在顶部选择一个品牌" in shown.text, url
    assert client.get("/console/events/stream/minutes.json").json()["total"] == 0
