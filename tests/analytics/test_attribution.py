"""Attribution on hand-made touches and orders: each model's credits for a person with three
touches, two and one, the lookback boundary, unattributed and anonymous goals, goal events — equal
on DuckDB and PostgreSQL; and, for any touches, every goal's credits add up to 1 under every model
and match a plain-Python reading of the definitions."""

from __future__ import annotations

import math
from collections.abc import Iterator
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

import ibis
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from huiyuan.analytics import attribution as at_
from huiyuan.analytics import engine
from tests.analytics.backends import both
from tests.analytics.events_data import at, table, with_json

T0 = at(0, days=9)  # 2026-06-10 10:00 in Shanghai
DAY = timedelta(days=1)
CLICK, OPEN, BANNER = "Campaign Clicked", "Message Opened", "Banner Clicked"
EVENTS = [
    # p1: three touches 6 days, 3 days and 0 s before the order.
    ("p1", CLICK, T0 - 6 * DAY, {"campaign": "spring"}),
    ("p1", OPEN, T0 - 3 * DAY, {"campaign": "vip"}),
    ("p1", BANNER, T0, {"banner": "home"}),
    # p2: one click exactly 7 days before (counts); an open a minute earlier and one after the order.
    ("p2", OPEN, T0 - 7 * DAY - timedelta(minutes=1), {"campaign": "vip"}),
    ("p2", CLICK, T0 - 7 * DAY, {"campaign": "spring"}),
    ("p2", OPEN, T0 + timedelta(hours=1), {"campaign": "vip"}),
    # p3: two touches, 3 days and 0 s before.
    ("p3", CLICK, T0 - 3 * DAY, {"campaign": "spring"}),
    ("p3", OPEN, T0, {"campaign": "vip"}),
    # p5: a click without a campaign.
    ("p5", CLICK, T0 - DAY, {}),
    # Goal events (for the event goal): p1 an hour after the order, p6 with no touch.
    ("p1", "Order Completed", T0 + timedelta(hours=1), {"revenue": 99}),
    ("p6", "Order Completed", T0, {}),
    # Not a touch: another event name.
    ("p4", "Product Viewed", T0 - DAY, {"campaign": "spring"}),
]
# (brand, person, status, paid at, amount, refunded)
ORDERS = [
    (1, "p1", "paid", T0, "300.00", "0"),
    (1, "p2", "partially_refunded", T0, "100.00", "20.00"),
    (1, "p3", "paid", T0, "50.00", "0"),
    (1, "p4", "paid", T0, "200.00", "0"),  # no touch
    (1, None, "paid", T0, "40.00", "0"),  # anonymous
    (1, "p5", "paid", T0, "10.00", "0"),
    (1, "p1", "cancelled", T0, "999.00", "0"),  # not a goal
    (1, "p1", "paid", T0 + 30 * DAY, "999.00", "0"),  # July: outside the period
    (2, "p1", "paid", T0, "999.00", "0"),  # another brand
]
TOUCHES = [
    {"event": CLICK, "source_property": "campaign"},
    {"event": OPEN, "source_property": "campaign"},
    {"event": BANNER, "source_property": "banner"},
]


def orders_table(rows: list[tuple[Any, ...]]) -> pa.Table:
    return pa.table(
        {
            "brand_id": pa.array([r[0] for r in rows], pa.int64()),
            "order_id": pa.array(range(1, len(rows) + 1), pa.int64()),
            "person_key": pa.array([r[1] for r in rows], pa.string()),
            "status": pa.array([r[2] for r in rows], pa.string()),
            "paid_at": pa.array([r[3] for r in rows], pa.timestamp("us")),
            "date_key": pa.array(
                [int((r[3] + timedelta(hours=8)).strftime("%Y%m%d")) for r in rows], pa.int32()
            ),
            "amount": pa.array([Decimal(r[4]) for r in rows], pa.decimal128(18, 2)),
            "refunded": pa.array([Decimal(r[5]) for r in rows], pa.decimal128(18, 2)),
        }
    )


@pytest.fixture(scope="module")
def backends(pg_database: str) -> Iterator[dict[str, tuple[Any, Any]]]:
    data = {"fact_events": table(EVENTS), "fact_orders": orders_table(ORDERS)}
    with both(data, pg_database) as tables:
        yield {name: (with_json(t["fact_events"]), t["fact_orders"]) for name, t in tables.items()}


def _request(**kw: Any) -> at_.AttributionRequest:
    body: dict[str, Any] = {
        "start": "2026-06-01",
        "end": "2026-06-30",
        "touches": TOUCHES,
        "half_life_days": 3,
    }
    return at_.AttributionRequest.model_validate({**body, **kw})


def _run(
    backends: dict[str, tuple[Any, Any]], fn: Any, request: at_.AttributionRequest
) -> list[dict[str, Any]]:
    results = {}
    for name, (events, orders) in backends.items():
        rows = engine.records(fn(events, orders, 1, request))
        rows.sort(key=lambda r: (r.get("goal_id", 0), r.get("position", 0)))  # credits come unordered
        results[name] = [
            {k: round(float(v), 9) if isinstance(v, (float, Decimal)) else v for k, v in r.items()}
            for r in rows
        ]
    assert results["duckdb"] == results["postgres"]
    return results["duckdb"]


def _by_source(rows: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {r.pop("source"): r for r in rows}


def test_each_model_on_orders(backends: dict[str, tuple[Any, Any]]) -> None:
    got = _by_source(_run(backends, at_.attribution, _request()))
    expected = {
        # o1 (300, p1: spring, vip, home), o2 (80 net, p2: spring), o3 (50, p3: spring, vip).
        "spring": {
            "touches": 3,
            "conversions_touched": 3,
            "first_touch": (3, 430),
            "last_touch": (1, 80),
            "linear": (1 / 3 + 1 + 1 / 2, 100 + 80 + 25),
            "position_based": (0.4 + 1 + 0.5, 120 + 80 + 25),
            # Half-life 3 days: weights ¼, ½, 1 for ages 6, 3, 0 days → 1/7, 2/7, 4/7; ½, 1 → 1/3, 2/3.
            "time_decay": (1 / 7 + 1 + 1 / 3, 300 / 7 + 80 + 50 / 3),
        },
        "vip": {
            "touches": 2,
            "conversions_touched": 2,
            "first_touch": (0, 0),
            "last_touch": (1, 50),
            "linear": (1 / 3 + 1 / 2, 100 + 25),
            "position_based": (0.2 + 0.5, 60 + 25),
            "time_decay": (2 / 7 + 2 / 3, 600 / 7 + 100 / 3),
        },
        "home": {
            "touches": 1,
            "conversions_touched": 1,
            "first_touch": (0, 0),
            "last_touch": (1, 300),
            "linear": (1 / 3, 100),
            "position_based": (0.4, 120),
            "time_decay": (4 / 7, 1200 / 7),
        },
        at_.NOT_SET: {
            "touches": 1,
            "conversions_touched": 1,
            **{m: (1, 10) for m in at_.MODELS},
        },
    }
    assert set(got) == set(expected)
    for source, want in expected.items():
        row = got[source]
        assert (row["touches"], row["conversions_touched"]) == (want["touches"], want["conversions_touched"])
        for model in at_.MODELS:
            conversions, revenue = want[model]
            assert row[f"{model}_conversions"] == pytest.approx(conversions), (source, model)
            assert row[f"{model}_revenue"] == pytest.approx(revenue), (source, model)
    for model in at_.MODELS:  # four attributed goals, 440 of revenue, under every model
        assert sum(r[f"{model}_conversions"] for r in got.values()) == pytest.approx(4)
        assert sum(r[f"{model}_revenue"] for r in got.values()) == pytest.approx(440)
    assert _run(backends, at_.totals, _request()) == [
        {"goals": 6, "revenue": 680.0, "unattributed": 2, "unattributed_revenue": 240.0}
    ]


def test_credits_of_the_three_touch_goal(backends: dict[str, tuple[Any, Any]]) -> None:
    rows = [r for r in _run(backends, at_.credits, _request()) if r["goal_id"] == 1]
    rows.sort(key=lambda r: r["position"])
    assert [r["source"] for r in rows] == ["spring", "vip", "home"]
    assert [r["touches"] for r in rows] == [3, 3, 3]
    assert [r["first_touch"] for r in rows] == [1, 0, 0]
    assert [r["last_touch"] for r in rows] == [0, 0, 1]
    assert [r["linear"] for r in rows] == pytest.approx([1 / 3] * 3)
    assert [r["position_based"] for r in rows] == pytest.approx([0.4, 0.2, 0.4])
    assert [r["time_decay"] for r in rows] == pytest.approx([1 / 7, 2 / 7, 4 / 7])


def test_lookback_and_goal_events(backends: dict[str, tuple[Any, Any]]) -> None:
    # A 6-day lookback loses p2's click (7 days before): o2 becomes unattributed.
    [short] = _run(backends, at_.totals, _request(lookback_days=6))
    assert (short["unattributed"], short["unattributed_revenue"]) == (3, 320.0)
    goal = {"kind": "event", "event": "Order Completed", "revenue_property": "revenue"}
    got = _by_source(_run(backends, at_.attribution, _request(goal=goal)))
    # p1's goal event an hour after the order: the same three touches, 99 of revenue; p6 has none.
    assert set(got) == {"spring", "vip", "home"}
    assert got["spring"]["first_touch_revenue"] == pytest.approx(99)
    assert got["home"]["time_decay_conversions"] == pytest.approx(4 / 7)
    assert _run(backends, at_.totals, _request(goal=goal)) == [
        {"goals": 2, "revenue": 99.0, "unattributed": 1, "unattributed_revenue": 0.0}
    ]
    # Only banner clicks are touches: p1's order is credited to home alone.
    only_banner = _by_source(_run(backends, at_.attribution, _request(touches=[TOUCHES[2]])))
    assert {s: r["position_based_conversions"] for s, r in only_banner.items()} == {"home": 1.0}


def test_requests_are_validated() -> None:
    for example in at_.AttributionRequest.model_config["json_schema_extra"]["examples"]:  # type: ignore[index]
        at_.AttributionRequest.model_validate(example)  # the OpenAPI examples are valid requests
    with pytest.raises(ValidationError):
        _request(end="2026-05-31")
    with pytest.raises(ValidationError):
        _request(touches=[])
    with pytest.raises(ValidationError):
        _request(touches=[TOUCHES[0], TOUCHES[0]])
    with pytest.raises(ValidationError):
        _request(goal={"kind": "event"})
    with pytest.raises(ValidationError):
        _request(goal={"kind": "order", "revenue_property": "revenue"})
    with pytest.raises(ValidationError):
        _request(goal={"kind": "event", "event": CLICK})
    with pytest.raises(ValidationError):
        _request(lookback_days=0)
    with pytest.raises(ValidationError):
        _request(touches=[{"event": CLICK, "source_property": "bad name"}])


# -- every goal's credits add up to 1 ------------------------------------------------------------------

LOOKBACK, HALF_LIFE = 7, 2.0
START = datetime(2026, 6, 10, 2, 0)
touch_minutes = st.lists(st.integers(min_value=-9 * 24 * 60, max_value=60), max_size=6)
person = st.tuples(
    touch_minutes, st.lists(st.integers(min_value=0, max_value=3 * 24 * 60), min_size=1, max_size=3)
)


def _expected(touches: list[tuple[datetime, int]], goal: datetime) -> list[dict[str, Any]]:
    """The models read straight from their definitions, for the touches (time, event id) in the
    goal's window, in order of time, then event id."""
    window = sorted(t for t in touches if goal - timedelta(days=LOOKBACK) <= t[0] <= goal)
    n = len(window)
    weights = [2 ** (-(goal - t).total_seconds() / (HALF_LIFE * 86_400)) for t, _ in window]
    out = []
    for i, (_, touch_id) in enumerate(window):
        edge = i in (0, n - 1)
        position = 1.0 if n == 1 else 0.5 if n == 2 else 0.4 if edge else 0.2 / (n - 2)
        out.append(
            {
                "touch_id": touch_id,
                "first_touch": float(i == 0),
                "last_touch": float(i == n - 1),
                "linear": 1 / n,
                "position_based": position,
                "time_decay": weights[i] / sum(weights),
            }
        )
    return out


@pytest.fixture(scope="module")
def duck() -> Iterator[Any]:
    con = ibis.duckdb.connect()
    yield con
    con.disconnect()


@settings(max_examples=40, deadline=None)
@given(people=st.lists(person, min_size=1, max_size=3))
def test_credits_of_every_goal_add_up_to_one(duck: Any, people: list[tuple[list[int], list[int]]]) -> None:
    events: list[tuple[str, str, datetime, dict[str, Any]]] = []
    orders: list[tuple[Any, ...]] = []
    touches: dict[int, list[tuple[datetime, int]]] = {}
    goals: dict[int, tuple[int, datetime]] = {}
    for p, (touch_offsets, goal_offsets) in enumerate(people):
        for m in touch_offsets:
            events.append((f"p{p}", CLICK, START + timedelta(minutes=m), {"campaign": f"c{m % 3}"}))
            touches.setdefault(p, []).append((events[-1][2], len(events)))  # event ids count from 1
        for m in goal_offsets:
            orders.append((1, f"p{p}", "paid", START + timedelta(minutes=m), "10.00", "0"))
            goals[len(orders)] = (p, START + timedelta(minutes=m))
    if not events:
        events.append(("nobody", "Other", START, {}))
    duck.create_table("fact_events", table(events), overwrite=True)
    duck.create_table("fact_orders", orders_table(orders), overwrite=True)
    request = at_.AttributionRequest(
        start=START.date(),
        end=START.date() + timedelta(days=5),
        touches=[{"event": CLICK}],
        lookback_days=LOOKBACK,
        half_life_days=HALF_LIFE,
    )
    credits = at_.credits(with_json(duck.table("fact_events")), duck.table("fact_orders"), 1, request)
    by_goal: dict[int, list[dict[str, Any]]] = {}
    for r in engine.records(credits):
        by_goal.setdefault(r["goal_id"], []).append(r)
    for goal_id, (p, goal) in goals.items():
        mine = sorted(by_goal.get(goal_id, []), key=lambda r: r["position"])
        want = _expected(touches.get(p, []), goal)
        assert [r["touch_id"] for r in mine] == [w["touch_id"] for w in want]
        for model in at_.MODELS:
            if mine:
                assert math.fsum(float(r[model]) for r in mine) == pytest.approx(1.0, abs=1e-9)
            assert [float(r[model]) for r in mine] == pytest.approx([w[model] for w in want], abs=1e-9)
