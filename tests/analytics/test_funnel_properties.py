"""The funnel against its plain-Python oracle (``funnel_reference``) on random events: coarse times
so that ties on the timestamp are common, event ids in random order, several days so that the date
range and later steps outside it are exercised; every mode, exclusions, breakdowns and the trend."""

from __future__ import annotations

import json
from datetime import date, timedelta
from typing import Any

import ibis
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from huiyuan.analytics import engine
from huiyuan.analytics import funnel as fn
from tests.analytics import funnel_reference as ref
from tests.analytics.events_data import T

NAMES = ["A", "B", "C", "X"]
CHANNELS = ["ads", "seo"]

event_rows = st.lists(
    st.tuples(
        st.sampled_from(["p1", "p2", "p3"]),
        st.sampled_from(NAMES),
        st.integers(min_value=-2, max_value=40),  # minutes from T (some on the day before/after)
        st.sampled_from([-1, 0, 0, 0, 1]),  # day offset
        st.sampled_from(CHANNELS),
    ),
    min_size=1,
    max_size=24,
)
steps = st.lists(st.sampled_from(["A", "B", "C"]), min_size=2, max_size=3)
requests = st.fixed_dictionaries(
    {
        "mode": st.sampled_from(["sequential", "strict", "any_order"]),
        "window_minutes": st.sampled_from([1, 5, 15, 60, 2000]),
        "exclude": st.booleans(),
        "breakdown": st.sampled_from([None, "first_touch", "step:2"]),
        "filter_first": st.booleans(),
    }
)


def _events(rows: list[tuple[str, str, int, int, str]], order: list[int]) -> list[ref.Event]:
    out = []
    for event_id, i in enumerate(order, start=1):
        person, name, minutes, days, channel = rows[i]
        ts = T + timedelta(days=days, minutes=minutes)
        key = int((ts + timedelta(hours=8)).strftime("%Y%m%d"))
        out.append(ref.Event(event_id, person, name, ts, key, {"channel": channel}))
    return out


def _table(events: list[ref.Event]) -> Any:
    arrow = pa.table(
        {
            "brand_id": pa.array([1] * len(events), pa.int64()),
            "event_id": pa.array([e.event_id for e in events], pa.int64()),
            "person_key": pa.array([e.person for e in events]),
            "event": pa.array([e.event for e in events]),
            "ts": pa.array([e.ts for e in events], pa.timestamp("us")),
            "date_key": pa.array([e.date_key for e in events], pa.int32()),
            "properties": pa.array([json.dumps(e.properties) for e in events]),
        }
    )
    con = ibis.duckdb.connect()
    t = con.create_table("fact_events", arrow)
    return t.mutate(properties=t.properties.cast("json"))


@pytest.mark.slow
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rows=event_rows, names=steps, req=requests, data=st.data())
def test_funnel_matches_the_oracle(
    rows: list[tuple[str, str, int, int, str]], names: list[str], req: dict[str, Any], data: st.DataObject
) -> None:
    order = data.draw(st.permutations(range(len(rows))))
    events = _events(rows, order)
    step_list: list[dict[str, Any]] = [{"event": n} for n in names]
    if req["filter_first"]:
        step_list[0]["filters"] = [{"property": "channel", "op": "eq", "value": "ads"}]
    exclusions = [{"event": "X", "after_step": 1}] if req["exclude"] else []
    breakdown = req["breakdown"]
    request = fn.FunnelRequest(
        start=date(2026, 6, 1),
        end=date(2026, 6, 1),
        steps=step_list,
        window_seconds=req["window_minutes"] * 60,
        mode=req["mode"],
        exclusions=exclusions,
        breakdown="channel" if breakdown else None,
        attribution=breakdown or "first_touch",
    )
    oracle_request = {
        "steps": step_list,
        "window_seconds": request.window_seconds,
        "mode": request.mode,
        "exclusions": exclusions,
        "breakdown": request.breakdown,
        "attribution": request.attribution,
        "start_key": 20260601,
        "end_key": 20260601,
    }
    table = _table(events)
    got = engine.records(fn.funnel(table, 1, request))
    want = ref.funnel(events, oracle_request)
    n = len(step_list)
    if not want:  # nobody entered: one row of zeros without a breakdown, no rows with one
        assert all(r["step_1"] == 0 for r in got)
        return
    mine = {r.get("breakdown") if request.breakdown else None: r for r in got}
    assert set(mine) == set(want)
    for key, row in want.items():
        for k in range(1, n + 1):
            assert mine[key][f"step_{k}"] == row[f"step_{k}"], (key, k, mine, want)
        for k in range(2, n + 1):
            for q in ("median_s", "p90_s"):
                a, b = mine[key][f"{q}_{k}"], row[f"{q}_{k}"]
                assert (a is None and b is None) or abs(a - b) < 1e-6, (key, q, k, mine, want)
    trend = engine.records(fn.trend(table, 1, request, "day"))
    want_trend = ref.trend_by_day(events, oracle_request)
    assert {int(str(r["bucket"])[:10].replace("-", "")): (r["entered"], r["converted"]) for r in trend} == (
        want_trend
    )
