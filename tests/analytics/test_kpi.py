"""KPIs on a hand-made ``fact_orders``: totals and the retail identities, trend by week and month,
breakdown and contribution to a change — equal on DuckDB and PostgreSQL, and equal to a
hand-written DuckDB query."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date, datetime
from decimal import Decimal
from typing import Any

import pyarrow as pa
import pytest

from huiyuan.analytics import kpi
from tests.analytics.backends import both

# (order, member/person, store, channel, date_key, amount, refunded, list, discount, units)
ROWS = [
    (1, "p1", 11, "store", 20260302, "100.00", "0", "120.00", "20.00", 2),  # Monday, week 10
    (2, "p1", 11, "store", 20260304, "50.00", "0", "50.00", "0", 1),
    (3, "p2", 12, "online", 20260305, "200.00", "50.00", "250.00", "50.00", 4),
    (4, None, 11, "store", 20260310, "30.00", "0", "30.00", "0", 1),  # anonymous, week 11
    (5, "p3", 12, "online", 20260401, "80.00", "0", "100.00", "20.00", 2),  # April
    # February (the period before March's 31 days reaches back to 2026-01-29)
    (6, "p2", 11, "store", 20260210, "60.00", "0", "60.00", "0", 1),
    (7, "p3", 12, "online", 20260215, "300.00", "0", "300.00", "0", 3),
]


def _orders() -> pa.Table:
    return pa.table(
        {
            "brand_id": pa.array([1] * len(ROWS), pa.int64()),
            "order_id": pa.array([r[0] for r in ROWS], pa.int64()),
            "member_id": pa.array([int(r[1][1]) if r[1] else None for r in ROWS], pa.int64()),
            "person_key": pa.array([r[1] for r in ROWS], pa.string()),
            "store_id": pa.array([r[2] for r in ROWS], pa.int64()),
            "channel": pa.array([r[3] for r in ROWS]),
            "status": pa.array(["paid"] * len(ROWS)),
            "date_key": pa.array([r[4] for r in ROWS], pa.int32()),
            "amount": pa.array([Decimal(r[5]) for r in ROWS], pa.decimal128(18, 2)),
            "refunded": pa.array([Decimal(r[6]) for r in ROWS], pa.decimal128(18, 2)),
            "list_amount": pa.array([Decimal(r[7]) for r in ROWS], pa.decimal128(18, 2)),
            "discount": pa.array([Decimal(r[8]) for r in ROWS], pa.decimal128(18, 2)),
            "units": pa.array([r[9] for r in ROWS], pa.int32()),
        }
    )


def _stores() -> pa.Table:
    return pa.table(
        {
            "brand_id": pa.array([1, 1], pa.int64()),
            "store_id": pa.array([11, 12], pa.int64()),
            "city": ["上海市", "杭州市"],
        }
    )


@pytest.fixture(scope="module")
def backends(pg_database: str) -> Iterator[dict[str, dict[str, Any]]]:
    with both({"fact_orders": _orders(), "dim_store": _stores()}, pg_database) as tables:
        yield tables


def _records(expr: Any) -> list[dict[str, Any]]:
    out = []
    for row in expr.execute().to_dict(orient="records"):
        clean = {}
        for k, v in row.items():
            if isinstance(v, (float, Decimal)):
                v = None if v != v else round(float(v), 6)
            elif isinstance(v, datetime):
                v = v.date()
            clean[k] = v
        out.append(clean)
    return out


MARCH = kpi.Period(start=date(2026, 3, 1), end=date(2026, 3, 31))


def _run(backends: dict[str, dict[str, Any]], fn: Any) -> list[dict[str, Any]]:
    results = {name: _records(fn(t)) for name, t in backends.items()}
    assert results["duckdb"] == results["postgres"]
    return results["duckdb"]


def test_totals_and_identities(backends: dict[str, dict[str, Any]]) -> None:
    [row] = _run(backends, lambda t: kpi.totals(t["fact_orders"], 1, MARCH))
    # March: orders 1–4. Sales 100 + 50 + 150 + 30 = 330; buyers p1, p2 and the anonymous order = 3.
    assert (row["sales"], row["orders"], row["units"], row["buyers"]) == (330.0, 4, 8, 3)
    assert row["aov"] == pytest.approx(110.0) and row["aspt"] == pytest.approx(82.5)
    assert row["upt"] == pytest.approx(2.0) and row["aspu"] == pytest.approx(41.25)
    assert row["aov"] * row["buyers"] == pytest.approx(row["sales"])  # sales = AOV × buyers
    assert row["aspu"] * row["upt"] == pytest.approx(row["aspt"])  # ASPT = ASPU × UPT
    assert row["discount_rate"] == pytest.approx(70 / 450, abs=1e-6)
    assert row["repurchase_rate"] == pytest.approx(0.5)  # p1 twice, p2 once


def test_trend_by_week_and_month(backends: dict[str, dict[str, Any]]) -> None:
    spring = kpi.Period(start=date(2026, 3, 1), end=date(2026, 4, 30))
    weeks = _run(backends, lambda t: kpi.trend(t["fact_orders"], 1, spring, "week"))
    assert [(w["bucket"], w["sales"], w["orders"]) for w in weeks] == [
        (date(2026, 3, 2), 300.0, 3),
        (date(2026, 3, 9), 30.0, 1),
        (date(2026, 3, 30), 80.0, 1),  # 2026-04-01 is in the week of Monday 30 March
    ]
    months = _run(backends, lambda t: kpi.trend(t["fact_orders"], 1, spring, "month"))
    assert [(m["bucket"], m["sales"], m["buyers"]) for m in months] == [
        (date(2026, 3, 1), 330.0, 3),
        (date(2026, 4, 1), 80.0, 1),
    ]


def test_breakdown_and_contribution(backends: dict[str, dict[str, Any]]) -> None:
    cities = _run(
        backends, lambda t: kpi.breakdown(t["fact_orders"], 1, MARCH, "city", stores=t["dim_store"])
    )
    assert [(c["value"], c["sales"]) for c in cities] == [("上海市", 180.0), ("杭州市", 150.0)]
    # March (330) against the 31 days before (2026-01-29 … 02-28: 360): −30 in all. Online fell by
    # 150 (300 → 150) and the store channel rose by 120 (60 → 180): shares 5 and −4.
    moved = _run(backends, lambda t: kpi.contribution(t["fact_orders"], 1, MARCH, "channel"))
    assert [(m["value"], m["current"], m["previous"], m["delta"], m["share_of_change"]) for m in moved] == [
        ("online", 150.0, 300.0, -150.0, 5.0),
        ("store", 180.0, 60.0, 120.0, -4.0),
    ]
    assert sum(m["share_of_change"] for m in moved) == pytest.approx(1.0)


def test_hand_written_duckdb_query_agrees(backends: dict[str, dict[str, Any]]) -> None:
    table = backends["duckdb"]["fact_orders"]
    hand = (
        table._find_backend()
        .raw_sql(
            """SELECT channel, sum(amount - refunded) AS sales, count(*) AS orders
           FROM fact_orders WHERE brand_id = 1 AND date_key BETWEEN 20260301 AND 20260331
           GROUP BY channel ORDER BY sales DESC, channel"""
        )
        .fetchall()
    )
    ours = _records(kpi.breakdown(table, 1, MARCH, "channel"))
    assert [(h[0], float(h[1]), h[2]) for h in hand] == [(o["value"], o["sales"], o["orders"]) for o in ours]


def test_periods_are_validated() -> None:
    with pytest.raises(ValueError):
        kpi.Period(start=date(2026, 3, 2), end=date(2026, 3, 1))
    assert kpi.Period(start=date(2024, 2, 29), end=date(2024, 2, 29)).previous("year").start == date(
        2023, 2, 28
    )
