"""Console pages of OneID in both languages: lookup by identifier and by OneID number (identifiers,
graph data, links, history), an un-merge through HTMX (reason required, audited, the split shown),
conflicts accepted and dismissed; read-only roles, another brand's ids, platform users without a
brand. In headless Chromium: the OneID graph drawn on a canvas, and the live event stream picking up
a new event by itself.

With ``HUIYUAN_CONSOLE_SCREENSHOTS=<dir>`` the browser test also saves the OneID page and the
tracking plan's violations page (for the docs) into that folder.
"""

from __future__ import annotations

import base64
import html
import json
import os
import re
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import World
from tests.console.conftest import PASSWORD, LiveConsole, make_user, signed_in

HX = {"HX-Request": "true"}


def _text(page: str) -> str:
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", page))


def _part(page: str, marker: str, end: str = "</table>") -> str:
    return page.split(marker, 1)[1].split(end, 1)[0]


def _link(client: Any, h: dict[str, str], left: str, right: str, reason: str = "same person") -> Any:
    lt, _, lv = left.partition(":")
    rt, _, rv = right.partition(":")
    body = {"left": {"type": lt, "value": lv}, "right": {"type": rt, "value": rv}, "reason": reason}
    return client.post("/api/v1/oneid/links", json=body, headers=h)


def _graph(page: str) -> dict[str, Any]:
    found = re.search(r"data-graph='([^']*)'", page)
    assert found, "no graph on the page"
    return dict(json.loads(html.unescape(found.group(1))))


def _seed(client: Any, world: World) -> dict[str, Any]:
    """Brand A: a tablet (anonymous id a1, device d1) and a signed-in user (u1, a phone), merged by an
    identify-like link d1 ↔ u1; OneID 1 holds all four."""
    h = world.brands[0].headers
    assert _link(client, h, "anonymous_id:a1", "device_id:d1").status_code == 201
    assert _link(client, h, "user_id:u1", "phone:13800138000").status_code == 201
    merged = _link(client, h, "device_id:d1", "user_id:u1", reason="signed in on the tablet")
    assert merged.status_code == 201 and merged.json()["status"] == "merged", merged.text
    return {"oneid": merged.json()["oneid"], "link_id": merged.json()["link_id"]}


def _audit(world: World, prefix: str) -> list[tuple[str, str | None]]:
    from sqlalchemy import select

    from huiyuan.audit.models import AuditEntry

    with world.db.unit_of_work(write=False) as s:
        rows = s.scalars(
            select(AuditEntry).where(AuditEntry.action.like(prefix + "%")).order_by(AuditEntry.id)
        )
        return [(e.action, (e.changes or {}).get("_note")) for e in rows]


def test_lookup_graph_unlink_and_conflicts(client: Any, world: World) -> None:
    seeded = _seed(client, world)
    oneid, link_id = seeded["oneid"], seeded["link_id"]
    h = world.brands[0].headers
    make_user(world.db, "op", "operator", world.brands[0].id)
    s = signed_in(client, "op")
    assert 'href="/console/oneid"' in client.get("/console").text

    # By phone, typed the way people type it: the OneID, four identifiers, the graph and its history.
    page = client.get("/console/oneid", params={"type": "phone", "value": "138 0013 8000"})
    assert page.status_code == 200 and f'id="oneid-number">{oneid}<' in page.text
    identifiers = _text(_part(page.text, 'id="oneid-identifiers"'))
    assert "+8613800138000" in identifiers and "手机号" in identifiers and "匿名 ID" in identifiers
    graph = _graph(page.text)
    assert len(graph["nodes"]) == 4 and len(graph["links"]) == 3
    assert {link["value"] for link in graph["links"]} == {"manual / manual / 1.00"}
    assert {link["status"] for link in graph["links"]} == {"active"}
    assert graph["categories"][-1]["name"] == "其他 OneID"
    history = _text(_part(page.text, 'id="oneid-history"'))
    assert f"OneID {oneid} 合并了" in history and "关联" in history
    assert page.text.count('class="filters unlink-form"') == 3
    assert client.get("/console/oneid", params={"oneid": str(oneid)}).text.count("unlink-form") == 3

    # Not found, junk and a malformed OneID number.
    missing = client.get("/console/oneid", params={"type": "phone", "value": "13900000000"})
    assert missing.status_code == 200 and 'id="oneid-not-found"' in missing.text
    junk = client.get("/console/oneid", params={"type": "device_id", "value": "undefined"})
    assert junk.status_code == 422 and "value:" in junk.text
    assert client.get("/console/oneid", params={"oneid": "abc"}).status_code == 422
    assert client.get("/console/oneid", params={"oneid": "999999"}).status_code == 404

    # Un-merge through HTMX: the reason is required, then the OneID splits and the page says so.
    form = {"oneid": str(oneid), "reason": "  "}
    no_reason = s.post(f"/console/oneid/links/{link_id}/unlink", form, headers=HX)
    assert no_reason.status_code == 422 and "<html" not in no_reason.text
    assert "reason: give the reason for unlinking" in no_reason.text
    done = s.post(f"/console/oneid/links/{link_id}/unlink", {**form, "reason": "两个人共用平板"}, headers=HX)
    assert done.status_code == 200 and done.text.lstrip().startswith('<div id="oneid-result"')
    result = _text(_part(done.text, 'id="unlink-result"', "</div>"))
    other = re.search(r"拆出部分： OneID (\d+)", result)
    assert f"已解除关联 #{link_id}" in result and other, result
    links = _part(done.text, 'id="oneid-links"')
    assert 'data-status="removed"' in links and "两个人共用平板" in links and "OneID <a" in links
    after = _graph(done.text)
    # The tablet's two identifiers, and the removed link's other end, now in the other OneID.
    assert len(after["nodes"]) == 3 and [n["value"] for n in after["nodes"] if n["category"] == 2] == [
        int(other.group(1))
    ]
    assert {link["status"] for link in after["links"]} == {"active", "removed"}
    assert done.text.count('class="filters unlink-form"') == 1
    history = _text(_part(done.text, 'id="oneid-history"'))
    assert f"OneID {oneid} 拆分出 {other.group(1)}" in history and "两个人共用平板" in history
    assert ("oneid.unlinked", "两个人共用平板") in _audit(world, "oneid.unlinked")
    split_off = client.get("/console/oneid", params={"type": "phone", "value": "13800138000"})
    assert f'id="oneid-number">{other.group(1)}<' in split_off.text
    # Without HTMX the whole page comes back.
    again = s.post(f"/console/oneid/links/{link_id}/unlink", {**form, "reason": "again"})
    assert again.status_code == 200 and "<html" in again.text and 'id="oneid-search"' in again.text

    # Conflicts: one over the user id limit (acceptable), one member clash (only dismissed).
    limited = _link(client, h, "user_id:u2", "phone:13800138000")
    assert limited.status_code == 409 and limited.json()["reason"] == "limit-exceeded"
    _link(client, h, "member_number:M1", "device_id:d7")
    _link(client, h, "member_number:M2", "device_id:d8")
    clash = _link(client, h, "device_id:d7", "device_id:d8")
    assert clash.status_code == 409
    listed = client.get("/console/oneid/conflicts")
    table = _part(listed.text, 'id="oneid-conflicts"')
    assert "超出每人上限" in table and "两个会员档案" in table
    assert table.count('value="accept"') == 1 and table.count('value="dismiss"') == 2
    limit_id, clash_id = limited.json()["conflict_id"], clash.json()["conflict_id"]
    refused = s.post(f"/console/oneid/conflicts/{clash_id}/resolve", {"action": "accept"})
    assert refused.status_code == 409 and "merge the members first" in refused.text
    accepted = s.post(
        f"/console/oneid/conflicts/{limit_id}/resolve", {"action": "accept"}, follow_redirects=False
    )
    assert accepted.status_code == 303 and accepted.headers["location"] == "/console/oneid/conflicts"
    dismissed = s.post(
        f"/console/oneid/conflicts/{clash_id}/resolve",
        {"action": "dismiss", "note": "两个会员，另行处理"},
        headers=HX,
    )
    assert dismissed.status_code == 200 and dismissed.headers["hx-redirect"] == "/console/oneid/conflicts"
    assert "这里没有冲突" in client.get("/console/oneid/conflicts").text
    closed = _text(client.get("/console/oneid/conflicts?status=dismissed").text)
    assert "两个会员，另行处理" in closed and "已驳回" in closed
    assert s.post(f"/console/oneid/conflicts/{clash_id}/resolve", {"action": "dismiss"}).status_code == 409
    assert [a for a, _ in _audit(world, "oneid.conflict")] == [
        "oneid.conflict_accepted",
        "oneid.conflict_dismissed",
    ]
    joined = client.get("/console/oneid", params={"type": "user_id", "value": "u2"})
    assert f'id="oneid-number">{other.group(1)}<' in joined.text  # linked despite the limit

    client.get("/console/lang?to=en&next=/console", follow_redirects=False)
    english = _text(client.get("/console/oneid", params={"oneid": str(oneid)}).text)
    assert "Identity graph" in english and "Merges and splits" in english and "身份图谱" not in english


# Brand isolation is the ORM's scope criteria plus the services' brand checks: SQLite is enough.
@pytest.mark.parametrize("db", ["sqlite"], indirect=True)
def test_read_only_roles_other_brands_and_platform_users(client: Any, world: World) -> None:
    seeded = _seed(client, world)
    a, b = world.brands
    oneid, link_id = seeded["oneid"], seeded["link_id"]
    conflict = _link(client, a.headers, "user_id:u2", "phone:13800138000").json()["conflict_id"]

    make_user(world.db, "ana", "analyst", a.id)
    s = signed_in(client, "ana")
    page = client.get("/console/oneid", params={"oneid": str(oneid)})
    assert page.status_code == 200 and "unlink-form" not in page.text
    assert "138****8000" in page.text and "13800138000" not in page.text  # no members:pii
    listed = client.get("/console/oneid/conflicts").text
    assert "超出每人上限" in listed and "/resolve" not in listed
    form = {"oneid": str(oneid), "reason": "x"}
    assert s.post(f"/console/oneid/links/{link_id}/unlink", form, headers=HX).status_code == 403
    assert s.post(f"/console/oneid/conflicts/{conflict}/resolve", {"action": "dismiss"}).status_code == 403
    client.post("/console/logout", data={"csrf_token": s.csrf})

    make_user(world.db, "bob", "brand_admin", b.id)
    s = signed_in(client, "bob")
    assert client.get("/console/oneid", params={"oneid": str(oneid)}).status_code == 404
    found = client.get("/console/oneid", params={"type": "phone", "value": "13800138000"})
    assert 'id="oneid-not-found"' in found.text
    assert s.post(f"/console/oneid/links/{link_id}/unlink", form, headers=HX).status_code == 404
    assert s.post(f"/console/oneid/conflicts/{conflict}/resolve", {"action": "dismiss"}).status_code == 404
    assert "超出每人上限" not in client.get("/console/oneid/conflicts").text
    client.post("/console/logout", data={"csrf_token": s.csrf})
    assert _audit(world, "oneid.unlinked") == [] and _audit(world, "oneid.conflict") == []

    make_user(world.db, "root", "platform_admin", None)
    signed_in(client, "root")
    for url in ("/console/oneid", "/console/oneid/conflicts", f"/console/oneid?oneid={oneid}"):
        shown = client.get(url)
        assert shown.status_code == 200 and "请先在顶部选择一个品牌" in shown.text, url


# -- in a real browser -----------------------------------------------------------------------------

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking"]
BRAND, USER = "lx-oneid", "oneid-admin"  # this module's own on the shared console


def _seed_browser(url: str) -> str:
    """A brand with a planned event, a week-old plan broken a few ways, a stream of events and a
    OneID of five identifiers (one link refused over a limit); the write key of its web source."""
    from huiyuan.auth import service as auth
    from huiyuan.events import service as events
    from huiyuan.events import sources
    from huiyuan.identity import config
    from huiyuan.identity.linking import Ident
    from huiyuan.kit.db import Database
    from huiyuan.kit.scope import SYSTEM, system_for_brand
    from huiyuan.tenancy import service as tenancy

    db = Database(url)
    with db.unit_of_work() as s:
        brand = tenancy.create_brand(s, actor=SYSTEM, code=BRAND, name="乐享百货", member_number_prefix="LX")
        brand_id = brand.id
        auth.create_user(
            s, actor=SYSTEM, username=USER, password=PASSWORD, role="brand_admin", brand_id=brand_id
        )
    actor = system_for_brand(brand_id)
    with db.unit_of_work(actor.scope) as s:
        key = sources.create_source(s, actor=actor, name="官网 web", kind="web").write_key
        sources.create_source(s, actor=actor, name="小程序 app", kind="app")
        events.define_event(
            s,
            actor=actor,
            name="Product Viewed",
            properties=[
                {"name": "sku", "type": "string", "required": True},
                {"name": "price", "type": "number", "required": True},
                {"name": "currency", "type": "string", "enum": ["CNY"]},
            ],
            description="商品详情页曝光",
        )
        events.define_event(
            s, actor=actor, name="Order Paid", properties=[{"name": "value", "type": "number"}]
        )
    with db.unit_of_work(actor.scope) as s:
        w = config.writer(s, brand_id, "seed")
        w.link(
            Ident("anonymous_id", "web-7f3a"),
            Ident("device_id", "iPad-0042"),
            source="identify",
            rule="identify.anonymous",
        )
        w.link(
            Ident("user_id", "LX00000042"),
            Ident("phone", "13800138000"),
            source="member",
            rule="member.phone",
        )
        w.link(
            Ident("user_id", "LX00000042"),
            Ident("wechat_openid", "oWx-9f8e"),
            source="identify",
            rule="externalIds",
            confidence=0.95,
        )
        w.link(
            Ident("device_id", "iPad-0042"),
            Ident("user_id", "LX00000042"),
            source="identify",
            rule="identify.user",
            confidence=0.9,
        )
        w.link(
            Ident("email", "wang@example.com"),
            Ident("phone", "13800138000"),
            source="order",
            rule="order.checkout",
        )
        w.link(
            Ident("user_id", "LX00000099"),
            Ident("phone", "13800138000"),
            source="identify",
            rule="traits.phone",
        )
    db.dispose()
    return key


def _send(server: str, key: str, path: str, body: dict[str, Any]) -> None:
    request = urllib.request.Request(
        server + path,
        data=json.dumps(body).encode(),
        headers={
            "Content-Type": "application/json",
            "Authorization": "Basic " + base64.b64encode(f"{key}:".encode()).decode(),
        },
    )
    with urllib.request.urlopen(request, timeout=10) as r:
        assert r.status == 200


@pytest.fixture(scope="module")
def server(live_console: LiveConsole) -> tuple[str, str]:
    """The shared console with this module's brand seeded and a batch of its events sent."""
    key = _seed_browser(live_console.database_url)
    base = live_console.url
    batch = [
        {"type": "page", "anonymousId": "web-7f3a", "name": "首页", "properties": {"path": "/"}},
        {
            "type": "track",
            "userId": "LX00000042",
            "event": "Product Viewed",
            "properties": {"sku": "COAT-1", "price": 399, "currency": "CNY"},
        },
        {
            "type": "track",
            "userId": "LX00000042",
            "event": "Product Viewed",
            "properties": {"sku": "COAT-2", "price": "399"},
        },
        {
            "type": "track",
            "anonymousId": "web-7f3a",
            "event": "Product Viewed",
            "properties": {"price": 59, "currency": "USD"},
        },
        {"type": "track", "userId": "LX00000042", "event": "Wishlist Added", "properties": {"sku": "COAT-1"}},
        {"type": "identify", "userId": "LX00000042", "anonymousId": "web-7f3a", "traits": {"tier": "gold"}},
        {"type": "track", "userId": "LX00000042", "event": "Order Paid", "properties": {"value": "399.00"}},
        # No user and no anonymous id: breaks the spec, so it is quarantined whatever the brand's mode.
        {"type": "track", "event": "Product Viewed", "properties": {"sku": "COAT-3", "price": 299}},
    ]
    _send(base, key, "/v1/batch", {"batch": batch})
    return base, key


@pytest.mark.browser
@pytest.mark.skipif(not CHROMIUM.exists(), reason="Debian's Chromium (/usr/bin/chromium) is not installed")
def test_oneid_graph_and_live_stream_in_chromium(server: tuple[str, str], tmp_path: Path) -> None:
    from playwright.sync_api import sync_playwright

    from huiyuan.auth.deps import rate_limiter

    base, key = server
    rate_limiter().storage.reset()
    shots = (
        Path(os.environ["HUIYUAN_CONSOLE_SCREENSHOTS"])
        if os.environ.get("HUIYUAN_CONSOLE_SCREENSHOTS")
        else None
    )
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1280, "height": 900}, locale="zh-CN")
        page.set_default_timeout(10_000)
        try:
            page.goto(base + "/console/login?next=/console/oneid")
            page.fill('input[name="username"]', USER)
            page.fill('input[name="password"]', PASSWORD)
            page.locator('button[type="submit"]').click()
            page.wait_for_url("**/console/oneid")
            page.select_option('#oneid-search select[name="type"]', "phone")
            page.fill('#oneid-search input[name="value"]', "13800138000")
            page.locator('#oneid-search button[type="submit"]').click()
            page.wait_for_selector("#oneid-graph canvas")
            box = page.locator("#oneid-graph canvas").first.bounding_box()
            assert box is not None and box["width"] > 600 and box["height"] > 300
            assert "+8613800138000" in page.locator("#oneid-identifiers").inner_text()
            assert page.locator("#oneid-links tr[data-status]").count() == 6
            page.wait_for_timeout(1500)  # let the force layout settle
            page.locator("#oneid-graph").screenshot(path=str(tmp_path / "graph.png"))
            assert (tmp_path / "graph.png").stat().st_size > 10_000  # drawn, not blank
            if shots:
                shots.mkdir(parents=True, exist_ok=True)
                page.screenshot(path=str(shots / "console-oneid-graph.png"), full_page=True)

            page.goto(base + "/console/events/stream")
            page.wait_for_selector("#minutes-chart canvas")
            rows = page.locator("#stream-rows tr[data-event-id]")
            assert rows.count() == 7
            _send(
                base,
                key,
                "/v1/track",
                {"userId": "LX00000042", "event": "Checkout Started", "properties": {"value": 799}},
            )
            page.wait_for_function(
                "document.querySelectorAll('#stream-rows tr[data-event-id]').length === 8", timeout=8_000
            )
            assert "Checkout Started" in page.locator("#stream-rows tr").first.inner_text()
            assert page.url.endswith("/console/events/stream")  # polled in place, no navigation

            if shots:
                page.goto(base + "/console/events/violations")
                page.wait_for_selector("#violating-events")
                page.screenshot(path=str(shots / "console-events-violations.png"), full_page=True)
        except Exception:
            Path("test-artifacts").mkdir(exist_ok=True)
            page.screenshot(path="test-artifacts/test_oneid_console.png", full_page=True)
            raise
        finally:
            browser.close()
