"""The event analysis page's distribution mode (people per bucket of how often they did an event, or
of the sum of its property: automatic buckets and edges, bar chart, table, CSV) and the click
heatmap's overlay (the clicks in the grid and the element boxes on one page-shaped canvas, in
relative and pixel mode) — then both drawn by ECharts in Chromium, where the boxes and the cells
must land on the same spot.

The warehouse is a DuckDB file written here row by row, so every figure can be worked out by hand."""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb
import pytest

from huiyuan.settings import get_settings
from huiyuan.warehouse import schema
from tests.conftest import World
from tests.console.conftest import LiveConsole, make_user, seed_brands, signed_in, warehouse_at

SECRET = "bravo-secret"
CLAIMED, PAID = "Coupon Claimed", "Order Paid"
PAGE = {"page_width": 1000, "page_height": 2000}


def fill(path: Path, brand: int, other: int, day: date) -> None:
    """Events of ``brand`` on the days from ``day``, and some of ``other`` marked ``SECRET``."""
    rows: list[tuple[int, str, str, int, dict[str, Any]]] = []  # brand, person, event, day offset, props
    # Coupons claimed per person: p1 3 (on two days), p2 1, p3 2, p4 5.
    for person, days in (("p1", [1, 1, 4]), ("p2", [2]), ("p3", [2, 3]), ("p4", [0, 1, 2, 3, 4])):
        rows += [(brand, person, CLAIMED, d, {}) for d in days]
    rows += [(other, "pb", CLAIMED, 1, {"tag": SECRET}) for _ in range(9)]
    # Paid per person: p1 100 + 50, p2 30.
    rows += [(brand, "p1", PAID, 1, {"amount": 100}), (brand, "p1", PAID, 2, {"amount": 50})]
    rows += [(brand, "p2", PAID, 2, {"amount": 30})]
    # The home page viewed by p1 and p2; #buy clicked by both (its box recorded by the snippet:
    # 200, 100, 400 × 100 on a 1000 × 2000 page), #fav by p1 (no box recorded).
    rows += [(brand, p, "page_view", 0, {"path": "/home"}) for p in ("p1", "p2")]
    box = {"element_width": 400, "element_height": 100}
    clicked = "Element Clicked"
    home = {"path": "/home", **PAGE}
    buy = {**home, **box, "selector": "#buy", "text": "Buy"}
    rows += [
        (brand, "p1", clicked, 0, {**buy, "x": 300, "y": 150, "offset_x": 100, "offset_y": 50}),
        (brand, "p2", clicked, 0, {**buy, "x": 500, "y": 180, "offset_x": 300, "offset_y": 80}),
        (brand, "p1", clicked, 0, {**home, "selector": "#fav", "x": 900, "y": 1900}),
        (other, "pb", clicked, 0, {**home, "selector": f"#{SECRET}", "x": 5, "y": 5}),
    ]
    con = duckdb.connect(str(path))
    schema.create_all(con)
    con.executemany(
        "INSERT INTO fact_events (brand_id, event_id, person_key, type, event, ts, date_key, properties)"
        " VALUES (?, ?, ?, 'track', ?, ?, ?, ?)",
        [
            (
                b,
                i,
                p,
                e,
                datetime(d.year, d.month, d.day, 2, i % 60),
                d.year * 10_000 + d.month * 100 + d.day,
                json.dumps(props),
            )
            for i, (b, p, e, offset, props) in enumerate(rows, 1)
            for d in [day + timedelta(days=offset)]
        ],
    )
    con.close()


def _option(html: str, chart_id: str) -> dict[str, Any]:
    match = re.search(rf'<script type="application/json" id="{chart_id}-option">(.*?)</script>', html, re.S)
    assert match, f"no chart {chart_id}"
    return json.loads(match.group(1))  # type: ignore[no-any-return]


def _cells(html: str, table_id: str) -> list[list[str]]:
    body = html.split(f'id="{table_id}"')[1].split("<tbody>")[1].split("</tbody>")[0]
    return [re.findall(r"<td[^>]*>([^<]*)</td>", row) for row in body.split("<tr>")[1:]]


@pytest.fixture
def analyst(client: Any, world: World, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "w.duckdb"
    monkeypatch.setattr(get_settings(), "warehouse_path", str(path))
    make_user(world.db, "ana", "analyst", world.brands[0].id)
    make_user(world.db, "ann", "analyst", world.brands[0].id, locale="en")
    fill(path, world.brands[0].id, world.brands[1].id, date(2026, 3, 2))
    signed_in(client, "ana")
    return path


MARCH = "start=2026-03-01&end=2026-03-31"
EVENTS = "/console/analytics/events"


def test_event_distribution_with_edges_and_automatic_buckets(client: Any, analyst: Path) -> None:
    url = f"{EVENTS}?{MARCH}&mode=distribution&event=Coupon+Claimed&dist_measure=times&edges=1,2,4"
    html = client.get(url).text
    # Times per person 3, 1, 2, 5: [1, 2) p2; [2, 4) p1, p3; ≥ 4 p4. The other brand's nine are not.
    assert _cells(html, "events-distribution-table") == [
        ["1", "1", "25.0%"],
        ["2 – 3", "2", "50.0%"],
        ["≥ 4", "1", "25.0%"],
    ]
    option = _option(html, "events-distribution-chart")
    assert option["xAxis"]["data"] == ["1", "2 – 3", "≥ 4"] and option["series"][0]["data"] == [1, 2, 1]
    assert option["series"][0]["type"] == "bar" and SECRET not in html
    assert "selected>按人分布" in html and "各区间人数" in html

    # Automatic: 1…5 in two whole-number buckets of width ⌈5 / 2⌉ = 3.
    auto = client.get(f"{EVENTS}?{MARCH}&mode=distribution&event=Coupon+Claimed&buckets=2").text
    assert _cells(auto, "events-distribution-table") == [["1 – 3", "3", "75.0%"], ["4 – 6", "1", "25.0%"]]
    # Days: p1 on 2, p2 on 1, p3 on 2, p4 on 5.
    days = client.get(
        f"{EVENTS}?{MARCH}&mode=distribution&event=Coupon+Claimed&dist_measure=days&edges=1,2,3"
    )
    assert _cells(days.text, "events-distribution-table") == [
        ["1", "1", "25.0%"],
        ["2", "2", "50.0%"],
        ["≥ 3", "1", "25.0%"],
    ]
    # The sum of the first series' property: p1 150, p2 30 → two buckets of 60 from 30.
    sums = client.get(
        f"{EVENTS}?{MARCH}&mode=distribution&event=Order+Paid&property=amount&dist_measure=sum&buckets=2"
    ).text
    assert _cells(sums, "events-distribution-table") == [
        ["30.00 – 90.00", "1", "50.0%"],
        ["90.00 – 150", "1", "50.0%"],
    ]

    link = re.search(r'href="(/console/analytics/events\.csv\?[^"]+)"', html)
    assert link and "mode=distribution" in link.group(1)
    download = client.get(link.group(1).replace("&amp;", "&"))
    assert download.status_code == 200 and download.headers["content-type"].startswith("text/csv")
    lines = list(csv.reader(io.StringIO(download.text.lstrip("\ufeff"))))
    assert lines[0] == ["Event distribution"] and lines[1] == ["bucket", "low", "high", "users", "share"]
    assert [line[:4] for line in lines[2:]] == [
        ["0", "1.0", "2.0", "1"],
        ["1", "2.0", "4.0", "2"],
        ["2", "4.0", "", "1"],
    ]

    missing = client.get(f"{EVENTS}?{MARCH}&mode=distribution&event=Order+Paid&dist_measure=sum")
    assert missing.status_code == 422 and "property is needed" in missing.text
    bad_edges = client.get(f"{EVENTS}?{MARCH}&mode=distribution&event=Coupon+Claimed&edges=3,1")
    assert bad_edges.status_code == 422 and "strictly ascending" in bad_edges.text
    assert client.get(link.group(1).replace("&amp;", "&").replace("edges=1", "edges=9,1")).status_code == 422
    nothing = client.get(f"{EVENTS}?{MARCH}&mode=distribution&event=Never+Happened").text
    assert 'id="analysis-empty"' in nothing and "events-distribution-table" not in nothing
    # The trend mode is untouched by the distribution's settings.
    trend = client.get(f"{EVENTS}?{MARCH}&event=Coupon+Claimed&edges=1,2&dist_measure=sum").text
    assert "events-table" in trend and "events-distribution-table" not in trend

    signed_in(client, "ann")
    english = client.get(url).text
    assert "People per bucket" in english and "Distribution per person" in english


HEATMAP = "/console/analytics/heatmap"


def test_heatmap_overlay_in_relative_and_pixel_mode(client: Any, analyst: Path) -> None:
    html = client.get(f"{HEATMAP}?{MARCH}&page=/home&mode=relative&columns=10&rows=20").text
    option = _option(html, "heatmap-chart")
    heat, boxes = option["series"]
    # Clicks at 300/1000, 150/2000 → (3, 1); 500/1000, 180/2000 → (5, 1); 900/1000, 1900/2000 → (9, 19).
    assert heat["type"] == "heatmap" and sorted(map(tuple, heat["data"])) == [
        (3, 1, 1),
        (5, 1, 1),
        (9, 19, 1),
    ]
    assert len(option["xAxis"][0]["data"]) == 10 and len(option["yAxis"][0]["data"]) == 20
    assert (option["xAxis"][1]["max"], option["yAxis"][1]["max"]) == (1.0, 1.0)
    # #buy's box: 200, 100, 400 × 100 of a 1000 × 2000 page; #fav recorded none, so it has no box.
    assert boxes["markArea"]["data"] == [
        [{"name": "#buy · 2 · 100.0%", "coord": [0.2, 0.05]}, {"coord": [0.6, 0.1]}]
    ]
    # The chart keeps the page's shape: twice as high as wide.
    assert "aspect-ratio:1 / 2.0000" in html and SECRET not in html
    assert "单格最多 1 次" in html
    # The table: per element its clicks, clickers, click rate, share and box (in percent of the page).
    assert _cells(html, "heatmap-elements") == [
        ["#buy", "Buy", "2", "2", "100.0%", "66.7%", "20.0%, 5.0% · 40.0% × 5.0%"],
        ["#fav", "—", "1", "1", "50.0%", "33.3%", "—"],
    ]

    pixels = _option(client.get(f"{HEATMAP}?{MARCH}&page=/home&mode=pixels&cell=100").text, "heatmap-chart")
    # The page is 1000 × 2000 pixels: 10 × 20 cells of 100 px, and the box in pixels.
    assert (len(pixels["xAxis"][0]["data"]), len(pixels["yAxis"][0]["data"])) == (10, 20)
    assert (pixels["xAxis"][1]["max"], pixels["yAxis"][1]["max"]) == (1000.0, 2000.0)
    assert pixels["series"][1]["markArea"]["data"][0][0]["coord"] == [200.0, 100.0]
    assert pixels["series"][1]["markArea"]["data"][0][1]["coord"] == [600.0, 200.0]
    assert sorted(map(tuple, pixels["series"][0]["data"])) == [(3, 1, 1), (5, 1, 1), (9, 19, 1)]
    in_pixels = client.get(f"{HEATMAP}?{MARCH}&page=/home&mode=pixels&cell=100").text
    assert _cells(in_pixels, "heatmap-elements")[0][-1] == "200, 100 · 400 × 100"

    download = client.get(f"{HEATMAP}.csv?{MARCH}&page=/home&mode=relative&columns=10&rows=20")
    lines = list(csv.reader(io.StringIO(download.text.lstrip("\ufeff"))))
    header = lines[lines.index(["Elements"]) + 1]
    buy = dict(zip(header, lines[lines.index(["Elements"]) + 2], strict=True))
    assert (buy["selector"], buy["left"], buy["top"], buy["width"], buy["height"]) == (
        "#buy",
        "0.2",
        "0.05",
        "0.4",
        "0.05",
    )

    signed_in(client, "ann")
    assert "Element boxes" in client.get(f"{HEATMAP}?{MARCH}&page=/home").text


# -- in Chromium -----------------------------------------------------------------------------------

CHROMIUM = Path("/usr/bin/chromium")
PASSWORD = "event-heatmap-browser-password"


BRAND, OTHER_BRAND, USER = "lx-event-heatmap", "bx-event-heatmap", "event-heatmap-admin"  # this module's own


@pytest.fixture(scope="module")
def server(live_console: LiveConsole, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, date]]:
    """The shared console with this module's brand (and another one) seeded, reading this module's
    warehouse file while the module's tests run (the app reads the setting on each request)."""
    ids = seed_brands(live_console.database_url, BRAND, OTHER_BRAND, USER, PASSWORD)
    warehouse = tmp_path_factory.mktemp("event-heatmap") / "w.duckdb"
    start = datetime.now(UTC).date() - timedelta(days=10)
    fill(warehouse, *ids, start)
    with warehouse_at(warehouse):
        yield live_console.url, start


@pytest.mark.browser
@pytest.mark.skipif(not CHROMIUM.exists(), reason="Debian's Chromium (/usr/bin/chromium) is not installed")
def test_distribution_and_overlay_drawn_in_chromium(server: tuple[str, date], tmp_path: Path) -> None:
    from playwright.sync_api import sync_playwright

    from huiyuan.auth.deps import rate_limiter

    base, start = server
    rate_limiter().storage.reset()
    with sync_playwright() as p:
        chromium = p.chromium.launch(
            executable_path=str(CHROMIUM),
            headless=True,
            args=["--no-sandbox", "--disable-gpu", "--no-first-run"],
        )
        page = chromium.new_page(viewport={"width": 1280, "height": 900}, locale="zh-CN")
        page.set_default_timeout(10_000)
        try:
            page.goto(base + "/console/login?next=/console/analytics/events")
            page.fill('input[name="username"]', USER)
            page.fill('input[name="password"]', PASSWORD)
            page.locator('button[type="submit"]').click()
            page.wait_for_url("**/console/analytics/events")
            page.select_option('#events-form select[name="mode"]', "distribution")
            page.locator('#events-form input[name="event"]').first.fill(CLAIMED)
            page.fill('#events-form input[name="edges"]', "1, 2, 4")
            page.locator('#events-form button[type="submit"]').click()
            page.wait_for_selector("#events-distribution-chart canvas")
            drawn = page.evaluate(
                "() => echarts.getInstanceByDom(document.getElementById('events-distribution-chart'))"
                ".getOption().series[0].data"
            )
            assert drawn == [1, 2, 1]

            page.goto(f"{base}/console/analytics/heatmap?start={start}&page=/home&columns=10&rows=20")
            page.wait_for_selector("#heatmap-chart canvas")
            shape = page.evaluate(
                "() => { const el = document.getElementById('heatmap-chart');"
                " return el.clientHeight / el.clientWidth; }"
            )
            assert abs(shape - 2.0) < 0.01  # the page is twice as high as wide
            # The cell (3, 1) and the point (0.35, 0.075) of the page — its centre — are one spot,
            # and #buy's box covers both clicked cells.
            spots = page.evaluate(
                """() => { const c = echarts.getInstanceByDom(document.getElementById('heatmap-chart'));
                  return [c.convertToPixel({seriesIndex: 0}, [3, 1]),
                          c.convertToPixel({seriesIndex: 1}, [0.35, 0.075]),
                          c.convertToPixel({seriesIndex: 1}, [0.2, 0.05]),
                          c.convertToPixel({seriesIndex: 1}, [0.6, 0.1]),
                          c.convertToPixel({seriesIndex: 0}, [5, 1]),
                          c.getOption().series[1].markArea.data.length]; }"""
            )
            cell, centre, top_left, bottom_right, other_cell, boxes = spots
            assert abs(cell[0] - centre[0]) < 1 and abs(cell[1] - centre[1]) < 1
            for x, y in (cell, other_cell):
                assert top_left[0] < x < bottom_right[0] and top_left[1] < y < bottom_right[1]
            assert boxes == 1
            assert "#buy · 2 · 100.0%" in page.locator("#heatmap-chart").evaluate(
                "el => echarts.getInstanceByDom(el).getOption().series[1].markArea.data[0][0].name"
            )
        except Exception:
            page.screenshot(path=str(tmp_path / "event-heatmap-failure.png"), full_page=True)
            raise
        finally:
            chromium.close()


def test_bucket_labels() -> None:
    from huiyuan.console.pages_event_analysis import bucket_label

    assert [bucket_label(1.0, 2.0, True), bucket_label(2.0, 4.0, True), bucket_label(4.0, None, True)] == [
        "1",
        "2 – 3",
        "≥ 4",
    ]
    # Counts between fractional edges, and sums, keep both ends as given.
    assert bucket_label(1.5, 3.0, True) == "1.50 – 3.00" and bucket_label(3.0, None, True) == "≥ 3"
    assert (
        bucket_label(20.5, 85.25, False) == "20.50 – 85.25"
        and bucket_label(85.25, 150.0, False) == "85.25 – 150"
    )
