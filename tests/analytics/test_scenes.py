"""The insight scenes' figures (member base, enrolments, new and returning buyers, coupon use, points,
engagement) on the console tests' hand-made warehouse — equal on DuckDB and PostgreSQL, and only
ever the asked brand's rows."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date, datetime
from decimal import Decimal
from typing import Any

import duckdb
import pyarrow as pa
import pytest

from huiyuan.analytics import engine, rfm, scenes
from huiyuan.analytics.kpi import Period
from tests.analytics.backends import both
from tests.console.test_analytics_pages import fill_warehouse

BRAND, OTHER = 1, 2
MARCH = Period(start=date(2026, 3, 1), end=date(2026, 3, 31))
COLUMNS = {
    "fact_orders": "*",
    "dim_member": "brand_id, member_id, enroll_channel, enrolled_date_key",
    "fact_events": "brand_id, event_id, person_key, event, date_key",
    "fact_coupon_redemptions": "brand_id, lock_id, coupon_id, template_id, member_id, state, coupon_kind,"
    " discount, date_key",
    "fact_points": "brand_id, entry_id, member_id, point_type, kind, amount, funder, source_type, date_key",
}


@pytest.fixture(scope="module")
def backends(pg_database: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    path = tmp_path_factory.mktemp("scenes") / "w.duckdb"
    fill_warehouse(path, BRAND, OTHER)
    con = duckdb.connect(str(path), read_only=True)
    arrow: dict[str, pa.Table] = {
        name: con.execute(f"SELECT {cols} FROM {name}").to_arrow_table() for name, cols in COLUMNS.items()
    }
    con.close()
    with both(arrow, pg_database) as tables:
        yield tables


def _plain(v: Any) -> Any:
    if isinstance(v, (float, Decimal)):
        return round(float(v), 6)
    if isinstance(v, datetime):
        return v.date()
    return v


def _run(backends: dict[str, Any], build: Any) -> list[dict[str, Any]]:
    results = {
        name: [{k: _plain(v) for k, v in r.items()} for r in engine.records(build(t))]
        for name, t in backends.items()
    }
    assert results["duckdb"] == results["postgres"]
    return results["duckdb"]


def test_member_base_enrolments_and_conversion(backends: dict[str, Any]) -> None:
    base = _run(backends, lambda t: scenes.member_base(t["fact_orders"], t["dim_member"], BRAND, MARCH))
    # Five members by 31 March (three enrolled in March); members 11-14 bought 600 of the 640 net.
    assert base == [
        {"members": 5, "new_members": 3, "member_buyers": 4, "member_sales": 600.0, "sales": 640.0}
    ]
    enrolled = _run(backends, lambda t: scenes.enrollments(t["dim_member"], BRAND, MARCH, "month"))
    assert [(r["bucket"], r["channel"], r["members"]) for r in enrolled] == [
        (date(2026, 3, 1), "mini_program", 1),
        (date(2026, 3, 1), "store", 2),
    ]
    conversion = _run(
        backends, lambda t: scenes.new_member_conversion(t["fact_orders"], t["dim_member"], BRAND, MARCH)
    )
    assert conversion == [{"enrolled": 3, "converted": 2, "sales": 170.0}]  # 13: 120, 14: 60 - 10


def test_new_and_returning_buyers(backends: dict[str, Any]) -> None:
    rows = _run(backends, lambda t: scenes.buyers_by_kind(t["fact_orders"], BRAND, MARCH))
    # Member 11 ordered in January (returning, twice in March); 12, 13, 14 first ordered in March.
    assert rows == [
        {"kind": "new", "buyers": 3, "orders": 3, "sales": 250.0, "repeat_buyers": 0},
        {"kind": "returning", "buyers": 1, "orders": 2, "sales": 350.0, "repeat_buyers": 1},
    ]
    states = _run(
        backends,
        lambda t: scenes.lifecycle_states(t["fact_orders"], BRAND, rfm.LifecycleRequest(as_of=MARCH.end)),
    )
    assert sum(r["members"] for r in states) == 4


def test_coupons_points_and_engagement(backends: dict[str, Any]) -> None:
    coupons = _run(backends, lambda t: scenes.coupon_use(t["fact_coupon_redemptions"], BRAND, MARCH))
    # The returned coupon does not count; brand 2's never does.
    assert coupons == [{"coupon_kind": "cash", "coupons": 2, "members": 2, "orders": 2, "discount": 25.0}]
    trend = _run(backends, lambda t: scenes.coupon_trend(t["fact_coupon_redemptions"], BRAND, MARCH, "week"))
    assert [(r["bucket"], r["coupons"]) for r in trend] == [(date(2026, 3, 2), 2)]  # 3 and 6 March
    templates = _run(backends, lambda t: scenes.coupon_templates(t["fact_coupon_redemptions"], BRAND, MARCH))
    assert [(r["template_id"], r["coupons"]) for r in templates] == [(7, 2)]
    flow = _run(backends, lambda t: scenes.points_flow(t["fact_points"], BRAND, MARCH))
    assert [(r["kind"], r["points"]) for r in flow] == [("earn", 250), ("expire", -20), ("spend", -100)]
    funders = _run(backends, lambda t: scenes.points_earned_by(t["fact_points"], BRAND, MARCH, "funder"))
    assert [(r["value"], r["points"]) for r in funders] == [("brand", 200), ("store", 50)]
    totals = _run(backends, lambda t: scenes.engagement_totals(t["fact_events"], BRAND, MARCH))
    assert totals == [{"people": 4, "events": 9}]
    top = _run(backends, lambda t: scenes.top_events(t["fact_events"], BRAND, MARCH, limit=2))
    assert [(r["event"], r["people"]) for r in top] == [("Product Viewed", 4), ("Order Completed", 2)]
    names = _run(backends, lambda t: scenes.event_names(t["fact_events"], OTHER))
    assert {r["event"] for r in names} == {"Product Viewed", "Bravo Secret Event"}
