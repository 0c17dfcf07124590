"""Event analysis on hand-made events: count, users, per-user average, sum / average / distinct of a
property, by day, week, month and in total; grouping by an event property and by a member tier, top
N with a recomputed "other", shares; per-person distributions with edges and automatic buckets —
equal on DuckDB and PostgreSQL, and equal to a hand-written DuckDB query. Then the endpoints."""

from __future__ import annotations

import base64
import csv
import io
from collections.abc import Iterator
from datetime import date
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
from pydantic import ValidationError

from huiyuan.analytics import engine
from huiyuan.analytics import event_analysis as ea
from huiyuan.kit.db import Database
from huiyuan.settings import get_settings
from huiyuan.warehouse import sync as wsync
from tests.analytics.backends import both
from tests.analytics.events_data import at, table, with_json
from tests.factories import enroll

D = 24 * 60  # minutes in a day; at(0) is 10:00 on Monday 2026-06-01 in Shanghai
MEMBER = {"u1": 1, "u2": 2, "u3": 3}  # u4 is anonymous
# (brand, person, event, time, properties)
ROWS: list[tuple[int, str, str, Any, dict[str, Any]]] = [
    (1, "u1", "View", at(0), {"channel": "ads"}),
    (1, "u1", "View", at(5), {"channel": "ads"}),
    (1, "u2", "View", at(10), {"channel": "seo"}),
    (1, "u1", "View", at(0, days=1), {"channel": "seo"}),
    (1, "u3", "View", at(0, days=7), {"channel": "ads"}),
    (1, "u4", "View", at(0, days=7), {"channel": "mail"}),
    (1, "u4", "View", at(810, days=13), {}),  # 23:30 on 06-14: the last day, included
    (1, "u4", "View", at(870, days=13), {"channel": "ads"}),  # 00:30 on 06-15: outside
    (2, "u1", "View", at(0), {"channel": "ads"}),  # another brand
    (1, "u1", "Buy", at(30), {"amount": 100, "sku": "A"}),
    (1, "u1", "Buy", at(0, days=7), {"amount": 50, "sku": "B"}),
    (1, "u2", "Buy", at(0, days=1), {"amount": 30, "sku": "A"}),
    (1, "u3", "Buy", at(0, days=8), {"amount": 20.5, "sku": 7}),
    (1, "u2", "Buy", at(0, days=9), {"sku": "A"}),  # no amount: left out of the average
]
# member id → tier (dim_member)
TIERS = {1: "gold", 2: "silver", 3: "gold"}


def _events() -> pa.Table:
    t = table([(p, e, ts, props) for _, p, e, ts, props in ROWS])
    t = t.set_column(0, "brand_id", pa.array([r[0] for r in ROWS], pa.int64()))
    return t.append_column("member_id", pa.array([MEMBER.get(r[1]) for r in ROWS], pa.int64()))


def _members() -> pa.Table:
    return pa.table(
        {
            "brand_id": pa.array([1] * len(TIERS), pa.int64()),
            "member_id": pa.array(list(TIERS), pa.int64()),
            "tier": pa.array(list(TIERS.values())),
            "city": pa.array(["上海市"] * len(TIERS)),
        }
    )


@pytest.fixture(scope="module")
def backends(pg_database: str) -> Iterator[dict[str, dict[str, Any]]]:
    with both({"fact_events": _events(), "dim_member": _members()}, pg_database) as tables:
        yield {
            name: {"events": with_json(t["fact_events"]), "members": t["dim_member"]}
            for name, t in tables.items()
        }


def _request(events: list[dict[str, Any]], **kw: Any) -> ea.EventAnalysisRequest:
    base = {"start": date(2026, 6, 1), "end": date(2026, 6, 14), "events": events, "granularity": "total"}
    return ea.EventAnalysisRequest.model_validate({**base, **kw})


def _plain(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [
        {
            k: (round(v, 6) if isinstance(v, float) else str(v)[:10] if isinstance(v, date) else v)
            for k, v in r.items()
        }
        for r in rows
    ]


def _run(backends: dict[str, dict[str, Any]], fn: Any, request: Any, **kw: Any) -> list[dict[str, Any]]:
    results = {}
    for name, t in backends.items():
        extra = {"members": t["members"]} if fn in (ea.totals, ea.trend) else {}
        results[name] = _plain(engine.records(fn(t["events"], 1, request, **extra, **kw)))
    assert results["duckdb"] == results["postgres"]
    return results["duckdb"]


def _values(rows: list[dict[str, Any]], *keys: str) -> list[tuple[Any, ...]]:
    return [tuple(r[k] for k in keys) for r in rows]


def test_measures_over_the_whole_range(backends: dict[str, dict[str, Any]]) -> None:
    request = _request(
        [
            {"event": "View"},
            {"event": "View", "measure": "users"},
            {"event": "View", "measure": "per_user"},
            {"event": "Buy", "measure": "sum", "property": "amount"},
            {"event": "Buy", "measure": "avg", "property": "amount"},
            {"event": "Buy", "measure": "distinct", "property": "sku"},
            {"event": "View", "filters": [{"property": "channel", "op": "in", "value": ["ads", "seo"]}]},
        ]
    )
    rows = _run(backends, ea.totals, request)
    # Seven views in range (06-15 and brand 2 are not); u1…u4; 7 / 4; 100 + 50 + 30 + 20.5;
    # ÷ the four buys with an amount; SKUs "A", "B" and 7; five views from ads or seo.
    assert _values(rows, "series", "value", "share", "rank") == [
        (0, 7.0, 1.0, 1),
        (1, 4.0, 1.0, 1),
        (2, 1.75, None, 1),
        (3, 200.5, 1.0, 1),
        (4, 50.125, None, 1),
        (5, 3.0, 1.0, 1),
        (6, 5.0, 1.0, 1),
    ]
    assert [s["label"] for s in ea.series_info(request)][:2] == ["View · count", "View · users"]


def test_trend_by_day_week_and_month(backends: dict[str, dict[str, Any]]) -> None:
    views = [{"event": "View"}, {"event": "View", "measure": "users"}]
    by_day = _run(backends, ea.trend, _request(views[:1], granularity="day"))
    assert _values(by_day, "bucket", "value") == [
        ("2026-06-01", 3.0),
        ("2026-06-02", 1.0),
        ("2026-06-08", 2.0),
        ("2026-06-14", 1.0),
    ]
    by_week = _run(backends, ea.trend, _request(views, granularity="week"))
    assert _values(by_week, "series", "bucket", "value") == [
        (0, "2026-06-01", 4.0),
        (0, "2026-06-08", 3.0),
        (1, "2026-06-01", 2.0),  # u1, u2
        (1, "2026-06-08", 2.0),  # u3, u4
    ]
    by_month = _run(backends, ea.trend, _request(views, granularity="month"))
    assert _values(by_month, "series", "bucket", "value") == [(0, "2026-06-01", 7.0), (1, "2026-06-01", 4.0)]


def test_group_by_property_top_n_and_other(backends: dict[str, dict[str, Any]]) -> None:
    by_channel = {"source": "event", "field": "channel"}
    count = _run(backends, ea.totals, _request([{"event": "View"}], group_by=by_channel, top=2))
    # ads 3, seo 2; mail 1 and the view without a channel fold into other.
    assert _values(count, "group", "other", "value", "share", "rank") == [
        ("ads", False, 3.0, round(3 / 7, 6), 1),
        ("seo", False, 2.0, round(2 / 7, 6), 2),
        (None, True, 2.0, round(2 / 7, 6), 3),
    ]
    users = _run(
        backends, ea.totals, _request([{"event": "View", "measure": "users"}], group_by=by_channel, top=2)
    )
    # ads: u1, u3; seo: u1, u2 (a tie, by name); other is u4 once, though u4 is in two groups.
    assert _values(users, "group", "other", "value", "share") == [
        ("ads", False, 2.0, 0.5),
        ("seo", False, 2.0, 0.5),
        (None, True, 1.0, 0.25),
    ]
    everything = _run(backends, ea.totals, _request([{"event": "View"}], group_by=by_channel, top=10))
    assert _values(everything, "group", "value", "rank") == [
        ("ads", 3.0, 1),
        ("seo", 2.0, 2),
        ("mail", 1.0, 3),
        (None, 1.0, 4),  # no channel: a group of its own, after the named one it ties with
    ]
    weekly = _run(
        backends, ea.trend, _request([{"event": "View"}], group_by=by_channel, top=2, granularity="week")
    )
    assert _values(weekly, "bucket", "group", "other", "value") == [
        ("2026-06-01", "ads", False, 2.0),
        ("2026-06-01", "seo", False, 2.0),
        ("2026-06-08", "ads", False, 1.0),
        ("2026-06-08", None, True, 2.0),
    ]
    skus = _run(backends, ea.totals, _request([{"event": "Buy"}], group_by={"field": "sku"}))
    assert _values(skus, "group", "value") == [("A", 3.0), ("7", 1.0), ("B", 1.0)]  # a number as text


def test_group_by_member_tier(backends: dict[str, dict[str, Any]]) -> None:
    tier = {"source": "member", "field": "tier"}
    request = _request(
        [{"event": "Buy", "measure": "sum", "property": "amount"}, {"event": "View", "measure": "users"}],
        group_by=tier,
    )
    rows = _run(backends, ea.totals, request)
    assert _values(rows, "series", "group", "value", "share", "overall") == [
        (0, "gold", 170.5, round(170.5 / 200.5, 6), 200.5),  # members 1 and 3: 100 + 50 + 20.5
        (0, "silver", 30.0, round(30 / 200.5, 6), 200.5),
        (1, "gold", 2.0, 0.5, 4.0),
        (1, "silver", 1.0, 0.25, 4.0),
        (1, None, 1.0, 0.25, 4.0),  # u4 is no member
    ]
    with pytest.raises(ValueError, match="dim_member"):
        ea.totals(backends["duckdb"]["events"], 1, request)


def test_distribution_of_times_days_and_sums(backends: dict[str, dict[str, Any]]) -> None:
    base = {"start": date(2026, 6, 1), "end": date(2026, 6, 14), "event": {"event": "View"}}
    # Views per person: u1 3, u2 1, u3 1, u4 2.
    edges = ea.EventDistributionRequest.model_validate({**base, "edges": [1, 2, 3]})
    assert _values(_run(backends, ea.distribution, edges), "bucket", "low", "high", "users", "share") == [
        (0, 1.0, 2.0, 2, 0.5),
        (1, 2.0, 3.0, 1, 0.25),
        (2, 3.0, None, 1, 0.25),
    ]
    auto = ea.EventDistributionRequest.model_validate({**base, "buckets": 2})
    # 1…3 in two whole-number buckets: width ⌈3 / 2⌉ = 2.
    assert _values(_run(backends, ea.distribution, auto), "low", "high", "users") == [
        (1.0, 3.0, 3),
        (3.0, 5.0, 1),
    ]
    days = ea.EventDistributionRequest.model_validate({**base, "measure": "days", "edges": [1, 2]})
    # u1 on 06-01 and 06-02, u4 on 06-08 and 06-14.
    assert _values(_run(backends, ea.distribution, days), "low", "users") == [(1.0, 2), (2.0, 2)]
    sums = ea.EventDistributionRequest.model_validate(
        {**base, "event": {"event": "Buy"}, "measure": "sum", "property": "amount", "buckets": 2}
    )
    # Per person: u1 150, u2 30, u3 20.5 → width 64.75 from 20.5; the largest closes the last bucket.
    assert _values(_run(backends, ea.distribution, sums), "low", "high", "users") == [
        (20.5, 85.25, 2),
        (85.25, 150.0, 1),
    ]


def test_distribution_edges_filters_and_one_value(backends: dict[str, dict[str, Any]]) -> None:
    base = {"start": date(2026, 6, 1), "end": date(2026, 6, 14), "event": {"event": "View"}}
    # Views per person: u1 3, u2 1, u3 1, u4 2; below the first edge (u2, u3) is left out, and the
    # shares are of the people counted.
    above = ea.EventDistributionRequest.model_validate({**base, "edges": [2, 3]})
    assert _values(_run(backends, ea.distribution, above), "bucket", "low", "high", "users", "share") == [
        (0, 2.0, 3.0, 1, 0.5),
        (1, 3.0, None, 1, 0.5),
    ]
    # Only the views from ads: u1 2 (06-01), u3 1 (06-08); u4's is on 06-15. Ten automatic buckets
    # of 1…2: width ⌊(2 − 1 + 10) ÷ 10⌋ = 1, so only two buckets have people.
    ads = ea.EventDistributionRequest.model_validate(
        {**base, "event": {"event": "View", "filters": [{"property": "channel", "op": "eq", "value": "ads"}]}}
    )
    assert _values(_run(backends, ea.distribution, ads), "bucket", "low", "high", "users") == [
        (0, 1.0, 2.0, 1),
        (1, 2.0, 3.0, 1),
    ]
    # One person, one value: a single bucket of width 0.
    one = ea.EventDistributionRequest.model_validate(
        {
            **base,
            "event": {"event": "Buy", "filters": [{"property": "sku", "op": "eq", "value": "B"}]},
            "measure": "sum",
            "property": "amount",
        }
    )
    assert _values(_run(backends, ea.distribution, one), "bucket", "low", "high", "users", "share") == [
        (0, 50.0, 50.0, 1, 1.0)
    ]


def test_hand_written_duckdb_query_agrees(backends: dict[str, dict[str, Any]]) -> None:
    events = backends["duckdb"]["events"]
    hand = (
        events._find_backend()
        .raw_sql(
            """SELECT date_trunc('week', strptime(CAST(date_key AS VARCHAR), '%Y%m%d'))::DATE AS week,
                      count(*), count(DISTINCT person_key)
               FROM fact_events WHERE brand_id = 1 AND event = 'View'
                    AND date_key BETWEEN 20260601 AND 20260614
               GROUP BY 1 ORDER BY 1"""
        )
        .fetchall()
    )
    request = _request([{"event": "View"}, {"event": "View", "measure": "users"}], granularity="week")
    ours = engine.records(ea.trend(events, 1, request))
    weeks = sorted({r["bucket"] for r in ours})
    by = {(r["series"], r["bucket"]): r["value"] for r in ours}
    assert [(str(w), n, u) for w, n, u in hand] == [(str(w)[:10], by[(0, w)], by[(1, w)]) for w in weeks]


def test_requests_are_validated() -> None:
    with pytest.raises(ValidationError):
        _request([{"event": "Buy", "measure": "sum"}])  # sum of what?
    with pytest.raises(ValidationError):
        _request([{"event": "View", "property": "channel"}])  # count takes no property
    with pytest.raises(ValidationError):
        _request([])
    with pytest.raises(ValidationError):
        _request([{"event": "View"}], group_by={"source": "member", "field": "phone"})
    with pytest.raises(ValidationError):
        _request([{"event": "View"}], end=date(2026, 5, 1))
    with pytest.raises(ValidationError):
        _request([{"event": "View"}], granularity="day", end=date(2029, 1, 1))
    with pytest.raises(ValidationError):
        ea.EventDistributionRequest.model_validate(
            {"start": "2026-06-01", "end": "2026-06-02", "event": {"event": "View"}, "edges": [2, 1]}
        )


# -- the endpoints ----------------------------------------------------------------------------------


def _track(client: Any, headers: dict[str, str], batch: list[dict[str, Any]]) -> None:
    source = client.post("/api/v1/event-sources", json={"name": "web", "kind": "web"}, headers=headers)
    assert source.status_code == 201, source.text
    key = base64.b64encode(f"{source.json()['write_key']}:".encode()).decode()
    sent = client.post("/v1/batch", json={"batch": batch}, headers={"Authorization": f"Basic {key}"})
    assert sent.status_code == 200, sent.text


def test_event_analysis_over_http(
    client: Any, world: Any, db: Database, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    alpha, beta = world.brands
    path = tmp_path / "events.duckdb"
    monkeypatch.setattr(get_settings(), "warehouse_path", str(path))
    body = {
        "start": "2026-03-10",
        "end": "2026-03-16",
        "events": [{"event": "Viewed"}, {"event": "Viewed", "measure": "users"}],
        "granularity": "day",
        "group_by": {"field": "channel"},
    }
    missing = client.post("/api/v1/analytics/events", json=body, headers=alpha.headers)
    assert missing.status_code == 409 and missing.json()["code"] == "warehouse-not-ready"

    def viewed(user: str, ts: str, channel: str) -> dict[str, Any]:
        return {
            "type": "track",
            "userId": user,
            "event": "Viewed",
            "timestamp": ts,
            "properties": {"channel": channel},
        }

    member = enroll(client, alpha.headers)["member_number"]  # u1 is a member, u2 is not
    _track(
        client,
        alpha.headers,
        [
            viewed(member, "2026-03-10T02:00:00Z", "ads"),
            viewed(member, "2026-03-10T03:00:00Z", "ads"),
            viewed("u2", "2026-03-11T02:00:00Z", "seo"),
        ],
    )
    wsync.sync(db, path, settle_seconds=0)

    got = client.post("/api/v1/analytics/events", json=body, headers=alpha.headers)
    assert got.status_code == 200, got.text
    out = got.json()
    assert [s["label"] for s in out["series"]] == ["Viewed · count", "Viewed · users"]
    assert [(t["series"], t["group"], t["value"], t["share"]) for t in out["totals"]] == [
        (0, "ads", 2, round(2 / 3, 6)),
        (0, "seo", 1, round(1 / 3, 6)),
        (1, "ads", 1, 0.5),
        (1, "seo", 1, 0.5),
    ]
    assert [(t["bucket"], t["group"], t["value"]) for t in out["trend"] if t["series"] == 0] == [
        ("2026-03-10", "ads", 2),
        ("2026-03-11", "seo", 1),
    ]
    by_member = client.post(
        "/api/v1/analytics/events",
        json={**body, "group_by": {"source": "member", "field": "enroll_channel"}, "granularity": "total"},
        headers=alpha.headers,
    )
    assert by_member.status_code == 200, by_member.text
    assert [(t["group"], t["value"]) for t in by_member.json()["totals"] if t["series"] == 0] == [
        ("store", 2),
        (None, 1),
    ]
    theirs = client.post("/api/v1/analytics/events", json=body, headers=beta.headers)
    assert theirs.status_code == 200 and theirs.json()["totals"] == [] and theirs.json()["trend"] == []

    as_csv = client.post("/api/v1/analytics/events?format=csv", json=body, headers=alpha.headers)
    assert as_csv.status_code == 200 and as_csv.headers["content-type"].startswith("text/csv")
    lines = list(csv.reader(io.StringIO(as_csv.text.lstrip("\ufeff"))))
    assert lines[0] == ["Event totals"] and lines[1][:4] == ["series", "label", "group", "other"]
    assert ["Event trend"] in lines and len(lines) == 2 + 4 + 1 + 2 + 4

    spread = {"start": "2026-03-10", "end": "2026-03-16", "event": {"event": "Viewed"}, "edges": [1, 2]}
    dist = client.post("/api/v1/analytics/events/distribution", json=spread, headers=alpha.headers)
    assert dist.status_code == 200, dist.text
    assert [(i["low"], i["users"]) for i in dist.json()["items"]] == [(1.0, 1), (2.0, 1)]
    assert dist.json()["users"] == 2
    dist_csv = client.post(
        "/api/v1/analytics/events/distribution?format=csv", json=spread, headers=alpha.headers
    )
    assert dist_csv.status_code == 200 and "users" in dist_csv.text

    bad = client.post(
        "/api/v1/analytics/events",
        json={**body, "events": [{"event": "Viewed", "measure": "sum"}]},
        headers=alpha.headers,
    )
    assert bad.status_code == 422 and bad.headers["content-type"].startswith("application/problem+json")
    assert bad.json()["code"] == "validation-failed"
