"""RFM scores, segments and lifecycle states on a hand-made ``fact_orders``, on DuckDB and on
PostgreSQL through Ibis (equal results), and against a hand-written DuckDB query."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date
from decimal import Decimal
from typing import Any

import pyarrow as pa
import pytest
from pydantic import ValidationError

from huiyuan.analytics import rfm
from tests.analytics.backends import both

AS_OF = date(2026, 6, 30)


def _orders() -> pa.Table:
    # (member, date_key, amount, refunded); brand 1 unless noted. As of 2026-06-30:
    #   m1: 3 orders, last 06-29 (1 day),  1,000 paid     → recent, frequent, big
    #   m2: 1 order,  06-20 (10 days),     2,000 paid     → recent, rare, big
    #   m3: 4 orders, last 2026-01-01 (180 days), 60 paid → old, frequent, small
    #   m4: 1 order,  2025-09-01 (302 days), 50 − 20 refunded = 30 → old, rare, small
    #   m5: 1 order in 2024 (out of the 365-day window; churned in the lifecycle)
    #   m9: brand 2, never counted for brand 1; an anonymous order (no member) is skipped too.
    rows = [
        (1, 1, 20260629, "600.00", "0"),
        (1, 1, 20260610, "300.00", "0"),
        (1, 1, 20260501, "100.00", "0"),
        (1, 2, 20260620, "2000.00", "0"),
        (1, 3, 20260101, "15.00", "0"),
        (1, 3, 20251201, "15.00", "0"),
        (1, 3, 20251101, "15.00", "0"),
        (1, 3, 20251001, "15.00", "0"),
        (1, 4, 20250901, "50.00", "20.00"),
        (1, 5, 20240315, "80.00", "0"),
        (2, 9, 20260629, "999.00", "0"),
        (1, None, 20260629, "70.00", "0"),
        (1, 1, 20260701, "500.00", "0"),  # after as_of: ignored
    ]
    return pa.table(
        {
            "brand_id": pa.array([r[0] for r in rows], pa.int64()),
            "order_id": pa.array(range(1, len(rows) + 1), pa.int64()),
            "member_id": pa.array([r[1] for r in rows], pa.int64()),
            "date_key": pa.array([r[2] for r in rows], pa.int32()),
            "amount": pa.array([Decimal(r[3]) for r in rows], pa.decimal128(18, 2)),
            "refunded": pa.array([Decimal(r[4]) for r in rows], pa.decimal128(18, 2)),
            "status": pa.array(["paid"] * len(rows)),
        }
    )


@pytest.fixture(scope="module")
def backends(pg_database: str) -> Iterator[dict[str, dict[str, Any]]]:
    with both({"fact_orders": _orders()}, pg_database) as tables:
        yield tables


def _records(expr: Any) -> list[dict[str, Any]]:
    frame = expr.execute()
    out = []
    for row in frame.to_dict(orient="records"):
        out.append(
            {k: (round(float(v), 6) if isinstance(v, (float, Decimal)) else v) for k, v in row.items()}
        )
    return out


def test_quantile_scores_and_segments(backends: dict[str, dict[str, Any]]) -> None:
    request = rfm.RFMRequest(as_of=AS_OF, levels=4)
    results = {name: _records(rfm.rfm(t["fact_orders"], 1, request)) for name, t in backends.items()}
    assert results["duckdb"] == results["postgres"]
    rows = {r["member_id"]: r for r in results["duckdb"]}
    assert set(rows) == {1, 2, 3, 4}
    assert [(rows[m]["recency"], rows[m]["frequency"], rows[m]["monetary"]) for m in (1, 2, 3, 4)] == [
        (1, 3, 1000.0),
        (10, 1, 2000.0),
        (180, 4, 60.0),
        (302, 1, 30.0),
    ]
    # Four members, four levels: the cumulative share is 1/4 … 4/4; m2 and m4 tie on frequency
    # (share 2/4 for both → 2).
    assert [(rows[m]["r"], rows[m]["f"], rows[m]["m"]) for m in (1, 2, 3, 4)] == [
        (4, 3, 3),
        (3, 2, 4),
        (2, 4, 2),
        (1, 2, 1),
    ]
    # Mean scores: r 2.5, f 2.75, m 2.5 — high means above the mean.
    assert {m: rows[m]["segment"] for m in rows} == {
        1: "important_value",
        2: "important_development",
        3: "general_retention",
        4: "general_win_back",
    }
    summary = {
        name: _records(rfm.segment_summary(rfm.rfm(t["fact_orders"], 1, request)))
        for name, t in backends.items()
    }
    assert summary["duckdb"] == summary["postgres"]
    assert sum(r["members"] for r in summary["duckdb"]) == 4


def test_threshold_scores(backends: dict[str, dict[str, Any]]) -> None:
    request = rfm.RFMRequest(
        as_of=AS_OF,
        scoring="thresholds",
        thresholds={
            "recency_days": [30, 90, 180, 365],
            "frequency": [2, 3, 4, 5],
            "monetary": [50, 100, 500, 1000],
        },
        split=3,
    )
    results = {name: _records(rfm.rfm(t["fact_orders"], 1, request)) for name, t in backends.items()}
    assert results["duckdb"] == results["postgres"]
    scores = {r["member_id"]: (r["r"], r["f"], r["m"], r["segment"]) for r in results["duckdb"]}
    assert scores == {
        1: (5, 3, 5, "important_development"),  # 3 orders ≥ 2, 3: score 3, not above the split
        2: (5, 1, 5, "important_development"),
        3: (3, 4, 2, "general_retention"),  # 180 ≤ 180, 365; 4 orders; 60 ≥ 50
        4: (2, 1, 1, "general_win_back"),  # 302 ≤ 365; 30 < 50
    }


def test_lifecycle_states(backends: dict[str, dict[str, Any]]) -> None:
    request = rfm.LifecycleRequest(as_of=AS_OF)
    results = {name: _records(rfm.lifecycle(t["fact_orders"], 1, request)) for name, t in backends.items()}
    assert results["duckdb"] == results["postgres"]
    assert {r["member_id"]: r["state"] for r in results["duckdb"]} == {
        1: "active",
        2: "active",
        3: "sleeping",
        4: "about_to_churn",
        5: "churned",  # 2024-03-15: 837 days
    }


def test_hand_written_duckdb_query_agrees(backends: dict[str, dict[str, Any]]) -> None:
    table = backends["duckdb"]["fact_orders"]
    con = table._find_backend()
    hand = con.raw_sql(
        """SELECT member_id, date_diff('day', max(make_date(date_key // 10000, (date_key // 100) % 100,
                  date_key % 100)), DATE '2026-06-30') AS recency, count(*) AS frequency,
                  sum(amount - refunded) AS monetary
           FROM fact_orders WHERE brand_id = 1 AND member_id IS NOT NULL AND date_key <= 20260630
             AND date_key > 20250630
           GROUP BY member_id ORDER BY member_id"""
    ).fetchall()
    ours = _records(rfm.rfm(table, 1, rfm.RFMRequest(as_of=AS_OF)))
    assert [(r[0], r[1], r[2], float(r[3])) for r in hand] == [
        (r["member_id"], r["recency"], r["frequency"], r["monetary"]) for r in ours
    ]


def test_requests_are_validated() -> None:
    with pytest.raises(ValidationError):
        rfm.RFMRequest(as_of=AS_OF, scoring="thresholds")
    with pytest.raises(ValidationError):
        rfm.RFMRequest(
            as_of=AS_OF,
            scoring="thresholds",
            thresholds={"recency_days": [90, 30], "frequency": [1, 2], "monetary": [1, 2]},
        )
    with pytest.raises(ValidationError):
        rfm.LifecycleRequest(as_of=AS_OF, thresholds_days=[30, 30, 60, 90])


def test_engine_runs_compiled_sql_on_both_backends(backends: dict[str, dict[str, Any]]) -> None:
    from huiyuan.analytics import engine

    request = rfm.RFMRequest(as_of=AS_OF, levels=4)
    for tables in backends.values():
        expr = rfm.rfm(tables["fact_orders"], 1, request)
        rows = engine.records(expr)
        again = engine.records(rfm.rfm(tables["fact_orders"], 1, request))  # the compiled SQL, reused
        assert rows == again
        assert [(r["member_id"], r["segment"]) for r in rows] == [
            (1, "important_value"),
            (2, "important_development"),
            (3, "general_retention"),
            (4, "general_win_back"),
        ]
        assert engine.sql_of(expr) is engine.sql_of(rfm.rfm(tables["fact_orders"], 1, request))
