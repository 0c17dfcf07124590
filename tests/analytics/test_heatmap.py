"""Click heatmaps on hand-made page views and clicks: page views and click rate, elements with their
mean and median position, clicks placed on the page the person was on when they carry no page,
the grid in pixels and relative to the page size, the elements' boxes and the page's size for the
overlay, prefix and URL matching — equal on DuckDB and PostgreSQL, and equal to a hand-written
DuckDB query."""

from __future__ import annotations

import base64
import csv
import io
import json
from collections.abc import Iterator
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
from pydantic import ValidationError

from huiyuan.analytics import engine
from huiyuan.analytics import heatmap as hm
from huiyuan.kit.db import Database
from huiyuan.settings import get_settings
from huiyuan.warehouse import sync as wsync
from tests.analytics.backends import both
from tests.analytics.events_data import at

VIEW, CLICK = hm.PAGE_VIEW_EVENT, hm.CLICK_EVENT
BANNER = {"selector": "#banner", "text": "立即抢购"}
NAV = {"selector": "#nav", "text": "新品"}


def _click(x: float | None, y: float | None, **extra: Any) -> dict[str, Any]:
    return {**({"x": x, "y": y} if x is not None else {}), **extra}


# (brand, person, event, UTC time, properties, context)
ROWS: list[tuple[int, str, str, datetime, dict[str, Any], dict[str, Any]]] = [
    # v1 (snippet): views "/", clicks the banner twice (the page in the properties, then only in the
    # context), then views "/p/1" and clicks "Buy" in the same instant (after the view, by event id)
    # without saying where: that click belongs to "/p/1".
    (1, "v1", VIEW, at(0), {"path": "/", "url": "https://shop.example.com/?utm=x"}, {}),
    # The snippet's element box: offset of the click inside the element, and the element's size.
    (
        1,
        "v1",
        CLICK,
        at(1),
        {
            **BANNER,
            **_click(120, 40, path="/", page_width=400, page_height=1000),
            **{"offset_x": 20, "offset_y": 10, "element_width": 200, "element_height": 50},
        },
        {},
    ),
    (1, "v1", CLICK, at(2), {**BANNER, **_click(130, 60, viewport_width=400)}, {"page": {"path": "/"}}),
    (1, "v1", VIEW, at(3), {"path": "/p/1"}, {}),
    (1, "v1", CLICK, at(3), {"selector": "#buy", "text": "购买", **_click(50, 700)}, {}),
    # v2 (demo): clicks carry no page at all; they belong to v2's latest view, "/". The click on
    # the right edge (x = the page width) falls in the last relative column.
    (1, "v2", VIEW, at(0), {"path": "/"}, {}),
    (1, "v2", CLICK, at(1), {**NAV, **_click(200, 10, page_width=200, page_height=800)}, {}),
    (
        1,
        "v2",
        CLICK,
        at(2),
        {
            **BANNER,
            **_click(110, 45, viewport_width=400, page_height=900),
            **{"offset_x": 12, "offset_y": 16, "element_width": 180, "element_height": 40},
        },
        {},
    ),
    # v3 views "/" twice and clicks nothing.
    (1, "v3", VIEW, at(0), {}, {"page": {"path": "/"}}),
    (1, "v3", VIEW, at(10), {"path": "/"}, {}),
    # v4's only view was the day before the range: the click without a page is nowhere.
    (1, "v4", VIEW, at(0, days=-1), {"path": "/"}, {}),
    (1, "v4", CLICK, at(5), {**BANNER, **_click(100, 50)}, {}),
    # v5 clicks an element without text or position on "/" (no view in the range).
    (1, "v5", CLICK, at(5), {"selector": "#coupon", "path": "/"}, {}),
    # Outside the range, and another brand.
    (1, "v1", CLICK, at(0, days=3), {**BANNER, **_click(120, 40, path="/")}, {}),
    (2, "w1", VIEW, at(0), {"path": "/"}, {}),
    (2, "w1", CLICK, at(1), {**BANNER, **_click(120, 40, path="/")}, {}),
]


def _table() -> pa.Table:
    keys = [int((r[3] + timedelta(hours=8)).strftime("%Y%m%d")) for r in ROWS]
    return pa.table(
        {
            "brand_id": pa.array([r[0] for r in ROWS], pa.int64()),
            "event_id": pa.array(range(1, len(ROWS) + 1), pa.int64()),
            "person_key": pa.array([r[1] for r in ROWS]),
            "event": pa.array([r[2] for r in ROWS]),
            "ts": pa.array([r[3] for r in ROWS], pa.timestamp("us")),
            "date_key": pa.array(keys, pa.int32()),
            "properties": pa.array([json.dumps(r[4], ensure_ascii=False) for r in ROWS]),
            "context": pa.array([json.dumps(r[5]) for r in ROWS]),
        }
    )


@pytest.fixture(scope="module")
def backends(pg_database: str) -> Iterator[dict[str, Any]]:
    with both({"fact_events": _table()}, pg_database) as tables:
        yield {
            name: t["fact_events"].mutate(
                properties=t["fact_events"].properties.cast("json"),
                context=t["fact_events"].context.cast("json"),
            )
            for name, t in tables.items()
        }


def _request(**kw: Any) -> hm.HeatmapRequest:
    return hm.HeatmapRequest.model_validate({"start": "2026-06-01", "end": "2026-06-02", "page": "/", **kw})


def _run(backends: dict[str, Any], fn: Any, request: hm.HeatmapRequest) -> list[dict[str, Any]]:
    results = {}
    for name, events in backends.items():
        rows = engine.records(fn(events, 1, request))
        results[name] = [
            {k: round(float(v), 6) if isinstance(v, float) else v for k, v in r.items()} for r in rows
        ]
    assert results["duckdb"] == results["postgres"]
    return results["duckdb"]


def test_summary_counts_views_clicks_and_rates(backends: dict[str, Any]) -> None:
    [row] = _run(backends, hm.summary, _request())
    # Views: v1, v2, v3 twice (v4's is the day before). Clicks: v1 ×2, v2 ×2, v5.
    assert row == {
        "page_views": 4,
        "viewers": 3,
        "clicks": 5,
        "clickers": 3,
        "click_rate": 1.25,
        "unique_click_rate": 1.0,
        # Widths 400, 400 (a viewport), 200, 400; heights 1000, 800, 900 (v1's second has none).
        "page_width": 400.0,
        "page_height": 900.0,
    }
    [nothing] = _run(backends, hm.summary, _request(page="/nowhere"))
    assert (nothing["page_views"], nothing["clicks"], nothing["click_rate"]) == (0, 0, None)
    assert (nothing["page_width"], nothing["page_height"]) == (None, None)


def test_elements_with_positions(backends: dict[str, Any]) -> None:
    rows = _run(backends, hm.elements, _request())
    got = {(r["selector"], r["text"]): r for r in rows}
    assert [(r["selector"], r["clicks"], r["clickers"]) for r in rows] == [
        ("#banner", 3, 2),
        ("#coupon", 1, 1),  # ties: by selector
        ("#nav", 1, 1),
    ]
    banner = got[("#banner", "立即抢购")]
    # x 120, 130, 110 and y 40, 60, 45.
    assert (banner["click_rate"], banner["share"]) == (0.75, 0.6)
    assert (banner["mean_x"], banner["median_x"]) == (120.0, 120.0)
    assert (banner["mean_y"], banner["median_y"]) == (48.333333, 45.0)
    coupon = got[("#coupon", "")]
    assert (coupon["click_rate"], coupon["mean_x"], coupon["median_y"]) == (0.25, None, None)
    assert [r["selector"] for r in _run(backends, hm.elements, _request(limit=1))] == ["#banner"]


def test_element_boxes_in_pixels_and_relative(backends: dict[str, Any]) -> None:
    def boxes(rows: list[dict[str, Any]]) -> dict[str, tuple[Any, ...]]:
        return {r["selector"]: (r["left"], r["top"], r["width"], r["height"]) for r in rows}

    pixels = boxes(_run(backends, hm.elements, _request(grid={"mode": "pixels"})))
    # The banner's two recorded boxes: (120 − 20, 40 − 10, 200, 50) and (110 − 12, 45 − 16, 180,
    # 40); the median of each; the click without offsets is left out. The others recorded none.
    assert pixels == {
        "#banner": (99.0, 29.5, 190.0, 45.0),
        "#coupon": (None, None, None, None),
        "#nav": (None, None, None, None),
    }
    relative = boxes(_run(backends, hm.elements, _request(grid={"mode": "relative"})))
    # Each box over its own page: 100/400, 30/1000, 200/400, 50/1000 and 98/400 (the viewport
    # width), 29/900, 180/400, 40/900.
    assert relative["#banner"] == (
        round((100 / 400 + 98 / 400) / 2, 6),
        round((30 / 1000 + 29 / 900) / 2, 6),
        round((200 / 400 + 180 / 400) / 2, 6),
        round((50 / 1000 + 40 / 900) / 2, 6),
    )
    # The box and the click positions agree: the banner's clicks fall inside its box.
    banner = next(r for r in _run(backends, hm.elements, _request()) if r["selector"] == "#banner")
    assert banner["left"] <= banner["median_x"] <= banner["left"] + banner["width"]
    assert banner["top"] <= banner["median_y"] <= banner["top"] + banner["height"]


def test_grid_in_pixels_and_relative(backends: dict[str, Any]) -> None:
    pixels = _run(backends, hm.grid, _request(grid={"mode": "pixels", "cell": 50}))
    # (120, 40) (110, 45) → (2, 0); (200, 10) → (4, 0); (130, 60) → (2, 1); #coupon has no position.
    assert [(r["cell_x"], r["cell_y"], r["left"], r["top"], r["clicks"], r["share"]) for r in pixels] == [
        (2, 0, 100, 0, 2, 0.5),
        (4, 0, 200, 0, 1, 0.25),
        (2, 1, 100, 50, 1, 0.25),
    ]
    relative = _run(backends, hm.grid, _request(grid={"mode": "relative", "columns": 20, "rows": 40}))
    # Cells of 1/20 of the width and 1/40 of the height: v1's first click 120/400, 40/1000 → (6, 1);
    # v2's nav 200/200 → column 20, the last one is 19, 10/800 → (19, 0); v2's banner (viewport
    # width) 110/400, 45/900 → (5, 2). v1's second click has no page height: not placed.
    assert [(r["cell_x"], r["cell_y"], r["left"], r["top"], r["clicks"]) for r in relative] == [
        (19, 0, 0.95, 0.0, 1),
        (6, 1, 0.3, 0.025, 1),
        (5, 2, 0.25, 0.05, 1),
    ]


def test_prefix_and_url_matching(backends: dict[str, Any]) -> None:
    [products] = _run(backends, hm.summary, _request(page="/p/", match="prefix"))
    assert (products["page_views"], products["clicks"], products["click_rate"]) == (1, 1, 1.0)
    [by_url] = _run(backends, hm.summary, _request(page="https://shop.example.com/p/1?from=ad"))
    assert by_url == products
    [el] = _run(backends, hm.elements, _request(page="/p/1"))
    assert (el["selector"], el["text"], el["median_y"]) == ("#buy", "购买", 700.0)


def test_hand_written_duckdb_query_agrees(backends: dict[str, Any]) -> None:
    events = backends["duckdb"]
    hand = (
        events._find_backend()
        .raw_sql(
            """WITH e AS (
                 SELECT *, coalesce(properties->>'$.path', context->>'$.page.path') AS own,
                        sum(CASE WHEN event = 'page_view' THEN 1 ELSE 0 END) OVER (
                          PARTITION BY person_key ORDER BY ts, event_id
                          ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW) AS n
                 FROM fact_events
                 WHERE brand_id = 1 AND date_key BETWEEN 20260601 AND 20260602
                   AND event IN ('page_view', 'Element Clicked'))
               SELECT c.properties->>'$.selector' AS selector, count(*) AS clicks
               FROM e c LEFT JOIN e v ON v.event = 'page_view' AND v.person_key = c.person_key AND v.n = c.n
               WHERE c.event = 'Element Clicked' AND coalesce(c.own, v.own) = '/'
               GROUP BY 1 ORDER BY 2 DESC, 1"""
        )
        .fetchall()
    )
    ours = engine.records(hm.elements(events, 1, _request()))
    assert hand == [(r["selector"], r["clicks"]) for r in ours]


def test_requests_are_validated() -> None:
    assert _request(page="https://shop.example.com").page == "/"
    with pytest.raises(ValidationError):
        _request(end="2026-05-31")
    with pytest.raises(ValidationError):
        _request(page="p/1")
    with pytest.raises(ValidationError):
        _request(grid={"mode": "pixels", "cell": 1})
    with pytest.raises(ValidationError):
        hm.HeatmapRequest(start=date(2026, 6, 1), end=date(2026, 6, 1), page="/", limit=0)


def test_heatmap_over_http(
    client: Any, world: Any, db: Database, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    alpha, beta = world.brands
    path = tmp_path / "heatmap.duckdb"
    monkeypatch.setattr(get_settings(), "warehouse_path", str(path))
    body = {"start": "2026-03-10", "end": "2026-03-10", "page": "https://shop.example.com/", "limit": 10}
    missing = client.post("/api/v1/analytics/heatmap", json=body, headers=alpha.headers)
    assert missing.status_code == 409 and missing.json()["code"] == "warehouse-not-ready"

    def send(headers: dict[str, str], batch: list[dict[str, Any]]) -> None:
        source = client.post("/api/v1/event-sources", json={"name": "web", "kind": "web"}, headers=headers)
        assert source.status_code == 201, source.text
        key = base64.b64encode(f"{source.json()['write_key']}:".encode()).decode()
        sent = client.post("/v1/batch", json={"batch": batch}, headers={"Authorization": f"Basic {key}"})
        assert sent.status_code == 200, sent.text

    def message(who: str, minute: int, **fields: Any) -> dict[str, Any]:
        return {"anonymousId": who, "timestamp": f"2026-03-10T02:{minute:02d}:00Z", **fields}

    home = {"type": "page", "name": "首页", "properties": {"path": "/"}}
    clicked = {"type": "track", "event": "Element Clicked"}
    send(
        alpha.headers,
        [
            message("a1", 0, **home),
            message(
                "a1",
                1,
                **clicked,
                properties={
                    **BANNER,
                    **{"x": 120, "y": 40, "viewport_width": 400, "page_height": 1200},
                    **{"offset_x": 20, "offset_y": 15, "element_width": 300, "element_height": 60},
                },
            ),
            message("a2", 0, **home),
            message("a2", 2, **clicked, properties={**NAV, "x": 20, "y": 60}),
            message("a2", 3, **clicked, properties={**BANNER, "x": 130, "y": 45}),
        ],
    )
    send(beta.headers, [message("b1", 0, **home), message("b1", 1, **clicked, properties=BANNER)])
    wsync.sync(db, path, settle_seconds=0)

    got = client.post("/api/v1/analytics/heatmap", json=body, headers=alpha.headers)
    assert got.status_code == 200, got.text
    out = got.json()
    assert out["page"] == "/" and out["grid"]["mode"] == "pixels"
    summary = out["summary"]
    assert (summary["page_views"], summary["clicks"], summary["click_rate"], summary["unplaced"]) == (
        2,
        3,
        1.5,
        0,
    )
    assert [(e["selector"], e["clicks"], e["click_rate"], e["median_x"]) for e in out["elements"]] == [
        ("#banner", 2, 1.0, 125.0),
        ("#nav", 1, 0.5, 20.0),
    ]
    assert [(c["cell_x"], c["cell_y"], c["clicks"]) for c in out["cells"]] == [(2, 0, 2), (0, 1, 1)]
    # The banner's box from a1's click (a2's recorded none), and the page's size for the overlay.
    assert [(e["left"], e["top"], e["width"], e["height"]) for e in out["elements"]] == [
        (100.0, 25.0, 300.0, 60.0),
        (None, None, None, None),
    ]
    assert (summary["page_width"], summary["page_height"]) == (400.0, 1200.0)
    relative = client.post(
        "/api/v1/analytics/heatmap", json={**body, "grid": {"mode": "relative"}}, headers=alpha.headers
    ).json()
    assert relative["elements"][0]["left"] == 0.25 and relative["elements"][0]["width"] == 0.75
    assert relative["elements"][0]["top"] == round(25 / 1200, 6)
    theirs = client.post("/api/v1/analytics/heatmap", json=body, headers=beta.headers).json()
    assert (theirs["summary"]["page_views"], theirs["summary"]["clicks"]) == (1, 1)

    as_csv = client.post("/api/v1/analytics/heatmap?format=csv", json=body, headers=alpha.headers)
    assert as_csv.status_code == 200 and as_csv.headers["content-type"].startswith("text/csv")
    rows = list(csv.reader(io.StringIO(as_csv.text.lstrip("\ufeff"))))
    assert rows[0] == ["Summary"] and rows[2][:4] == ["2", "2", "3", "2"]
    elements_at = rows.index(["Elements"])
    assert rows[elements_at + 1][:3] == ["selector", "text", "clicks"]
    assert rows[elements_at + 2][:3] == ["#banner", "立即抢购", "2"]
    assert ["Grid"] in rows

    bad = client.post("/api/v1/analytics/heatmap", json={**body, "page": "no-slash"}, headers=alpha.headers)
    assert bad.status_code == 422 and bad.headers["content-type"].startswith("application/problem+json")
    schema = client.get("/openapi.json").json()["paths"]["/api/v1/analytics/heatmap"]["post"]
    assert "text/csv" in schema["responses"]["200"]["content"]
