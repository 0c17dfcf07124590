"""Funnels on hand-made events: sequential, strict and any-order modes, the conversion window,
exclusions, one entry per person, breakdown by first touch and by step N, time to convert and
trend — equal on DuckDB and PostgreSQL, and equal to a hand-written DuckDB query."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date
from typing import Any

import pytest
from pydantic import ValidationError

from huiyuan.analytics import engine
from huiyuan.analytics import funnel as fn
from tests.analytics.backends import both
from tests.analytics.events_data import at, table, with_json

ADS, SEO = {"channel": "ads"}, {"channel": "seo"}
ROWS = [
    # p1: A → B → C inside the hour.
    ("p1", "A", at(0), ADS),
    ("p1", "B", at(10), {"channel": "mail"}),
    ("p1", "C", at(20), {}),
    # p2: B comes 90 minutes later: outside the one-hour window.
    ("p2", "A", at(0), SEO),
    ("p2", "B", at(90), SEO),
    # p3: another event between A and B (breaks strict), no C.
    ("p3", "A", at(0), ADS),
    ("p3", "X", at(5), {}),
    ("p3", "B", at(10), {"channel": "mail"}),
    # p4: C before B (any order reaches 3; sequential 2; strict 1).
    ("p4", "A", at(0), SEO),
    ("p4", "C", at(5), {}),
    ("p4", "B", at(10), SEO),
    # p5: a cancellation between B and C (the exclusion stops p5 at step 2).
    ("p5", "A", at(0), SEO),
    ("p5", "B", at(5), {"channel": "mail"}),
    ("p5", "Cancel", at(7), {}),
    ("p5", "C", at(10), {}),
    # p6: a first A that goes nowhere, a second that reaches B: the second entry counts.
    ("p6", "A", at(-60), ADS),
    ("p6", "A", at(120), SEO),
    ("p6", "B", at(130), SEO),
]
STEPS = [{"event": "A"}, {"event": "B"}, {"event": "C"}]


@pytest.fixture(scope="module")
def backends(pg_database: str) -> Iterator[dict[str, Any]]:
    with both({"fact_events": table(ROWS)}, pg_database) as tables:
        yield {name: with_json(t["fact_events"]) for name, t in tables.items()}


def _request(**kw: Any) -> fn.FunnelRequest:
    return fn.FunnelRequest(
        start=date(2026, 6, 1), end=date(2026, 6, 1), steps=STEPS, window_seconds=3600, **kw
    )


def _run(backends: dict[str, Any], request: fn.FunnelRequest) -> list[dict[str, Any]]:
    results = {name: engine.records(fn.funnel(events, 1, request)) for name, events in backends.items()}
    for rows in results.values():
        for row in rows:
            for k, v in row.items():
                if isinstance(v, float):
                    row[k] = round(v, 6)
    assert results["duckdb"] == results["postgres"]
    return results["duckdb"]


def _steps(row: dict[str, Any]) -> tuple[int, ...]:
    return tuple(int(row[f"step_{k}"]) for k in (1, 2, 3))


def test_modes(backends: dict[str, Any]) -> None:
    [seq] = _run(backends, _request())
    assert _steps(seq) == (6, 5, 2)  # p1…p6 enter; all but p2 reach B; p1 and p5 reach C
    assert (seq["median_s_2"], seq["median_s_3"]) == (600.0, 900.0)  # B after 10, 10, 10, 5, 10 min
    [strict] = _run(backends, _request(mode="strict"))
    assert _steps(strict) == (6, 3, 1)  # p1, p5 (then Cancel is next) and p6 reach B; p1 reaches C
    [anyway] = _run(backends, _request(mode="any_order"))
    assert _steps(anyway) == (6, 5, 3)  # p4 reaches C too
    rates = fn.rates(seq, 3)
    assert rates["overall_3"] == pytest.approx(2 / 6) and rates["from_previous_3"] == pytest.approx(2 / 5)


def test_exclusion_and_window(backends: dict[str, Any]) -> None:
    [row] = _run(backends, _request(exclusions=[{"event": "Cancel", "after_step": 2}]))
    assert _steps(row) == (6, 5, 1)
    [wide] = _run(backends, _request().model_copy(update={"window_seconds": 7200}))
    assert _steps(wide) == (6, 6, 2)  # p2's B at 90 minutes now counts


def test_breakdown_attribution_and_filters(backends: dict[str, Any]) -> None:
    first = {r["breakdown"]: _steps(r) for r in _run(backends, _request(breakdown="channel"))}
    # First touch: the step-1 event's channel; p6's chosen entry is the one from SEO.
    assert first == {"seo": (4, 3, 1), "ads": (2, 2, 1)}
    second = {
        r["breakdown"]: _steps(r) for r in _run(backends, _request(breakdown="channel", attribution="step:2"))
    }
    assert second == {"mail": (3, 3, 2), "seo": (2, 2, 0), None: (1, 0, 0)}
    only_ads = [{"event": "A", "filters": [{"property": "channel", "op": "eq", "value": "ads"}]}, *STEPS[1:]]
    [row] = _run(
        backends, _request().model_copy(update={"steps": [fn.Step.model_validate(s) for s in only_ads]})
    )
    assert _steps(row) == (3, 2, 1)  # p1, p3 and p6's first A (which goes nowhere)


def test_trend_by_entry_day(backends: dict[str, Any]) -> None:
    results = {
        name: engine.records(fn.trend(events, 1, _request(), "day")) for name, events in backends.items()
    }
    days = {
        name: [(r["bucket"], r["entered"], r["converted"]) for r in rows] for name, rows in results.items()
    }
    assert [(str(b)[:10], e, c) for b, e, c in days["duckdb"]] == [("2026-06-01", 6, 2)]
    assert [(str(b)[:10], e, c) for b, e, c in days["postgres"]] == [("2026-06-01", 6, 2)]


def test_hand_written_duckdb_query_agrees(backends: dict[str, Any]) -> None:
    events = backends["duckdb"]
    con = events._find_backend()
    hand = con.raw_sql(
        """SELECT count(DISTINCT a.person_key),
                  count(DISTINCT CASE WHEN b.person_key IS NOT NULL THEN a.person_key END)
           FROM fact_events a
           LEFT JOIN fact_events b ON b.person_key = a.person_key AND b.event = 'B'
                AND b.ts >= a.ts AND b.ts <= a.ts + INTERVAL 1 HOUR
           WHERE a.brand_id = 1 AND a.event = 'A' AND a.date_key BETWEEN 20260601 AND 20260601"""
    ).fetchall()
    two = fn.FunnelRequest(start=date(2026, 6, 1), end=date(2026, 6, 1), steps=STEPS[:2], window_seconds=3600)
    [ours] = engine.records(fn.funnel(events, 1, two))
    assert hand == [(ours["step_1"], ours["step_2"])]


def test_requests_are_validated() -> None:
    with pytest.raises(ValidationError):
        fn.FunnelRequest(start=date(2026, 6, 2), end=date(2026, 6, 1), steps=STEPS)
    with pytest.raises(ValidationError):
        fn.FunnelRequest(start=date(2026, 6, 1), end=date(2026, 6, 1), steps=STEPS[:1])
    with pytest.raises(ValidationError):
        _request(exclusions=[{"event": "Cancel", "after_step": 3}])
    with pytest.raises(ValidationError):
        _request(attribution="step:9")
