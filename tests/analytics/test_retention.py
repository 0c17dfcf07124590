"""Retention on hand-made events: first-time and recurring cohorts, "on" and "on or after" period n,
an n…m interval, cohorts too young for a period, the weighted curve, weeks and a breakdown — equal on
DuckDB and PostgreSQL, and equal to a hand-written DuckDB query."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date
from typing import Any

import pytest
from pydantic import ValidationError

from huiyuan.analytics import engine
from huiyuan.analytics import retention as rt
from tests.analytics.backends import both
from tests.analytics.events_data import at, table, with_json

GOLD, SILVER = {"plan": "gold"}, {"plan": "silver"}
D = 24 * 60  # minutes in a day
ROWS = [
    ("q1", "S", at(0), GOLD),
    ("q1", "R", at(D), {}),
    ("q1", "R", at(3 * D), {}),
    ("q2", "S", at(0), GOLD),
    ("q2", "R", at(2 * D), {}),
    ("q3", "S", at(D), SILVER),
    ("q3", "R", at(D + 5), {}),
    ("q3", "R", at(2 * D), {}),
    ("q4", "S", at(0), SILVER),
    ("q4", "S", at(2 * D), SILVER),
    ("q4", "R", at(3 * D), {}),
    ("q5", "S", at(5 * D), SILVER),
    ("q6", "S", at(6 * D), SILVER),
    ("q6", "R", at(7 * D), {}),  # Sunday 06-07, then Monday 06-08
]


@pytest.fixture(scope="module")
def backends(pg_database: str) -> Iterator[dict[str, Any]]:
    with both({"fact_events": table(ROWS)}, pg_database) as tables:
        yield {name: with_json(t["fact_events"]) for name, t in tables.items()}


def _request(**kw: Any) -> rt.RetentionRequest:
    base = {
        "start": date(2026, 6, 1),
        "end": date(2026, 6, 6),
        "as_of": date(2026, 6, 7),
        "start_event": {"event": "S"},
        "return_event": {"event": "R"},
        "periods": 3,
    }
    return rt.RetentionRequest.model_validate({**base, **kw})


def _run(backends: dict[str, Any], request: rt.RetentionRequest) -> list[dict[str, Any]]:
    results = {}
    for name, events in backends.items():
        rows = engine.records(rt.retention(events, 1, request))
        results[name] = [{k: (str(v)[:10] if k == "cohort" else v) for k, v in r.items()} for r in rows]
    assert results["duckdb"] == results["postgres"]
    return results["duckdb"]


def _table(rows: list[dict[str, Any]], *keys: str) -> dict[Any, tuple[Any, ...]]:
    return {
        r["cohort"] if "value" not in r else (r["cohort"], r["value"]): tuple(r[k] for k in keys)
        for r in rows
    }


def test_first_time_on_and_on_or_after(backends: dict[str, Any]) -> None:
    on = _run(backends, _request())
    # 06-01: q1 (back on days 1 and 3), q2 (day 2), q4 (day 3); 06-02: q3 (same day, then day 1);
    # 06-06: q5, old enough for day 1 only (as of 06-07).
    assert _table(on, "size", "n1", "n2", "n3", "e1", "e2", "e3") == {
        "2026-06-01": (3, 1, 1, 2, True, True, True),
        "2026-06-02": (1, 1, 0, 0, True, True, True),
        "2026-06-06": (1, 0, 0, 0, True, False, False),
    }
    after = _run(backends, _request(measure="on_or_after"))
    assert _table(after, "n1", "n2", "n3") == {
        "2026-06-01": (3, 3, 2),
        "2026-06-02": (1, 0, 0),
        "2026-06-06": (0, 0, 0),
    }
    curve = rt.curve(on, 3)
    assert [(c["period"], c["size"], c["rate"]) for c in curve] == [(1, 5, 0.4), (2, 4, 0.25), (3, 4, 0.5)]


def test_recurring_interval_and_breakdown(backends: dict[str, Any]) -> None:
    recurring = _run(backends, _request(cohort="recurring"))
    assert _table(recurring, "size", "n1") == {
        "2026-06-01": (3, 1),
        "2026-06-02": (1, 1),
        "2026-06-03": (1, 1),  # q4's second start, back the next day
        "2026-06-06": (1, 0),
    }
    between = _run(backends, _request(interval=(2, 3)))
    assert _table(between, "between", "e_between") == {
        "2026-06-01": (3, True),
        "2026-06-02": (0, True),
        "2026-06-06": (0, False),
    }
    plans = _run(backends, _request(breakdown="plan"))
    assert _table(plans, "size", "n1", "n2", "n3") == {
        ("2026-06-01", "gold"): (2, 1, 1, 1),
        ("2026-06-01", "silver"): (1, 0, 0, 1),
        ("2026-06-02", "silver"): (1, 1, 0, 0),
        ("2026-06-06", "silver"): (1, 0, 0, 0),
    }


def test_weeks(backends: dict[str, Any]) -> None:
    weeks = _run(backends, _request(unit="week", end=date(2026, 6, 7), as_of=date(2026, 6, 14), periods=2))
    # Everyone starts in the week of Monday 06-01; only q6 comes back the week after.
    assert _table(weeks, "size", "n1", "e1", "e2") == {"2026-06-01": (6, 1, True, False)}


def test_hand_written_duckdb_query_agrees(backends: dict[str, Any]) -> None:
    events = backends["duckdb"]
    hand = (
        events._find_backend()
        .raw_sql(
            """WITH d AS (SELECT person_key, event,
                  make_date(date_key // 10000, (date_key // 100) % 100, date_key % 100) AS day
                  FROM fact_events WHERE brand_id = 1 AND date_key <= 20260607),
           c AS (SELECT person_key, min(day) AS cohort FROM d
                 WHERE event = 'S' AND day BETWEEN DATE '2026-06-01' AND DATE '2026-06-06' GROUP BY 1)
           SELECT c.cohort, count(DISTINCT c.person_key),
                  count(DISTINCT CASE WHEN d.day - c.cohort = 1 THEN c.person_key END)
           FROM c LEFT JOIN d ON d.person_key = c.person_key AND d.event = 'R'
           GROUP BY 1 ORDER BY 1"""
        )
        .fetchall()
    )
    ours = engine.records(rt.retention(events, 1, _request()))
    assert [(str(h[0]), h[1], h[2]) for h in hand] == [
        (str(o["cohort"])[:10], o["size"], o["n1"]) for o in ours
    ]


def test_requests_are_validated() -> None:
    with pytest.raises(ValidationError):
        _request(as_of=date(2026, 6, 5))
    with pytest.raises(ValidationError):
        _request(interval=(3, 2))
    with pytest.raises(ValidationError):
        _request(interval=(1, 9))
