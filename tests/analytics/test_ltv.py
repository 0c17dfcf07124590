"""Cohort LTV by months since joining and per-member distributions, on hand-made rows — equal on
DuckDB and PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date
from decimal import Decimal
from typing import Any

import pyarrow as pa
import pytest

from huiyuan.analytics import engine, ltv
from tests.analytics.backends import both

# Members: 1 and 2 enrol in January 2026, 3 in February.
MEMBERS = [(1, 20260105), (2, 20260120), (3, 20260210)]
# Orders: (member, date_key, amount, refunded)
ORDERS = [
    (1, 20260110, "100.00", "0"),  # cohort Jan, month 0
    (1, 20260215, "50.00", "0"),  # month 1
    (2, 20260301, "30.00", "10.00"),  # month 2: 20 net
    (3, 20260211, "80.00", "0"),  # cohort Feb, month 0
    (3, 20260212, "40.00", "0"),
]


def _tables() -> dict[str, pa.Table]:
    members = pa.table(
        {
            "brand_id": pa.array([1] * 3, pa.int64()),
            "member_id": pa.array([m for m, _ in MEMBERS], pa.int64()),
            "enrolled_date_key": pa.array([k for _, k in MEMBERS], pa.int32()),
        }
    )
    orders = pa.table(
        {
            "brand_id": pa.array([1] * len(ORDERS), pa.int64()),
            "order_id": pa.array(range(1, len(ORDERS) + 1), pa.int64()),
            "member_id": pa.array([o[0] for o in ORDERS], pa.int64()),
            "status": pa.array(["paid"] * len(ORDERS)),
            "date_key": pa.array([o[1] for o in ORDERS], pa.int32()),
            "amount": pa.array([Decimal(o[2]) for o in ORDERS], pa.decimal128(18, 2)),
            "refunded": pa.array([Decimal(o[3]) for o in ORDERS], pa.decimal128(18, 2)),
        }
    )
    return {"fact_orders": orders, "dim_member": members}


@pytest.fixture(scope="module")
def backends(pg_database: str) -> Iterator[dict[str, dict[str, Any]]]:
    with both(_tables(), pg_database) as tables:
        yield tables


def _run(backends: dict[str, dict[str, Any]], build: Any) -> list[dict[str, Any]]:
    results = {}
    for name, t in backends.items():
        rows = engine.records(build(t))
        results[name] = [
            {
                k: (
                    round(float(v), 6)
                    if isinstance(v, (float, Decimal))
                    else str(v)[:10]
                    if k == "cohort"
                    else v
                )
                for k, v in r.items()
            }
            for r in rows
        ]
    assert results["duckdb"] == results["postgres"]
    return results["duckdb"]


def test_cohort_ltv(backends: dict[str, dict[str, Any]]) -> None:
    request = ltv.LTVRequest(
        enrolled_from=date(2026, 1, 1), enrolled_to=date(2026, 2, 28), as_of=date(2026, 3, 15), months=3
    )
    rows = _run(backends, lambda t: ltv.cohort_ltv(t["fact_orders"], t["dim_member"], 1, request))
    assert [(r["cohort"], r["k"], r["size"], r["sales"], r["ltv"]) for r in rows] == [
        # January: 100, then 50, then 20 net, over two members; month 3 (April) has not begun.
        ("2026-01-01", 0, 2, 100.0, 50.0),
        ("2026-01-01", 1, 2, 50.0, 75.0),
        ("2026-01-01", 2, 2, 20.0, 85.0),
        ("2026-02-01", 0, 1, 120.0, 120.0),
        ("2026-02-01", 1, 1, 0.0, 120.0),
    ]


def test_distributions(backends: dict[str, dict[str, Any]]) -> None:
    orders = ltv.DistributionRequest(
        start=date(2026, 1, 1), end=date(2026, 3, 31), measure="orders", edges=[1, 2, 3]
    )
    rows = _run(backends, lambda t: ltv.distribution(t["fact_orders"], 1, orders))
    # Orders per member: 1 → 2, 2 → 1, 3 → 2.
    assert [(r["bucket"], r["low"], r["high"], r["members"]) for r in rows] == [
        (0, 1.0, 2.0, 1),
        (1, 2.0, 3.0, 2),
    ]
    sales = ltv.DistributionRequest(start=date(2026, 1, 1), end=date(2026, 3, 31), measure="sales", buckets=2)
    rows = _run(backends, lambda t: ltv.distribution(t["fact_orders"], 1, sales))
    # Net sales per member: 150, 20, 120 → two buckets of width 65 from 20.
    assert [(r["bucket"], r["low"], r["high"], r["members"]) for r in rows] == [
        (0, 20.0, 85.0, 1),
        (1, 85.0, 150.0, 2),
    ]
