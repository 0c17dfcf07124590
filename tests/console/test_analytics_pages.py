"""The analysis pages (funnel, retention, LTV, distribution) and the insight scenes (B13) of the
console: each renders its form, table, chart option and CSV link in Chinese and in English; asks for
a sync or a brand when there is nothing to analyse; says so when the warehouse has no data for the
settings; and never shows another brand's rows. A Chromium test checks that ECharts draws them.

The warehouse is a DuckDB file written here row by row (the sync has its own tests), so every figure
below can be worked out by hand."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import duckdb
import pytest

from huiyuan.settings import get_settings
from huiyuan.warehouse import schema
from tests.conftest import World
from tests.console.conftest import LiveConsole, make_user, seed_brands, signed_in, warehouse_at

OTHER = "Bravo Secret Event"  # brand B's event, channel and coupon kind carry this mark
MARCH = "start=2026-03-01&end=2026-03-31"
FUNNEL = (
    "/console/analytics/funnel?start=2026-03-01&end=2026-03-31"
    "&step=Product+Viewed&step=Product+Added&step=Order+Completed"
)
RETENTION = (
    "/console/analytics/retention?start=2026-03-02&end=2026-03-08&as_of=2026-03-31"
    "&start_event=Product+Viewed&return_event=Product+Viewed&unit=week&periods=3"
)


def _key(day: date) -> int:
    return day.year * 10_000 + day.month * 100 + day.day


def _ts(day: date, hour: int = 2, minute: int = 0) -> datetime:
    return datetime(day.year, day.month, day.day, hour, minute)


def fill_warehouse(path: Path, brand: int, other: int, base: date = date(2026, 3, 1)) -> None:
    """Brand ``brand``'s members, orders, events, coupons and points around the month from ``base``
    (days are offsets from it), and one of each for ``other`` marked ``OTHER``."""

    def d(offset: int) -> date:
        return base + timedelta(days=offset)

    con = duckdb.connect(str(path))
    schema.create_all(con)
    members = [  # member, brand, channel, enrolled (offset)
        (11, brand, "store", -80),
        (12, brand, "app", -45),
        (13, brand, "store", 4),
        (14, brand, "mini_program", 9),
        (15, brand, "store", 19),
        (91, other, OTHER, 5),
    ]
    con.executemany(
        "INSERT INTO dim_member (brand_id, member_id, enroll_channel, enrolled_at, enrolled_date_key, status)"
        " VALUES (?, ?, ?, ?, ?, 'active')",
        [(b, m, c, _ts(d(o)), _key(d(o))) for m, b, c, o in members],
    )
    orders = [  # order, brand, member, channel, day, amount, refunded
        (1, brand, 11, "store", -40, "100.00", "0"),
        (2, brand, 11, "store", 2, "200.00", "0"),
        (3, brand, 11, "store", 14, "150.00", "0"),
        (4, brand, 12, "app", 7, "80.00", "0"),
        (5, brand, 13, "store", 5, "120.00", "0"),
        (6, brand, 14, "store", 11, "60.00", "10.00"),
        (7, brand, None, "web", 11, "40.00", "0"),
        (9, other, 91, OTHER, 9, "99999.00", "0"),
    ]
    con.executemany(
        "INSERT INTO fact_orders (brand_id, order_id, order_number, member_id, person_key, channel, status,"
        " paid_at, amount, list_amount, discount, refunded, units, date_key)"
        " VALUES (?, ?, ?, ?, ?, ?, 'paid', ?, ?, ?, 0, ?, 1, ?)",
        [
            (
                b,
                o,
                f"N{o}",
                m,
                f"m:{m}" if m else None,
                c,
                _ts(d(day)),
                Decimal(a),
                Decimal(a),
                Decimal(r),
                _key(d(day)),
            )
            for o, b, m, c, day, a, r in orders
        ],
    )
    events = [  # brand, person, event, day, minute
        (brand, "p1", "Product Viewed", 1, 0),
        (brand, "p1", "Product Added", 1, 5),
        (brand, "p1", "Order Completed", 1, 30),
        (brand, "p1", "Product Viewed", 9, 0),
        (brand, "p2", "Product Viewed", 2, 0),
        (brand, "p2", "Product Added", 2, 10),
        (brand, "p3", "Product Viewed", 3, 0),
        (brand, "p4", "Product Viewed", 8, 0),
        (brand, "p4", "Order Completed", 8, 20),
        (other, "pb", "Product Viewed", 2, 0),
        (other, "pb", OTHER, 2, 1),
    ]
    con.executemany(
        "INSERT INTO fact_events (brand_id, event_id, person_key, type, event, ts, date_key, properties)"
        " VALUES (?, ?, ?, 'track', ?, ?, ?, '{}')",
        [
            (b, i, p, e, _ts(d(day), 2, minute), _key(d(day)))
            for i, (b, p, e, day, minute) in enumerate(events, 1)
        ],
    )
    coupons = [  # brand, lock, coupon, template, member, state, kind, discount, day
        (brand, 1, 1, 7, 11, "redeemed", "cash", "10.00", 2),
        (brand, 2, 2, 7, 13, "redeemed", "cash", "15.00", 5),
        (brand, 3, 3, 8, 12, "returned", "cash", "30.00", 7),
        (other, 9, 9, 99, 91, "redeemed", OTHER, "500.00", 9),
    ]
    con.executemany(
        "INSERT INTO fact_coupon_redemptions (brand_id, lock_id, coupon_id, template_id, member_id, state,"
        " coupon_kind, discount, redeemed_at, date_key) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        [
            (b, lk, c, tp, m, s, k, Decimal(x), _ts(d(day)), _key(d(day)))
            for b, lk, c, tp, m, s, k, x, day in coupons
        ],
    )
    points = [  # brand, entry, member, type, kind, amount, funder, source, day
        (brand, 1, 11, "points", "earn", 200, "brand", "order", 2),
        (brand, 2, 12, "points", "earn", 50, "store", "action", 7),
        (brand, 3, 11, "points", "spend", -100, None, "order", 14),
        (brand, 4, 13, "points", "expire", -20, "brand", "lot", 19),
        (other, 9, 91, "bravo_points", "earn", 9999, "brand", "order", 9),
    ]
    con.executemany(
        "INSERT INTO fact_points (brand_id, entry_id, member_id, point_type, kind, amount, funder,"
        " source_type, ts, date_key) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        [(b, e, m, pt, k, a, f, s, _ts(d(day)), _key(d(day))) for b, e, m, pt, k, a, f, s, day in points],
    )
    con.close()


def _option(html: str, chart_id: str) -> dict[str, Any]:
    match = re.search(rf'<script type="application/json" id="{chart_id}-option">(.*?)</script>', html, re.S)
    assert match, f"no chart {chart_id}"
    return json.loads(match.group(1))


def _figures(html: str) -> dict[str, str]:
    rows = re.findall(r'<tr data-figure="([a-z_]+)"><th>[^<]*</th><td class="num value">([^<]*)</td>', html)
    return dict(rows)


@pytest.fixture
def analyst(client: Any, world: World, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "w.duckdb"
    monkeypatch.setattr(get_settings(), "warehouse_path", str(path))
    make_user(world.db, "ana", "analyst", world.brands[0].id)
    make_user(world.db, "ann", "analyst", world.brands[0].id, locale="en")
    signed_in(client, "ana")
    return path


def test_pages_ask_for_a_sync_then_for_a_brand(client: Any, world: World, analyst: Path) -> None:
    pages = ["/console/analytics/funnel", "/console/analytics/retention", "/console/analytics/ltv"]
    pages += ["/console/analytics/distribution", "/console/analytics/insights", "/console/analytics/paths"]
    pages += ["/console/analytics/events", "/console/analytics/attribution", "/console/analytics/heatmap"]
    for url in pages:
        page = client.get(url)
        assert page.status_code == 200, url
        assert "huiyuan warehouse sync" in page.text and 'id="analysis-blocked"' in page.text, url
        assert 'class="subnav"' in page.text and "洞察场景" in page.text
    assert client.get("/console/analytics/funnel.csv").status_code == 422

    make_user(world.db, "root", "platform_admin", None)
    signed_in(client, "root")
    fill_warehouse(analyst, world.brands[0].id, world.brands[1].id)
    for url in pages:
        page = client.get(url)
        assert page.status_code == 200 and "请先在顶部选择一个品牌" in page.text, url
        assert 'data-echarts="' not in page.text


def test_empty_warehouse_says_there_is_no_data(client: Any, world: World, analyst: Path) -> None:
    con = duckdb.connect(str(analyst))
    schema.create_all(con)
    con.close()
    paths = f"/console/analytics/paths?{MARCH}&event=Product+Viewed"
    events = f"/console/analytics/events?{MARCH}&event=Product+Viewed"
    for url in (
        FUNNEL,
        RETENTION,
        paths,
        events,
        "/console/analytics/ltv",
        "/console/analytics/distribution",
    ):
        page = client.get(url)
        assert page.status_code == 200, url
        assert 'id="analysis-empty"' in page.text and "暂无数据" in page.text, url
        assert 'data-echarts="' not in page.text, url
    for scene in ("overall", "new", "existing", "benefits", "activities"):
        page = client.get(f"/console/analytics/insights?scene={scene}&{MARCH}")
        assert page.status_code == 200 and 'id="analysis-empty"' in page.text, scene
        assert 'data-echarts="' not in page.text, scene
    # Without steps the funnel only asks for them.
    page = client.get("/console/analytics/funnel")
    assert 'id="analysis-prompt"' in page.text and 'id="analysis-empty"' not in page.text


def test_funnel_page_table_chart_and_csv(client: Any, world: World, analyst: Path) -> None:
    fill_warehouse(analyst, world.brands[0].id, world.brands[1].id)
    page = client.get(FUNNEL)
    assert page.status_code == 200
    html = page.text
    assert "漏斗分析" in html and "上一步转化率" in html and "下载 CSV" in html
    cells = re.findall(
        r'<td class="num">([^<]*)</td>', html.split('id="funnel-table"')[1].split("</table>")[0]
    )
    # People 4 → 2 → 1; overall 100 / 50 / 25 %; from the previous step 100 / 50 / 50 %.
    assert cells[:5] == ["4", "100.0%", "100.0%", "", ""]
    assert cells[5:8] == ["2", "50.0%", "50.0%"] and cells[10:13] == ["1", "25.0%", "50.0%"]
    option = _option(html, "funnel-chart")
    assert option["series"][0]["data"] == [4, 2, 1] and option["series"][1]["data"] == [100.0, 50.0, 50.0]
    assert '<option value="Product Viewed">' in html and OTHER not in html
    # The trend by entry day: entered and converted (reached the last step) people per day.
    trend = _option(html, "funnel-trend")
    entered, converted = trend["series"][0]["data"], trend["series"][1]["data"]
    assert sum(entered) == 4 and sum(converted) == 1 and len(entered) == len(trend["xAxis"]["data"])
    weekly = _option(client.get(FUNNEL + "&grain=week").text, "funnel-trend")
    assert sum(weekly["series"][0]["data"]) == 4 and len(weekly["xAxis"]["data"]) <= len(entered)

    csv_url = re.search(r'href="(/console/analytics/funnel\.csv\?[^"]+)"', html)
    assert csv_url
    download = client.get(csv_url.group(1).replace("&amp;", "&"))
    assert download.status_code == 200 and download.headers["content-type"].startswith("text/csv")
    lines = download.text.lstrip("\ufeff").splitlines()
    assert lines[0] == "Funnel"
    row = dict(zip(lines[1].split(","), lines[2].split(","), strict=True))
    assert (row["step_1"], row["step_2"], row["step_3"]) == ("4", "2", "1")

    strict = client.get(FUNNEL + "&mode=strict&window_hours=1")
    assert _option(strict.text, "funnel-chart")["series"][0]["data"] == [4, 2, 1]

    bad = client.get(FUNNEL.replace("end=2026-03-31", "end=2026-02-01"))
    assert (
        bad.status_code == 422
        and 'id="analysis-errors"' in bad.text
        and "end must not be before start" in bad.text
    )

    signed_in(client, "ann")
    english = client.get(FUNNEL).text
    assert "From previous step" in english and "Download CSV" in english and "Funnel conversion" in english


def test_retention_page_cohorts_heatmap_and_curve(client: Any, world: World, analyst: Path) -> None:
    fill_warehouse(analyst, world.brands[0].id, world.brands[1].id)
    page = client.get(RETENTION)
    assert page.status_code == 200
    html = page.text
    # Week of 2 March: p1, p2, p3 (p4 starts on 9 March, after the cohorts' end); p1 comes back in week 1.
    table = html.split('id="retention-table"')[1].split("</table>")[0]
    assert "2026-03-02" in table and "33.3%" in table
    heat = _option(html, "retention-heatmap")
    assert heat["series"][0]["type"] == "heatmap"
    assert [0, 0, 100.0] in heat["series"][0]["data"] and [1, 0, 33.3] in heat["series"][0]["data"]
    assert _option(html, "retention-curve")["series"][0]["data"][:3] == [100.0, 33.3, 0.0]
    assert "留存曲线" in html and "第 1 周" in html
    download = client.get(RETENTION.replace("/retention?", "/retention.csv?"))
    assert download.status_code == 200 and "2026-03-02" in download.text

    signed_in(client, "ann")
    english = client.get(RETENTION).text
    assert "Retention curve" in english and "Week 1" in english and "Cohort retention" in english


def test_ltv_and_distribution_pages(client: Any, world: World, analyst: Path) -> None:
    fill_warehouse(analyst, world.brands[0].id, world.brands[1].id)
    url = "/console/analytics/ltv?enrolled_from=2026-03-01&enrolled_to=2026-03-31&as_of=2026-03-31&months=2"
    html = client.get(url).text
    # March cohort: members 13, 14, 15 (three), 120 + 50 net in month 0 → 56.67 per member.
    table = html.split('id="ltv-table"')[1].split("</table>")[0]
    assert "2026-03" in table and "56.67" in table
    option = _option(html, "ltv-chart")
    assert option["series"] == [{"name": "2026-03", "type": "line", "data": [56.67, None, None]}]
    assert client.get(url.replace("/ltv?", "/ltv.csv?")).status_code == 200

    dist = "/console/analytics/distribution?start=2026-03-01&end=2026-03-31&measure=orders&edges=1,2"
    html = client.get(dist).text
    # Member 11 has two orders in March, members 12, 13, 14 one each.
    option = _option(html, "distribution-chart")
    assert option["xAxis"]["data"] == ["1 – 2", "≥ 2"] and option["series"][0]["data"] == [3, 1]
    assert "75.0%" in html and "会员分布" in html
    download = client.get(dist.replace("/distribution?", "/distribution.csv?"))
    assert download.status_code == 200 and download.text.count("\n") == 4
    bad = client.get(dist.replace("edges=1,2", "edges=2,1"))
    assert bad.status_code == 422 and "edges must be strictly ascending" in bad.text
    assert OTHER not in html and "99,999" not in html

    signed_in(client, "ann")
    assert "Members per bucket" in client.get(dist).text
    assert "Cumulative value per member by cohort" in client.get(url).text


def test_insight_scenes_show_the_brands_figures_only(client: Any, world: World, analyst: Path) -> None:
    fill_warehouse(analyst, world.brands[0].id, world.brands[1].id)
    pages = {
        s: client.get(f"/console/analytics/insights?scene={s}&{MARCH}")
        for s in ("overall", "new", "existing", "benefits", "activities")
    }
    for scene, page in pages.items():
        assert page.status_code == 200, scene
        assert 'id="analysis-empty"' not in page.text and 'data-echarts="' in page.text, scene
        assert OTHER not in page.text and "99,999" not in page.text and "9,999" not in page.text, scene
        assert 'aria-current="page"' in page.text and f'data-scene="{scene}"' in page.text

    overall = pages["overall"].text
    figures = _figures(overall)
    # March: 200 + 150 + 80 + 120 + 50 + 40 = 640 net over six orders; members 11-14 and one anonymous buyer.
    assert figures["sales"] == "¥640.00" and figures["orders"] == "6" and figures["buyers"] == "5"
    assert figures["members"] == "5" and figures["new_members"] == "3"
    assert figures["member_sales_share"] == "93.8%"  # 600 of 640
    assert "会员整体洞察" in overall and "关键指标" in overall
    # Channels by sales: store 520 (200 + 150 + 120 + 50), app 80, web 40.
    channels = _option(overall, "scene-channels")
    assert channels["xAxis"]["data"] == ["门店", "App", "网站"]
    assert channels["series"][0]["data"] == [520.0, 80.0, 40.0]

    new = _figures(pages["new"].text)
    # New buyers: 12 (first order 8 March), 13, 14; member 11 had ordered in January.
    assert new["new_buyers"] == "3" and new["new_buyer_sales"] == "¥250.00"
    assert new["converted"] == "2" and new["conversion_rate"] == "66.7%"  # 13 and 14 of 13, 14, 15
    existing = _figures(pages["existing"].text)
    assert existing["returning_buyers"] == "1" and existing["returning_sales"] == "¥350.00"
    assert existing["returning_repeat_rate"] == "100.0%"
    assert "scene-rfm" in pages["existing"].text

    benefits = pages["benefits"].text
    b = _figures(benefits)
    assert b["coupons_redeemed"] == "2" and b["coupon_cost"] == "¥25.00" and b["coupon_members"] == "2"
    assert (b["points_earned"], b["points_spent"], b["points_expired"]) == ("250", "100", "20")
    assert "bravo_points" not in benefits
    activities = _figures(pages["activities"].text)
    assert activities["active_people"] == "4" and activities["events"] == "9"
    assert activities["action_points"] == "50"

    download = client.get(f"/console/analytics/insights.csv?scene=benefits&{MARCH}")
    assert download.status_code == 200 and "核销券数" in download.text and OTHER not in download.text
    assert client.get("/console/analytics/insights?scene=nope").status_code == 422

    signed_in(client, "ann")
    english = client.get(f"/console/analytics/insights?scene=new&{MARCH}").text
    assert "New customers" in english and "New buyers" in english and "Key figures" in english


def test_paths_page_sankey_top_paths_and_csv(client: Any, world: World, analyst: Path) -> None:
    fill_warehouse(analyst, world.brands[0].id, world.brands[1].id)
    url = f"/console/analytics/paths?{MARCH}&event=Product+Viewed&steps=2"
    html = client.get(url).text
    # Sessions from Product Viewed: p1 twice (8 days apart), p2, p3, p4 — five sessions, four people.
    assert "5 个会话，4 人" in html and "路径分析" in html
    sankey = _option(html, "paths-chart")["series"][0]
    assert sankey["type"] == "sankey"
    links = {(link["source"], link["target"]): link["value"] for link in sankey["links"]}
    assert links == {
        ("Product Viewed", "+1 Product Added"): 2,
        ("Product Viewed", "+1 Order Completed"): 1,
        ("+1 Product Added", "+2 Order Completed"): 1,
    }
    table = html.split('id="paths-table"')[1].split("</table>")[0]
    assert "Product Viewed → Product Added" in table and OTHER not in html
    download = client.get(url.replace("/paths?", "/paths.csv?"))
    assert download.status_code == 200 and download.text.lstrip("\ufeff").startswith("Links")

    before = client.get(f"/console/analytics/paths?{MARCH}&event=Order+Completed&direction=before&steps=1")
    links = {(x["source"], x["target"]) for x in _option(before.text, "paths-chart")["series"][0]["links"]}
    assert links == {("-1 Product Added", "Order Completed"), ("-1 Product Viewed", "Order Completed")}
    assert 'id="analysis-prompt"' in client.get("/console/analytics/paths").text

    signed_in(client, "ann")
    english = client.get(url).text
    assert "5 sessions by 4 people" in english and "Most frequent paths" in english


def test_event_analysis_page_totals_trend_and_csv(client: Any, world: World, analyst: Path) -> None:
    fill_warehouse(analyst, world.brands[0].id, world.brands[1].id)
    url = (
        f"/console/analytics/events?{MARCH}&granularity=week"
        "&event=Product+Viewed&measure=count&property=&event=Product+Viewed&measure=users&property="
        "&event=Product+Viewed&measure=per_user&property="
    )
    html = client.get(url).text
    # Product Viewed: five times by four people (p1 on 2 and 10 March), 1.25 per person.
    table = html.split('id="events-table"')[1].split("</table>")[0]
    assert re.findall(r'<td class="num">([^<]*)</td>', table) == ["5", "4", "1.25"]
    option = _option(html, "events-chart")
    # Weeks from Monday: 2-4 March (p1, p2, p3), 9-10 March (p4, p1 again).
    assert option["xAxis"]["data"] == ["2026-03-02", "2026-03-09"]
    assert option["series"][0]["data"] == [3, 2] and option["series"][1]["data"] == [3, 2]
    assert "事件分析" in html and OTHER not in html
    download = client.get(
        re.search(r'href="(/console/analytics/events\.csv\?[^"]+)"', html).group(1).replace("&amp;", "&")
    )  # type: ignore[union-attr]
    assert download.status_code == 200 and "Event totals" in download.text and "Event trend" in download.text

    grouped = client.get(
        f"/console/analytics/events?{MARCH}&event=Product+Viewed&group_source=event&group_field=channel"
    )
    table = grouped.text.split('id="events-table"')[1].split("</table>")[0]
    assert "100.0%" in table and "—" in table
    bad = client.get(f"/console/analytics/events?{MARCH}&event=Product+Viewed&measure=sum")
    assert bad.status_code == 422 and "needs a property" in bad.text
    assert 'id="analysis-prompt"' in client.get("/console/analytics/events").text

    signed_in(client, "ann")
    assert "Event trend" in client.get(url).text


def test_attribution_page_credits_per_source_and_model(client: Any, world: World, analyst: Path) -> None:
    brand = world.brands[0].id
    fill_warehouse(analyst, brand, world.brands[1].id)
    con = duckdb.connect(str(analyst))
    touches = [  # id, person, event, campaign, UTC time: before orders 2 (3 March) and 5 (6 March)
        (101, "m:11", "Campaign Clicked", "spring", datetime(2026, 3, 2, 2)),
        (102, "m:13", "Campaign Clicked", "summer", datetime(2026, 3, 5, 2)),
        (103, "m:13", "Message Opened", "spring", datetime(2026, 3, 6, 1)),
    ]
    con.executemany(
        "INSERT INTO fact_events (brand_id, event_id, person_key, type, event, ts, date_key, properties)"
        " VALUES (?, ?, ?, 'track', ?, ?, ?, ?)",
        [(brand, i, p, e, ts, _key(ts.date()), json.dumps({"campaign": c})) for i, p, e, c, ts in touches],
    )
    con.close()
    url = (
        f"/console/analytics/attribution?{MARCH}&touch=Campaign+Clicked&source=campaign"
        "&touch=Message+Opened&source=campaign"
    )
    html = client.get(url).text
    option = _option(html, "attribution-chart")
    # Order 2: spring alone. Order 5: summer first, spring last (linear and 40/20/40 halve it).
    assert option["xAxis"]["data"] == ["spring", "summer"]
    by_model = {s["name"]: s["data"] for s in option["series"]}
    assert by_model["首次触点"] == [1.0, 1.0] and by_model["末次触点"] == [2.0, 0.0]
    assert by_model["线性"] == [1.5, 0.5] and by_model["位置（40/20/40）"] == [1.5, 0.5]
    totals = html.split('id="attribution-totals"')[1].split("</section>")[0]
    assert re.findall(r'<span class="value">([^<]*)</span>', totals)[2] == "2"  # attributed goals
    table = html.split('id="attribution-table"')[1].split("</table>")[0]
    assert "¥320.00" in table  # spring's last-touch revenue: 200 + 120
    download = client.get(url.replace("/attribution?", "/attribution.csv?"))
    assert download.status_code == 200 and "linear_conversions" in download.text and "spring" in download.text
    bad = client.get(url + "&goal=event")
    assert bad.status_code == 422 and "goal event is needed" in bad.text

    signed_in(client, "ann")
    assert "Conversions credited per source" in client.get(url).text


def test_heatmap_page_elements_and_grid(client: Any, world: World, analyst: Path) -> None:
    brand, other = world.brands[0].id, world.brands[1].id
    fill_warehouse(analyst, brand, other)
    size = {"page_width": 1000, "page_height": 3000}
    rows = [  # brand, person, event, properties
        (brand, "p1", "page_view", {"path": "/p/1"}),
        (brand, "p2", "page_view", {"path": "/p/1"}),
        (
            brand,
            "p1",
            "Element Clicked",
            {"path": "/p/1", "selector": "#buy", "text": "Buy", "x": 100, "y": 50, **size},
        ),
        (
            brand,
            "p2",
            "Element Clicked",
            {"path": "/p/1", "selector": "#buy", "text": "Buy", "x": 110, "y": 60, **size},
        ),
        (brand, "p1", "Element Clicked", {"path": "/p/1", "selector": "#fav", "x": 900, "y": 2900, **size}),
        (
            other,
            "pb",
            "Element Clicked",
            {"path": "/p/1", "selector": "#bravo-secret", "x": 5, "y": 5, **size},
        ),
    ]
    con = duckdb.connect(str(analyst))
    con.executemany(
        "INSERT INTO fact_events (brand_id, event_id, person_key, type, event, ts, date_key, properties)"
        " VALUES (?, ?, ?, 'track', ?, ?, 20260305, ?)",
        [
            (b, 200 + i, p, e, datetime(2026, 3, 5, 2, i), json.dumps(props))
            for i, (b, p, e, props) in enumerate(rows)
        ],
    )
    con.close()
    url = f"/console/analytics/heatmap?{MARCH}&page=/p/1&columns=10&rows=10"
    html = client.get(url).text
    summary = html.split('id="heatmap-summary"')[1].split("</section>")[0]
    # Two views, three clicks by both viewers.
    assert re.findall(r'<span class="value">([^<]*)</span>', summary) == ["2", "3", "150.0%", "100.0%"]
    grid = _option(html, "heatmap-chart")["series"][0]["data"]
    assert sorted(map(tuple, grid)) == [(1, 0, 2), (9, 9, 1)]
    elements = html.split('id="heatmap-elements"')[1].split("</table>")[0]
    assert "#buy" in elements and "#fav" in elements and "bravo-secret" not in html
    download = client.get(url.replace("/heatmap?", "/heatmap.csv?"))
    assert download.status_code == 200 and "#buy" in download.text and "bravo" not in download.text
    assert 'id="analysis-empty"' in client.get(url.replace("/p/1", "/nowhere")).text
    assert client.get(url.replace("/p/1", "nope")).status_code == 422

    signed_in(client, "ann")
    assert "Where the clicks fall" in client.get(url).text


# -- in Chromium -----------------------------------------------------------------------------------

CHROMIUM = Path("/usr/bin/chromium")
PASSWORD = "analytics-browser-password"


BRAND, OTHER_BRAND, USER = "lx-analytics", "bx-analytics", "analytics-admin"  # this module's own


@pytest.fixture(scope="module")
def server(live_console: LiveConsole, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The shared console with this module's brand (and another one) seeded, reading this module's
    warehouse file while the module's tests run (the app reads the setting on each request)."""
    ids = seed_brands(live_console.database_url, BRAND, OTHER_BRAND, USER, PASSWORD)
    warehouse = tmp_path_factory.mktemp("analytics") / "w.duckdb"
    today = datetime.now(UTC).date()
    fill_warehouse(warehouse, *ids, base=today - timedelta(days=20))
    with warehouse_at(warehouse):
        yield live_console.url


@pytest.mark.browser
@pytest.mark.skipif(not CHROMIUM.exists(), reason="Debian's Chromium (/usr/bin/chromium) is not installed")
def test_funnel_and_a_scene_draw_their_charts_in_chromium(server: str, tmp_path: Path) -> None:
    from playwright.sync_api import sync_playwright

    from huiyuan.auth.deps import rate_limiter

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
            page.goto(server + "/console/login?next=/console/analytics/funnel")
            page.fill('input[name="username"]', USER)
            page.fill('input[name="password"]', PASSWORD)
            page.locator('button[type="submit"]').click()
            page.wait_for_url("**/console/analytics/funnel")
            for n, step in enumerate(("Product Viewed", "Product Added", "Order Completed")):
                page.locator('#funnel-form input[name="step"]').nth(n).fill(step)
            page.locator('#funnel-form button[type="submit"]').click()
            page.wait_for_selector("#funnel-chart canvas")
            drawn = page.evaluate(
                "() => { const c = echarts.getInstanceByDom(document.getElementById('funnel-chart'));"
                " return c.getOption().series[0].data; }"
            )
            assert drawn == [4, 2, 1]
            assert "25.0%" in page.locator("#funnel-table").inner_text()

            page.get_by_role("link", name="洞察场景").first.click()
            page.wait_for_url("**/console/analytics/insights")
            page.locator('#scene-switcher a[data-scene="benefits"]').click()
            page.wait_for_url("**/insights?scene=benefits*")
            page.wait_for_selector("#scene-coupon-trend canvas")
            coupons = page.evaluate(
                "() => echarts.getInstanceByDom(document.getElementById('scene-coupon-trend'))"
                ".getOption().series[0].data.reduce((a, b) => a + b, 0)"
            )
            assert coupons == 2
            assert page.locator('tr[data-figure="coupon_cost"] .value').inner_text() == "¥25.00"
        except Exception:
            page.screenshot(path=str(tmp_path / "analytics-failure.png"), full_page=True)
            raise
        finally:
            chromium.close()
