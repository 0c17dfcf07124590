"""Console pages of the member profile in both languages: search (GET ?q= and the POSTed form),
a person's page (record and identifiers, graph data, loyalty, orders, salient features, timeline),
the timeline's kind chips and "more" rows through HTMX, the link from the member page, masked PII
for readers without ``members:pii``, another brand's OneID, platform users without a brand; and, in
headless Chromium, the identity graph drawn on a canvas.

Brand isolation and rendering do not depend on the database (the API tests run on both): SQLite
is enough here.
"""

from __future__ import annotations

import html
import json
import re
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import World
from tests.console.conftest import PASSWORD, LiveConsole, make_user, signed_in
from tests.profile.helpers import seed

HX = {"HX-Request": "true"}


def _text(page: str) -> str:
    return html.unescape(re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", page)))


def _part(page: str, marker: str, end: str = "</section>") -> str:
    return page.split(marker, 1)[1].split(end, 1)[0]


def _graph(page: str) -> dict[str, Any]:
    found = re.search(r"data-graph='([^']*)'", page)
    assert found, "no graph on the page"
    return dict(json.loads(html.unescape(found.group(1))))


@pytest.mark.parametrize("db", ["sqlite"], indirect=True)
def test_search_person_page_timeline_chips_and_more(
    client: Any, world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    seeded = seed(client, world)
    a, b = world.brands
    oneid, wang = seeded.oneid, seeded.wang
    make_user(world.db, "boss", "brand_admin", a.id)
    s = signed_in(client, "boss")
    assert 'href="/console/profile"' in client.get("/console").text

    # Search: by phone in the URL, by device id through the form; nobody; detected as member number.
    found = client.get("/console/profile", params={"q": "138 0013 8000"})
    assert found.status_code == 200
    results = _part(found.text, 'id="profile-results"')
    assert f'href="/console/profile/{oneid}"' in results and "王小明" in results and "手机号" in results
    posted = s.post("/console/profile", {"q": "dev-wang-ipad", "type": "device_id"})
    assert posted.status_code == 200 and f'href="/console/profile/{oneid}"' in posted.text
    assert "设备 ID" in _part(posted.text, 'id="profile-results"')
    assert 'id="profile-no-match"' in client.get("/console/profile", params={"q": "nobody-here"}).text
    by_number = client.get("/console/profile", params={"q": wang["member_number"]}).text
    assert "按会员号查找" in by_number

    # The person's page.
    page = client.get(f"/console/profile/{oneid}")
    assert page.status_code == 200, page.text
    assert f'id="profile-oneid">{oneid}<' in page.text and "王小明" in _text(page.text)
    loyalty = _text(_part(page.text, 'id="profile-loyalty"'))
    assert "积分 · 可用 500" in loyalty and "订单数 3" in loyalty
    identifiers = _text(_part(page.text, 'id="profile-identifiers"', "</table>"))
    assert "+8613800138000" in identifiers and "设备 ID" in identifiers and "dev-wang-ipad" in identifiers
    graph = _graph(page.text)
    assert len(graph["nodes"]) == 7 and len(graph["links"]) == 6
    assert graph["categories"][-1]["name"] == "其他 OneID" and len(graph["categories"]) == 8
    features = _text(_part(page.text, 'id="profile-features"'))
    assert "在「鞋履」上的消费占比是品牌的 4.88 倍（3 单，¥600.00）" in features
    assert "常在 20:00 前后活跃" in features and "偏好小程序：占其订单的 67%（品牌为 30%）" in features
    assert "客单价 ¥266.67：在品牌买家中位于第 17 百分位" in features
    assert "上装" not in features  # below the brand's share: not salient
    orders = _text(_part(page.text, 'id="profile-orders"'))
    assert orders.index("W-3") < orders.index("W-2") < orders.index("W-1")
    timeline = _part(page.text, 'id="timeline"')
    assert timeline.count("<tr data-kind=") == 8 and 'id="timeline-more"' not in timeline
    assert timeline.count('aria-pressed="true"') == 4

    # A chip through HTMX: only orders, the other chips off; the link without HTMX is the full page.
    chip = client.get(f"/console/profile/{oneid}/timeline", params={"kinds": "order"}, headers=HX)
    assert chip.status_code == 200 and chip.text.lstrip().startswith('<section class="card" id="timeline"')
    assert chip.text.count('<tr data-kind="order"') == 3 and chip.text.count("<tr data-kind=") == 3
    assert chip.text.count('aria-pressed="true"') == 1
    assert f'hx-get="/console/profile/{oneid}/timeline?kinds=event%2Corder"' in chip.text
    full = client.get(f"/console/profile/{oneid}", params={"kinds": "order"})
    assert _part(full.text, 'id="timeline"').count("<tr data-kind=") == 3

    # "More": pages of 3 rows, each "more" row replaced by the next rows and the next "more".
    from huiyuan.console import pages_profile

    monkeypatch.setattr(pages_profile, "TIMELINE_PAGE", 3)
    first = client.get(f"/console/profile/{oneid}")
    rows = _part(first.text, 'id="timeline"')
    seen = rows.count("<tr data-kind=")
    more = re.search(r'<tr id="timeline-more">.*?hx-get="([^"]+)"', rows, re.S)
    while more:
        nxt = client.get(html.unescape(more.group(1)), headers=HX)
        assert nxt.status_code == 200 and "<section" not in nxt.text
        seen += nxt.text.count("<tr data-kind=")
        more = re.search(r'<tr id="timeline-more">.*?hx-get="([^"]+)"', nxt.text, re.S)
    assert seen == 8

    # The member page links to the profile, which shows the same person.
    detail = client.get(f"/console/members/{wang['id']}").text
    assert f'href="/console/profile/member/{wang["id"]}"' in detail
    via_member = client.get(f"/console/profile/member/{wang['id']}")
    assert via_member.status_code == 200 and f'id="profile-oneid">{oneid}<' in via_member.text

    client.get("/console/lang?to=en&next=/console", follow_redirects=False)
    english = _text(client.get(f"/console/profile/{oneid}").text)
    assert "Identity graph" in english and "What sets them apart" in english and "身份图谱" not in english
    assert "Spends 4.88× the brand's share on 鞋履" in english
    client.get("/console/lang?to=zh&next=/console", follow_redirects=False)
    client.post("/console/logout", data={"csrf_token": s.csrf})

    # An analyst sees masks; brand B's admin gets the 404 page; a platform user must pick a brand.
    make_user(world.db, "ana", "analyst", a.id)
    s = signed_in(client, "ana")
    masked = client.get(f"/console/profile/{oneid}").text
    assert "138****8000" in masked and "13800138000" not in masked
    client.post("/console/logout", data={"csrf_token": s.csrf})
    make_user(world.db, "bob", "brand_admin", b.id)
    s = signed_in(client, "bob")
    assert client.get(f"/console/profile/{oneid}").status_code == 404
    assert client.get(f"/console/profile/member/{wang['id']}").status_code == 404
    assert client.get(f"/console/profile/{oneid}/timeline", headers=HX).status_code == 404
    assert f"/console/profile/{oneid}" not in client.get("/console/profile", params={"q": "13800138000"}).text
    client.post("/console/logout", data={"csrf_token": s.csrf})
    make_user(world.db, "root", "platform_admin", None)
    signed_in(client, "root")
    shown = client.get("/console/profile", params={"q": "13800138000"})
    assert shown.status_code == 200 and "请先在顶部选择一个品牌" in shown.text


# -- in a real browser -----------------------------------------------------------------------------

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking"]


BRAND, OTHER_BRAND, USER = "lx-profile", "bx-profile", "profile-admin"  # this module's own


@pytest.fixture(scope="module")
def server(live_console: LiveConsole) -> tuple[str, int]:
    """The shared console with this module's two brands seeded like the HTTP test (through the API;
    brand A gets the store ``alpha-s1`` the seed sells in)."""
    from fastapi.testclient import TestClient

    from huiyuan.app import create_app
    from huiyuan.kit.db import Database
    from huiyuan.kit.scope import system_for_brand
    from huiyuan.outbox.dispatcher import dispatch_pending
    from huiyuan.settings import get_settings
    from huiyuan.tenancy import service as tenancy
    from tests.conftest import BrandFixture
    from tests.factories import make_brand, make_key

    db = Database(live_console.database_url)
    try:
        brands = []
        for code in (BRAND, OTHER_BRAND):
            bid = make_brand(db, code)
            key = make_key(db, bid)
            brands.append(
                BrandFixture(id=bid, code=code, key=key, headers={"Authorization": f"Bearer {key}"})
            )
        with db.unit_of_work() as s:
            actor = system_for_brand(brands[0].id)
            tenancy.create_store(
                s, actor=actor, code="alpha-s1", name="alpha store 1", city="上海市", province="上海市"
            )
        world = World(db=db, platform_key=make_key(db, None, ["*"], name=f"platform {BRAND}"), brands=brands)
        # The seed dispatches the outbox in batches; other modules' leftovers go first, so that every
        # batch of the seed holds only its own events, as on a database of its own.
        while dispatch_pending(db).taken:
            pass
        with TestClient(create_app(get_settings(), db, start_worker=False)) as c:
            oneid = seed(c, world).oneid
        make_user(db, USER, "brand_admin", brands[0].id)
    finally:
        db.dispose()
    return live_console.url, oneid


@pytest.mark.browser
@pytest.mark.skipif(not CHROMIUM.exists(), reason="Debian's Chromium (/usr/bin/chromium) is not installed")
def test_profile_graph_draws_and_chips_filter_in_chromium(server: tuple[str, int]) -> None:
    from playwright.sync_api import sync_playwright

    from huiyuan.auth.deps import rate_limiter

    base, oneid = server
    rate_limiter().storage.reset()
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1280, "height": 900}, locale="zh-CN")
        page.set_default_timeout(10_000)
        try:
            page.goto(base + f"/console/login?next=/console/profile/{oneid}")
            page.fill('input[name="username"]', USER)
            page.fill('input[name="password"]', PASSWORD)
            page.locator('button[type="submit"]').click()
            page.wait_for_url(f"**/console/profile/{oneid}")
            page.wait_for_selector("#profile-graph canvas")
            box = page.locator("#profile-graph canvas").first.bounding_box()
            assert box is not None and box["width"] > 300 and box["height"] > 300
            assert page.locator("#timeline tbody tr[data-kind]").count() == 8
            # The "订单" chip alone: HTMX swaps the timeline in place, no navigation.
            for kind in ("event", "points", "coupon"):
                page.locator(f'#timeline a.chip[data-kind="{kind}"]').click()
                page.wait_for_function(
                    f"""!document.querySelector('#timeline a.chip[data-kind="{kind}"]')
                        .classList.contains('on')"""
                )
            assert page.locator("#timeline tbody tr[data-kind]").count() == 3
            assert page.locator('#timeline tbody tr[data-kind="order"]').count() == 3
            assert page.url.endswith(f"/console/profile/{oneid}")
        finally:
            browser.close()
