"""Multi-touch attribution over the warehouse: which touches (campaign or banner clicks, message
opens — ``fact_events``) get the credit for goals (paid orders in ``fact_orders``, or a goal event),
under five models at once — written once with Ibis.

Semantics:

* **Goals** happen on business days ``[start, end]``: orders (not cancelled, with a payment time;
  revenue = paid amount less refunds, as ``kpi.sales``), or events matching ``goal.event`` (revenue
  from ``goal.revenue_property``, 0 when absent). Goals and touches meet on the person
  (``person_key``); an order without one (anonymous) cannot be attributed.
* **Touches** are events matching one of the ``touches`` rules (an event name and property filters);
  the touch's **source** is the value of the rule's ``source_property`` (``(not set)`` when absent).
* **Lookback.** A touch counts for a goal when it happened in ``[goal − lookback_days, goal]``
  (both ends included). A touch may count for several goals; each goal is credited on its own.
* **Models**, for a goal with touches t₁ … tₙ (by time, then event id); each gives the goal a total
  credit of exactly 1, split over its touches:

  - ``first_touch``: t₁ gets 1; ``last_touch``: tₙ gets 1; ``linear``: 1/n each;
  - ``position_based`` (40/20/40): t₁ and tₙ get 0.4 each, the touches between share 0.2 equally;
    with one touch it gets 1, with two each gets 0.5 (there is no middle to take the 20 %);
  - ``time_decay``: weight 2^(−age / half-life), age = goal time − touch time, normalised so the
    weights add up to 1 (computed relative to the newest touch, so old touches never underflow
    the sum to zero).
* Per source and model: **credited conversions** (Σ credit) and **credited revenue** (Σ credit ×
  the goal's revenue); goals without a touch in their window are **unattributed**.

The per-goal arithmetic is plain window functions (rank, count and sum over the goal). The one
awkward step in Ibis is the join of goals to touches: a range join on time, written as an inner
join on the person with the window bounds as extra conditions (backends plan it as a hash join on
the person and a filter), not an ``asof_join`` — that gives only one touch per goal and is not
portable.
"""

from __future__ import annotations

import math
from datetime import date, timedelta
from typing import Any, Literal

import ibis
import ibis.expr.types as ir
from pydantic import BaseModel, ConfigDict, Field, model_validator

from huiyuan.analytics.funnel import PropertyFilter, Step, _matches, _property

MODELS = ("first_touch", "last_touch", "linear", "position_based", "time_decay")
NOT_SET = "(not set)"
_NAME = r"^[A-Za-z0-9_.$-]+$"


class TouchRule(Step):
    source_property: str = Field(
        default="campaign", min_length=1, max_length=120, pattern=_NAME, description="Names the source"
    )


class Goal(BaseModel):
    model_config = ConfigDict(extra="forbid")

    kind: Literal["order", "event"] = "order"
    event: str | None = Field(default=None, min_length=1, max_length=200, description="For kind=event")
    filters: list[PropertyFilter] = Field(default_factory=list, max_length=10)
    revenue_property: str | None = Field(default=None, max_length=120, pattern=_NAME)

    @model_validator(mode="after")
    def _consistent(self) -> Goal:
        if (self.kind == "event") != (self.event is not None):
            raise ValueError("a goal event is needed exactly when kind is event")
        if self.kind == "order" and (self.filters or self.revenue_property):
            raise ValueError("filters and revenue_property apply to goal events only")
        return self


class AttributionRequest(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "start": "2026-06-01",
                    "end": "2026-06-30",
                    "touches": [
                        {"event": "Campaign Clicked", "source_property": "campaign"},
                        {"event": "Banner Clicked", "source_property": "banner"},
                        {"event": "Message Opened", "source_property": "campaign"},
                    ],
                    "goal": {"kind": "order"},
                    "lookback_days": 7,
                    "half_life_days": 7,
                },
                {
                    "start": "2026-06-01",
                    "end": "2026-06-30",
                    "touches": [{"event": "Campaign Clicked"}],
                    "goal": {"kind": "event", "event": "Order Completed", "revenue_property": "revenue"},
                    "lookback_days": 14,
                },
            ]
        },
    )

    start: date
    end: date
    touches: list[TouchRule] = Field(min_length=1, max_length=20)
    goal: Goal = Field(default_factory=Goal)
    lookback_days: int = Field(default=7, ge=1, le=90)
    half_life_days: float = Field(
        default=7, gt=0, le=90, description="Time decay: a touch this much older counts half"
    )

    @model_validator(mode="after")
    def _consistent(self) -> AttributionRequest:
        if self.end < self.start:
            raise ValueError("end must not be before start")
        if (self.end - self.start).days > 366:
            raise ValueError("a period is at most a year")
        names = [t.event for t in self.touches]
        if len(set(names)) != len(names):
            raise ValueError("each touch event may appear in one rule only")
        if self.goal.event is not None and self.goal.event in names:
            raise ValueError("the goal event cannot also be a touch")
        return self


def _key(day: date) -> int:
    return day.year * 10_000 + day.month * 100 + day.day


def goals(events: ir.Table, orders: ir.Table, brand_id: int, request: AttributionRequest) -> ir.Table:
    """The goals: ``goal_id``, ``person``, ``goal_ts`` and ``revenue`` (float)."""
    lo, hi = _key(request.start), _key(request.end)
    if request.goal.kind == "order":
        o = orders.filter(
            orders.brand_id == brand_id,
            orders.status != "cancelled",
            orders.paid_at.notnull(),
            orders.date_key >= lo,
            orders.date_key <= hi,
        )
        return o.select(
            goal_id=o.order_id,
            person=o.person_key,
            goal_ts=o.paid_at,
            revenue=(o.amount - o.refunded.fill_null(0)).cast("float64"),
        )
    assert request.goal.event is not None
    step = Step(event=request.goal.event, filters=request.goal.filters)
    e = events.filter(events.brand_id == brand_id, events.date_key >= lo, events.date_key <= hi)
    e = e.filter(_matches(e, step))
    prop = request.goal.revenue_property
    revenue = _property(e, prop).float.fill_null(0) if prop else ibis.literal(0.0)
    return e.select(goal_id=e.event_id, person=e.person_key, goal_ts=e.ts, revenue=revenue.cast("float64"))


def touches(events: ir.Table, brand_id: int, request: AttributionRequest) -> ir.Table:
    """The touches that may fall in some goal's window: ``touch_id``, ``t_person``, ``touch_ts``,
    ``source``."""
    earliest = request.start - timedelta(days=request.lookback_days + 1)  # date_key is local time
    e = events.filter(
        events.brand_id == brand_id,
        events.date_key >= _key(earliest),
        events.date_key <= _key(request.end),
        events.event.isin([t.event for t in request.touches]),
    )
    matched = [(_matches(e, rule), _property(e, rule.source_property).str) for rule in request.touches]
    hit = ibis.or_(*(m for m, _ in matched))
    source = ibis.cases(*((m, s) for m, s in matched), else_=ibis.null("string"))
    e = e.filter(hit)
    return e.select(
        touch_id=e.event_id, t_person=e.person_key, touch_ts=e.ts, source=source.fill_null(NOT_SET)
    )


def credits(events: ir.Table, orders: ir.Table, brand_id: int, request: AttributionRequest) -> ir.Table:
    """One row per (goal, touch in its window): ``goal_id``, ``touch_id``, ``source``, ``revenue``,
    ``position`` (0-based), ``touches`` (n) and each model's credit."""
    g = goals(events, orders, brand_id, request)
    t = touches(events, brand_id, request)
    window = ibis.interval(days=request.lookback_days)
    pairs = g.join(
        t,
        [g.person == t.t_person, t.touch_ts <= g.goal_ts, t.touch_ts >= g.goal_ts - window],
    )
    pairs = pairs.select("goal_id", "goal_ts", "revenue", "touch_id", "touch_ts", "source")
    per_goal = ibis.window(group_by=pairs.goal_id)
    age = (pairs.goal_ts.epoch_seconds() - pairs.touch_ts.epoch_seconds()).cast("float64")
    pairs = pairs.mutate(
        position=ibis.row_number().over(group_by=pairs.goal_id, order_by=[pairs.touch_ts, pairs.touch_id]),
        touches=pairs.count().over(per_goal),
        age=age,
    )
    newest = pairs.age.min().over(ibis.window(group_by=pairs.goal_id))
    half_life = request.half_life_days * 86_400.0
    pairs = pairs.mutate(_weight=((pairs.age - newest) * (-math.log(2) / half_life)).exp())
    n, pos = pairs.touches, pairs.position
    one, zero = ibis.literal(1.0, "float64"), ibis.literal(0.0, "float64")
    edge = (pos == 0) | (pos == n - 1)
    return pairs.mutate(
        first_touch=ibis.ifelse(pos == 0, one, zero),
        last_touch=ibis.ifelse(pos == n - 1, one, zero),
        linear=one / n.cast("float64"),
        position_based=ibis.cases(
            (n == 1, one),
            (n == 2, ibis.literal(0.5, "float64")),
            (edge, ibis.literal(0.4, "float64")),
            else_=ibis.literal(0.2, "float64") / (n - 2).cast("float64"),
        ),
        time_decay=pairs._weight / pairs._weight.sum().over(ibis.window(group_by=pairs.goal_id)),
    ).drop("_weight", "age")


def attribution(events: ir.Table, orders: ir.Table, brand_id: int, request: AttributionRequest) -> ir.Table:
    """Per source: ``touches`` (distinct touch events in some window), ``conversions_touched``
    (goals it touched) and per model ``<model>_conversions`` and ``<model>_revenue``."""
    c = credits(events, orders, brand_id, request)
    aggs: dict[str, Any] = {
        "touches": c.touch_id.nunique(),
        "conversions_touched": c.goal_id.nunique(),
    }
    for model in MODELS:
        aggs[f"{model}_conversions"] = c[model].sum()
        aggs[f"{model}_revenue"] = (c[model] * c.revenue).sum()
    out = c.group_by("source").aggregate(**aggs)
    return out.order_by([ibis.desc(out.linear_conversions), out.source])


def totals(events: ir.Table, orders: ir.Table, brand_id: int, request: AttributionRequest) -> ir.Table:
    """One row: all ``goals`` and their ``revenue``, and the ``unattributed`` goals (no touch in
    their window) with ``unattributed_revenue``."""
    g = goals(events, orders, brand_id, request)
    c = credits(events, orders, brand_id, request)
    touched = c.select(touched_id=c.goal_id).distinct()
    j = g.left_join(touched, g.goal_id == touched.touched_id)
    j = j.select("goal_id", "revenue", "touched_id")
    alone = j.touched_id.isnull()
    return j.aggregate(
        goals=j.count(),
        revenue=j.revenue.sum().fill_null(0),
        unattributed=alone.sum().fill_null(0),
        unattributed_revenue=j.revenue.sum(where=alone).fill_null(0),
    )
