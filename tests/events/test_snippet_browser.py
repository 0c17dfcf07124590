"""The browser snippet in Debian's Chromium (headless, through Playwright): a shop page on another
origin loads ``/v1/snippet.js`` with a write key; its page view, element clicks (selector, text, page
position, viewport and page size, offset inside the element), a code event, identify and a
single-page navigation arrive as Segment messages in the store."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from fastapi.responses import HTMLResponse
from sqlalchemy import select

from huiyuan.events.models import Event
from huiyuan.kit.db import Database
from tests.conftest import World
from tests.events.conftest import make_source, wait_for

CHROMIUM = Path("/usr/bin/chromium")
pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(
        not CHROMIUM.exists(), reason="Debian's Chromium (/usr/bin/chromium) is not installed"
    ),
    pytest.mark.parametrize("db", ["sqlite"], indirect=True),
]
ARGS = ["--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking"]

PAGE = """<!doctype html><html><head><meta charset="utf-8"><title>蓝溪商城</title>
<script async src="{snippet}" data-write-key="{key}"></script></head>
<body style="margin:0">
  <div style="height:300px">banner</div>
  <button id="buy" style="width:200px;height:50px">立即购买</button>
  <ul><li><a href="#a">第一</a></li><li><a href="#b" style="display:block;width:120px">第二 件</a></li></ul>
  <form><input name="phone" value="13800138000"></form>
  <div data-hy-ignore><button>secret</button></div>
  <div style="height:2000px"></div>
</body></html>"""


def events(db: Database) -> list[Event]:
    with db.unit_of_work(write=False) as s:
        return list(s.scalars(select(Event).order_by(Event.id)))


def test_page_views_and_clicks_from_a_browser(app: Any, live_server: str, db: Database, world: World) -> None:
    from playwright.sync_api import sync_playwright

    _sid, key = make_source(db, world.brands[0].id)

    @app.get("/test-shop", include_in_schema=False)
    def shop() -> HTMLResponse:
        return HTMLResponse(PAGE.format(snippet=f"{live_server}/v1/snippet.js", key=key))

    # The shop is another origin (localhost) than the collector (127.0.0.1): a cross-origin send.
    shop_url = live_server.replace("127.0.0.1", "localhost") + "/test-shop"
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=ARGS)
        try:
            page = browser.new_page(viewport={"width": 1200, "height": 800})
            page.goto(shop_url)
            page.wait_for_function("window.huiyuan && window.huiyuan.loaded")
            page.mouse.click(50, 320)  # 50 px into the button, 20 px down
            page.click("ul li:nth-of-type(2) a")
            page.click("input[name=phone]")
            page.click("[data-hy-ignore] button")
            page.evaluate("window.scrollTo(0, 400)")
            page.mouse.click(60, 310)  # the tall spacer, 400 px further down the page
            page.evaluate(
                "huiyuan.identify('LX00000001', {tier: 'gold'});"
                "huiyuan.track('Coupon Claimed', {template: 'T-1'});"
                "history.pushState({}, '', '/test-shop/cart');"
                "huiyuan.flush()"
            )
            wait_for(lambda: len(events(db)) >= 8)
            anonymous_id = page.evaluate("huiyuan.anonymousId()")
        finally:
            browser.close()

    stored = events(db)
    kinds = [(e.type, e.event) for e in stored]
    assert kinds[0] == ("page", "蓝溪商城")
    assert ("track", "Coupon Claimed") in kinds and ("identify", None) in kinds
    assert [e for e in stored if e.type == "page"][-1].properties["path"] == "/test-shop/cart"  # type: ignore[index]
    assert all(e.anonymous_id == anonymous_id and e.brand_id == world.brands[0].id for e in stored)
    assert stored[0].context["library"]["name"] == "huiyuan.js"  # type: ignore[index]

    clicks = [e.properties or {} for e in stored if e.event == "Element Clicked"]
    assert len(clicks) == 4  # the ignored button is not among them
    buy, link, field, scrolled = clicks
    assert buy["selector"] == "#buy" and buy["text"] == "立即购买" and buy["tag"] == "button"
    assert (buy["x"], buy["y"], buy["offset_x"], buy["offset_y"]) == (50, 320, 50, 20)
    assert (buy["viewport_width"], buy["viewport_height"]) == (1200, 800)
    assert buy["page_height"] > 2000 and (buy["element_width"], buy["element_height"]) == (200, 50)
    assert link["selector"] == "body > ul > li:nth-of-type(2) > a" and link["text"] == "第二 件"
    assert link["href"] == "#b"
    assert field["tag"] == "input" and field["text"] == ""  # input values are never read
    assert "13800138000" not in str([e.properties for e in stored])
    assert scrolled["y"] - scrolled["client_y"] == 400  # page position = viewport position + scroll
    identify = next(e for e in stored if e.type == "identify")
    assert identify.user_id == "LX00000001" and identify.traits == {"tier": "gold"}
