"""The breakdowns of the console's funnel and retention pages: per value of an event property the
step counts and conversion (the value on the step-1 event or on the step-N event), or the people,
cohort sizes and retention by period — the largest values kept and the rest folded into "other" —
as a table, an ECharts chart and a CSV with every value. Each figure is checked by hand and against
the analysis run directly on the warehouse; bad settings are answered with the reason; another
brand's values never appear. A Chromium test checks that ECharts draws both breakdown charts.

The warehouse is a DuckDB file written here row by row, so every figure can be worked out by hand."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from huiyuan.analytics import engine, funnel, retention
from huiyuan.console import pages_funnel, pages_retention
from huiyuan.settings import get_settings
from huiyuan.warehouse import connect, schema
from tests.conftest import World
from tests.console.conftest import LiveConsole, make_user, seed_brands, signed_in, warehouse_at

SECRET = "bravo-secret"  # the other brand's channel
STEPS = ("Product Viewed", "Product Added", "Order Completed")


def _key(day: date) -> int:
    return day.year * 10_000 + day.month * 100 + day.day


def fill_events(path: Path, brand: int, other: int, base: date = date(2026, 3, 1)) -> None:
    """Events of brand ``brand`` around the month from ``base`` (a Sunday: day 1 is a Monday), with a
    ``channel`` property, and one of ``other`` with the channel ``SECRET``.

    Funnel View → Add → Order in a day (first-touch channel; Add's channel):
    p1 3 steps (app; web), p2 2 (app; app), p3 1 (web), p4 1 (store; View then Order, no Add),
    p5 2 (none; store), p6 3 (web; web), p7 1 (mini). Views again: p1 on day 10, p3 on day 17."""

    def ts(day: int, minute: int) -> datetime:
        d = base + timedelta(days=day)
        return datetime(d.year, d.month, d.day, 2, minute)

    rows = [  # brand, person, event, day, minute, properties
        (brand, "p1", "Product Viewed", 2, 0, {"channel": "app"}),
        (brand, "p1", "Product Added", 2, 5, {"channel": "web"}),
        (brand, "p1", "Order Completed", 2, 30, {"channel": "app"}),
        (brand, "p1", "Product Viewed", 10, 0, {"channel": "app"}),
        (brand, "p2", "Product Viewed", 3, 0, {"channel": "app"}),
        (brand, "p2", "Product Added", 3, 10, {"channel": "app"}),
        (brand, "p3", "Product Viewed", 4, 0, {"channel": "web"}),
        (brand, "p3", "Product Viewed", 17, 0, {"channel": "web"}),
        (brand, "p4", "Product Viewed", 5, 0, {"channel": "store"}),
        (brand, "p4", "Order Completed", 5, 20, {}),
        (brand, "p5", "Product Viewed", 6, 0, {}),
        (brand, "p5", "Product Added", 6, 5, {"channel": "store"}),
        (brand, "p6", "Product Viewed", 9, 0, {"channel": "web"}),
        (brand, "p6", "Product Added", 9, 5, {"channel": "web"}),
        (brand, "p6", "Order Completed", 9, 10, {"channel": "web"}),
        (brand, "p7", "Product Viewed", 10, 30, {"channel": "mini"}),
        (other, "pb", "Product Viewed", 2, 0, {"channel": SECRET}),
        (other, "pb", "Product Added", 2, 1, {"channel": SECRET}),
    ]
    con = duckdb.connect(str(path))
    schema.create_all(con)
    con.executemany(
        "INSERT INTO fact_events (brand_id, event_id, person_key, type, event, ts, date_key, properties)"
        " VALUES (?, ?, ?, 'track', ?, ?, ?, ?)",
        [
            (b, i, p, e, ts(day, minute), _key(base + timedelta(days=day)), json.dumps(props))
            for i, (b, p, e, day, minute, props) in enumerate(rows, 1)
        ],
    )
    con.close()


def funnel_url(
    start: date = date(2026, 3, 1), end: date = date(2026, 3, 31), path: str = "funnel", **extra: Any
) -> str:
    steps = "".join(f"&step={s.replace(' ', '+')}" for s in STEPS)
    rest = "".join(f"&{k}={v}" for k, v in extra.items())
    return f"/console/analytics/{path}?start={start}&end={end}{steps}{rest}"


def retention_url(start: date = date(2026, 3, 2), path: str = "retention", **extra: Any) -> str:
    end, as_of = start + timedelta(days=13), start + timedelta(days=29)
    rest = "".join(f"&{k}={v}" for k, v in extra.items())
    return (
        f"/console/analytics/{path}?start={start}&end={end}&as_of={as_of}"
        f"&start_event=Product+Viewed&return_event=Product+Viewed&unit=week&periods=3{rest}"
    )


def direct(path: Path, fn: Any, *args: Any) -> list[dict[str, Any]]:
    """The analysis run straight on the warehouse file, not through the console."""
    con = connect(path)
    try:
        return engine.records(fn(con.table("fact_events"), *args))
    finally:
        con.disconnect()


def _option(html: str, chart_id: str) -> dict[str, Any]:
    match = re.search(rf'<script type="application/json" id="{chart_id}-option">(.*?)</script>', html, re.S)
    assert match, f"no chart {chart_id}"
    return json.loads(match.group(1))


def _table(html: str, table_id: str) -> list[list[str]]:
    """The body rows of a table as lists of cell texts."""
    body = html.split(f'id="{table_id}"')[1].split("</table>")[0].split("<tbody>")[1]
    return [
        [re.sub(r"\s+", " ", c).strip() for c in re.findall(r"<td[^>]*>(.*?)</td>", row, re.S)]
        for row in re.findall(r"<tr[^>]*>(.*?)</tr>", body, re.S)
    ]


def _csv(text: str) -> tuple[str, list[dict[str, str]]]:
    lines = text.lstrip("\ufeff").splitlines()
    headers = lines[1].split(",")
    return lines[0], [dict(zip(headers, line.split(","), strict=True)) for line in lines[2:]]


@pytest.fixture
def analyst(client: Any, world: World, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "w.duckdb"
    monkeypatch.setattr(get_settings(), "warehouse_path", str(path))
    make_user(world.db, "ana", "analyst", world.brands[0].id)
    make_user(world.db, "ann", "analyst", world.brands[0].id, locale="en")
    fill_events(path, world.brands[0].id, world.brands[1].id)
    signed_in(client, "ana")
    return path


def test_funnel_breakdown_by_first_touch(client: Any, world: World, analyst: Path) -> None:
    brand = world.brands[0].id
    html = client.get(funnel_url(breakdown="channel", top=3)).text
    # The overall funnel is unchanged by the breakdown: 7 → 4 (p1, p2, p5, p6) → 2 (p1, p6).
    assert _option(html, "funnel-chart")["series"][0]["data"] == [7, 4, 2]
    rows = _table(html, "funnel-breakdown-table")
    # app: p1, p2; web: p3, p6; then one person each, by name: mini, then store and no value folded.
    assert [r[:5] for r in rows] == [
        ["app", "2", "2", "1", "50.0%"],
        ["web", "2", "1", "1", "50.0%"],
        ["mini", "1", "0", "0", "0.0%"],
        ["其他（2 个取值）", "2", "1", "0", "0.0%"],
    ]
    assert rows[0][5] == "30 min" and rows[3][5] == "—"  # p1's time from View to Order; none for Other

    request = funnel.FunnelRequest.model_validate(
        {
            "start": "2026-03-01",
            "end": "2026-03-31",
            "steps": [{"event": s} for s in STEPS],
            "breakdown": "channel",
        }
    )
    computed = {
        r["breakdown"]: [int(r[f"step_{k}"]) for k in (1, 2, 3)]
        for r in direct(analyst, funnel.funnel, brand, request)
    }
    assert computed == {
        "app": [2, 2, 1],
        "web": [2, 1, 1],
        "mini": [1, 0, 0],
        "store": [1, 0, 0],
        None: [1, 1, 0],
    }
    for label, *counts in (r[:4] for r in rows[:3]):
        assert computed[label] == [int(c) for c in counts]
    assert [sum(computed[v][k] for v in ("store", None)) for k in range(3)] == [2, 1, 0]

    option = _option(html, "funnel-breakdown-chart")
    assert option["xAxis"]["data"] == ["app", "web", "mini", "其他（2 个取值）"]
    assert [s["name"] for s in option["series"]] == [
        "到第 2 步 · Product Added",
        "到第 3 步 · Order Completed",
    ]
    assert option["series"][0]["data"] == [100.0, 50.0, 0.0, 50.0]
    assert option["series"][1]["data"] == [50.0, 50.0, 0.0, 0.0]
    assert "按 channel 细分的转化" in html and SECRET not in html

    # Every value is listed when the kept number allows it; people without the value are "not set".
    rows = _table(client.get(funnel_url(breakdown="channel")).text, "funnel-breakdown-table")
    assert [r[0] for r in rows] == ["app", "web", "mini", "store", "（未设置）"]


def test_funnel_breakdown_by_the_value_on_step_n(client: Any, world: World, analyst: Path) -> None:
    brand = world.brands[0].id
    html = client.get(funnel_url(breakdown="channel", attribution="step:2")).text
    assert '<option value="step:2" selected>第 2 步事件</option>' in html
    rows = _table(html, "funnel-breakdown-table")
    # Add's channel: web for p1 and p6, app for p2, store for p5; p3, p4, p7 never added (not set).
    assert [r[:4] for r in rows] == [
        ["（未设置）", "3", "0", "0"],
        ["web", "2", "2", "2"],
        ["app", "1", "1", "0"],
        ["store", "1", "1", "0"],
    ]
    request = funnel.FunnelRequest.model_validate(
        {
            "start": "2026-03-01",
            "end": "2026-03-31",
            "steps": [{"event": s} for s in STEPS],
            "breakdown": "channel",
            "attribution": "step:2",
        }
    )
    computed = {
        r["breakdown"] or "（未设置）": [str(int(r[f"step_{k}"])) for k in (1, 2, 3)]
        for r in direct(analyst, funnel.funnel, brand, request)
    }
    assert {r[0]: r[1:4] for r in rows} == computed


def test_funnel_breakdown_csv_has_every_value(client: Any, world: World, analyst: Path) -> None:
    html = client.get(funnel_url(breakdown="channel", top=1)).text
    links = re.findall(r'href="(/console/analytics/funnel\.csv\?[^"]+)"', html)
    overall, split = (link.replace("&amp;", "&") for link in links)
    assert "breakdown" not in overall and "breakdown=channel" in split and "attribution=first_touch" in split

    title, rows = _csv(client.get(overall).text)
    assert title == "Funnel" and len(rows) == 1 and rows[0]["step_1"] == "7"
    download = client.get(split)
    assert download.status_code == 200 and download.headers["content-type"].startswith("text/csv")
    assert "funnel-channel-2026-03-01-2026-03-31" in download.headers["content-disposition"]
    title, rows = _csv(download.text)
    # Not folded: the five values with their counts and overall rates, as the API's CSV.
    assert title == "Funnel breakdown"
    assert {(r["breakdown"], r["step_1"], r["step_2"], r["step_3"]) for r in rows} == {
        ("app", "2", "2", "1"),
        ("web", "2", "1", "1"),
        ("mini", "1", "0", "0"),
        ("store", "1", "0", "0"),
        ("", "1", "1", "0"),
    }
    assert len(rows) == 5
    assert {r["breakdown"]: r["overall_3"] for r in rows}["app"] == "0.5" and SECRET not in download.text
    title, rows = _csv(
        client.get(funnel_url(path="funnel.csv", breakdown="channel", attribution="step:3")).text
    )
    # The value on the order: app for p1, web for p6; the five who did not order have none.
    assert {r["breakdown"]: r["step_1"] for r in rows} == {"": "5", "app": "1", "web": "1"}


def test_funnel_breakdown_bad_input_is_answered(client: Any, world: World, analyst: Path) -> None:
    bad = client.get(funnel_url(breakdown="chan nel"))
    assert bad.status_code == 422 and 'id="analysis-errors"' in bad.text
    assert "breakdown: String should match pattern" in bad.text
    bad = client.get(funnel_url(breakdown="channel", attribution="step:4"))
    assert bad.status_code == 422 and "attribution step out of range" in bad.text
    bad = client.get(funnel_url(breakdown="channel", attribution="last_touch"))
    assert bad.status_code == 422 and "attribution: String should match pattern" in bad.text
    bad = client.get(funnel_url(breakdown="channel", top=0))
    assert bad.status_code == 422 and '<p class="muted">top</p>' in bad.text
    bad = client.get(funnel_url(path="funnel.csv", breakdown="channel", attribution="step:9"))
    assert bad.status_code == 422 and "attribution step out of range" in bad.text
    # Without a breakdown the choice of attribution does not matter and no breakdown is shown.
    page = client.get(funnel_url(attribution="step:9"))
    assert page.status_code == 200 and 'id="funnel-breakdown"' not in page.text


def test_retention_breakdown_per_value(client: Any, world: World, analyst: Path) -> None:
    brand = world.brands[0].id
    html = client.get(retention_url(breakdown="channel", top=2)).text
    # Overall, unchanged: week of 2 March p1-p5 (p1 back in week 1, p3 in week 2); 9 March p6, p7.
    assert _option(html, "retention-curve")["series"][0]["data"] == [100.0, 14.3, 14.3, 0.0]
    rows = _table(html, "retention-breakdown-table")
    assert rows == [
        ["app", "2", "50.0%", "0.0%", "0.0%"],  # p1, p2; p1 back in week 1
        ["web", "2", "0.0%", "50.0%", "0.0%"],  # p3 (2 March), p6 (9 March); p3 back in week 2
        ["其他（3 个取值）", "3", "0.0%", "0.0%", "0.0%"],  # mini, store, not set
    ]
    sizes = _table(html, "retention-breakdown-sizes")
    assert sizes == [["app", "2", "—"], ["web", "1", "1"], ["其他（3 个取值）", "2", "1"]]
    chart = _option(html, "retention-breakdown-chart")
    assert chart["xAxis"]["data"] == ["第 0 周", "第 1 周", "第 2 周", "第 3 周"]
    assert [(s["name"], s["data"]) for s in chart["series"]] == [
        ("app", [100.0, 50.0, 0.0, 0.0]),
        ("web", [100.0, 0.0, 50.0, 0.0]),
        ("其他（3 个取值）", [100.0, 0.0, 0.0, 0.0]),
    ]
    assert "按 channel 细分的留存" in html and SECRET not in html

    request = retention.RetentionRequest.model_validate(
        {
            "start": "2026-03-02",
            "end": "2026-03-15",
            "as_of": "2026-03-31",
            "start_event": {"event": "Product Viewed"},
            "return_event": {"event": "Product Viewed"},
            "unit": "week",
            "periods": 3,
            "breakdown": "channel",
        }
    )
    computed = [
        {k: (v.date().isoformat() if isinstance(v, datetime) else v) for k, v in r.items()}
        for r in direct(analyst, retention.retention, brand, request)
    ]
    for row in rows[:2]:
        mine = [r for r in computed if r["value"] == row[0]]
        assert sum(int(r["size"]) for r in mine) == int(row[1])
        rates = [c["rate"] for c in retention.curve(mine, 3)]
        assert [f"{100 * r:.1f}%" for r in rates] == row[2:]
    folded = [r for r in computed if r["value"] not in ("app", "web")]
    assert {r["value"] for r in folded} == {"mini", "store", None}
    assert [c["rate"] for c in retention.curve(folded, 3)] == [0.0, 0.0, 0.0]

    download = client.get(retention_url(path="retention.csv", breakdown="channel", top=1))
    title, lines = _csv(download.text)
    assert title == "Retention breakdown" and SECRET not in download.text
    assert sorted((r["cohort"][:10], r["value"], r["size"], r["n1"], r["n2"]) for r in lines) == sorted(
        (str(r["cohort"])[:10], r["value"] or "", str(r["size"]), str(r["n1"]), str(r["n2"]))
        for r in computed
    )
    links = re.findall(r'href="(/console/analytics/retention\.csv\?[^"]+)"', html)
    assert "breakdown" not in links[0] and "breakdown=channel" in links[1]
    assert _csv(client.get(links[0].replace("&amp;", "&")).text)[0] == "Retention"

    bad = client.get(retention_url(breakdown="a b"))
    assert bad.status_code == 422 and "breakdown: String should match pattern" in bad.text
    bad = client.get(retention_url(path="retention.csv", breakdown="a b"))
    assert bad.status_code == 422 and "String should match pattern" in bad.text
    assert 'id="retention-breakdown"' not in client.get(retention_url()).text

    signed_in(client, "ann")
    english = client.get(retention_url(breakdown="channel", top=2)).text
    assert (
        "Retention by channel" in english
        and "Other (3 values)" in english
        and "Cohort sizes by value" in english
    )
    english = client.get(funnel_url(breakdown="channel", top=3)).text
    assert "Conversion by channel" in english and "First touch (the step-1 event)" in english
    names = [s["name"] for s in _option(english, "funnel-breakdown-chart")["series"]]
    assert names[-1] == "To step 3 · Order Completed"


# -- folding, for any rows -------------------------------------------------------------------------

VALUES = st.one_of(st.none(), st.sampled_from(["app", "web", "store", "mini", "pos", "wx"]))


@given(
    counts=st.dictionaries(
        VALUES, st.lists(st.integers(0, 50), min_size=3, max_size=3).map(sorted), max_size=6
    ),
    top=st.integers(1, 8),
)
@settings(deadline=None)  # pure folding; a loaded machine must not fail it on time
def test_funnel_folding_keeps_every_person(counts: dict[str | None, list[int]], top: int) -> None:
    rows: list[dict[str, Any]] = [
        {"breakdown": v, **{f"step_{k}": c for k, c in enumerate(reversed(cs), start=1)}}
        for v, cs in counts.items()
    ]
    groups = pages_funnel.breakdown_groups(rows, 3, top)
    kept = [g for g in groups if not g["other"]]
    assert len(kept) == min(len(rows), top) and len(groups) - len(kept) == (1 if len(rows) > top else 0)
    for k in range(3):
        assert sum(g["counts"][k] for g in groups) == sum(r[f"step_{k + 1}"] for r in rows)
    folded = [r["step_1"] for r in rows if r["breakdown"] not in {g["value"] for g in kept}]
    firsts = [g["counts"][0] for g in kept]
    assert firsts == sorted(firsts, reverse=True) and all(f >= x for f in firsts for x in folded)


@given(
    sizes=st.dictionaries(
        st.tuples(VALUES, st.sampled_from(["2026-03-02", "2026-03-09"])),
        st.tuples(st.integers(1, 30), st.integers(0, 30)),
        max_size=10,
    ),
    top=st.integers(1, 8),
)
@settings(deadline=None)  # pure folding; a loaded machine must not fail it on time
def test_retention_folding_keeps_every_cohort_entry(
    sizes: dict[tuple[str | None, str], tuple[int, int]], top: int
) -> None:
    rows: list[dict[str, Any]] = [
        {"cohort": c, "value": v, "size": s, "n1": min(n, s), "e1": c == "2026-03-02"}
        for (v, c), (s, n) in sizes.items()
    ]
    groups = pages_retention.breakdown_groups(rows, 1, top)
    assert sum(g["size"] for g in groups) == sum(r["size"] for r in rows)
    kept = {g["value"] for g in groups if not g["other"]}
    for g in groups:
        mine = [r for r in rows if (r["value"] not in kept if g["other"] else r["value"] == g["value"])]
        assert g["size"] == sum(r["size"] for r in mine)
        assert sum(g["cohort_sizes"].values()) == g["size"]
        # Period 1 over the cohorts old enough for it (2 March), weighted by their size.
        old = [r for r in mine if r["e1"]]
        expected = sum(r["n1"] for r in old) / sum(r["size"] for r in old) if old else None
        assert g["rates"][0] == (None if expected is None else round(expected * 100, 1))


# -- in Chromium -----------------------------------------------------------------------------------

CHROMIUM = Path("/usr/bin/chromium")
PASSWORD = "breakdown-browser-password"


BRAND, OTHER_BRAND, USER = "lx-breakdown", "bx-breakdown", "breakdown-analyst"  # this module's own


@pytest.fixture(scope="module")
def server(live_console: LiveConsole, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, date]]:
    """The shared console with this module's brand (and another one) seeded, reading this module's
    warehouse file while the module's tests run (the app reads the setting on each request)."""
    ids = seed_brands(live_console.database_url, BRAND, OTHER_BRAND, USER, PASSWORD)
    warehouse = tmp_path_factory.mktemp("breakdown") / "w.duckdb"
    # A Sunday five weeks back, so that day 1 is a Monday and the page's default "today" comes after.
    now = datetime.now(UTC).date()
    base = now - timedelta(days=now.weekday() + 1 + 35)
    fill_events(warehouse, *ids, base=base)
    with warehouse_at(warehouse):
        yield live_console.url, base


@pytest.mark.browser
@pytest.mark.skipif(not CHROMIUM.exists(), reason="Debian's Chromium (/usr/bin/chromium) is not installed")
def test_breakdown_charts_draw_in_chromium(server: tuple[str, date], tmp_path: Path) -> None:
    from playwright.sync_api import sync_playwright

    from huiyuan.auth.deps import rate_limiter

    root, base = server
    rate_limiter().storage.reset()
    drawn = (
        "id => echarts.getInstanceByDom(document.getElementById(id)).getOption().series"
        ".map(s => [s.name, s.data])"
    )
    with sync_playwright() as p:
        chromium = p.chromium.launch(
            executable_path=str(CHROMIUM),
            headless=True,
            args=["--no-sandbox", "--disable-gpu", "--no-first-run"],
        )
        page = chromium.new_page(viewport={"width": 1280, "height": 900}, locale="zh-CN")
        page.set_default_timeout(10_000)
        try:
            page.goto(root + "/console/login?next=/console/analytics/funnel")
            page.fill('input[name="username"]', USER)
            page.fill('input[name="password"]', PASSWORD)
            page.locator('button[type="submit"]').click()
            page.wait_for_url("**/console/analytics/funnel")
            form = page.locator("#funnel-form")
            form.locator('input[name="start"]').fill(base.isoformat())
            for n, step in enumerate(STEPS):
                form.locator('input[name="step"]').nth(n).fill(step)
            form.locator('input[name="breakdown"]').fill("channel")
            form.locator('input[name="top"]').fill("3")
            form.locator('button[type="submit"]').click()
            page.wait_for_selector("#funnel-breakdown-chart canvas")
            assert page.evaluate(drawn, "funnel-breakdown-chart") == [
                ["到第 2 步 · Product Added", [100, 50, 0, 50]],
                ["到第 3 步 · Order Completed", [50, 50, 0, 0]],
            ]
            assert "其他（2 个取值）" in page.locator("#funnel-breakdown-table").inner_text()

            start = base + timedelta(days=1)
            page.goto(root + retention_url(start=start, breakdown="channel", top=2))
            page.wait_for_selector("#retention-breakdown-chart canvas")
            series = page.evaluate(drawn, "retention-breakdown-chart")
            assert series[:2] == [["app", [100, 50, 0, 0]], ["web", [100, 0, 50, 0]]]
            assert page.locator("#retention-breakdown-table tbody tr").count() == 3
        except Exception:
            page.screenshot(path=str(tmp_path / "breakdown-failure.png"), full_page=True)
            raise
        finally:
            chromium.close()
