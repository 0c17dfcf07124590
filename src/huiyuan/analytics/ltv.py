"""Historical lifetime value by cohort, and distributions of per-member figures — with Ibis over the
warehouse (``fact_orders``, ``dim_member``).

**Cohort LTV.** Members are grouped by the month they enrolled (business days); month k of a member
is the k-th calendar month after their enrolment month (k = 0 is the enrolment month). For each
cohort and k = 0…``months``: the cumulative net sales (paid less refunds) of its members in months
0…k, divided by the cohort's size — every member counts, buyers or not. A cohort shows month k only
once that month has begun by ``as_of``.

**Distribution.** Per member of the brand with an order in ``[start, end]``: their order count or
net sales, bucketed by ``edges`` (``[a, b)`` buckets; the last one open-ended) or, when no edges are
given, by ``buckets`` equal-width buckets between the smallest and the largest value.
"""

from __future__ import annotations

from datetime import date
from typing import Literal

import ibis
import ibis.expr.types as ir
from pydantic import BaseModel, ConfigDict, Field, model_validator

from huiyuan.analytics.buckets import bucketed
from huiyuan.analytics.kpi import Period, business_day


def _key(day: date) -> int:
    return day.year * 10_000 + day.month * 100 + day.day


def _month_index(day: ir.DateValue) -> ir.IntegerValue:
    return day.year() * 12 + day.month()


class LTVRequest(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "enrolled_from": "2025-01-01",
                    "enrolled_to": "2025-12-31",
                    "as_of": "2026-06-30",
                    "months": 12,
                }
            ]
        },
    )

    enrolled_from: date
    enrolled_to: date
    as_of: date
    months: int = Field(default=12, ge=0, le=120)

    @model_validator(mode="after")
    def _ordered(self) -> LTVRequest:
        if self.enrolled_to < self.enrolled_from or self.as_of < self.enrolled_from:
            raise ValueError("enrolled_from ≤ enrolled_to and enrolled_from ≤ as_of")
        return self


def cohort_ltv(orders: ir.Table, members: ir.Table, brand_id: int, request: LTVRequest) -> ir.Table:
    """Per enrolment month and month k: ``size``, ``sales`` in month k, ``ltv`` (cumulative per
    member), oldest cohort first."""
    m = members.filter(
        members.brand_id == brand_id,
        members.enrolled_date_key >= _key(request.enrolled_from),
        members.enrolled_date_key <= _key(request.enrolled_to),
    )
    m = m.select(member_id=m.member_id, cohort_index=_month_index(business_day(m.enrolled_date_key)))
    sizes = m.group_by("cohort_index").aggregate(size=m.member_id.count())
    o = orders.filter(
        orders.brand_id == brand_id,
        orders.member_id.notnull(),
        orders.status != "cancelled",
        orders.date_key <= _key(request.as_of),
    )
    o = o.select(
        omember=o.member_id,
        order_index=_month_index(business_day(o.date_key)),
        net=o.amount - o.refunded.fill_null(0),
    )
    joined = m.join(o, m.member_id == o.omember)
    joined = joined.mutate(k=joined.order_index - joined.cohort_index).filter(
        lambda t: (t.k >= 0) & (t.k <= request.months)
    )
    monthly = joined.group_by(["cohort_index", "k"]).aggregate(sales=joined.net.sum())
    as_of_index = request.as_of.year * 12 + request.as_of.month
    grid = sizes.cross_join(ibis.range(request.months + 1).unnest().name("k").as_table())
    grid = grid.filter(grid.cohort_index + grid.k <= as_of_index)
    full = grid.left_join(monthly, ["cohort_index", "k"]).select(
        "cohort_index", "k", "size", sales=ibis._.sales.fill_null(0)
    )
    running = full.sales.sum().over(
        ibis.window(group_by=full.cohort_index, order_by=full.k, preceding=None, following=0)
    )
    out = full.mutate(
        cohort=ibis.date((full.cohort_index - 1) // 12, (full.cohort_index - 1) % 12 + 1, 1),
        ltv=running.cast("float64") / full.size.cast("float64"),
    )
    return out.select("cohort", "k", "size", "sales", "ltv").order_by(["cohort", "k"])


class DistributionRequest(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"start": "2026-01-01", "end": "2026-06-30", "measure": "orders", "edges": [1, 2, 3, 5, 10]},
                {
                    "start": "2026-01-01",
                    "end": "2026-06-30",
                    "measure": "sales",
                    "edges": [0, 200, 500, 1000, 3000],
                },
                {"start": "2026-01-01", "end": "2026-06-30", "measure": "sales", "buckets": 10},
            ]
        },
    )

    start: date
    end: date
    measure: Literal["orders", "sales"] = "orders"
    edges: list[float] | None = Field(default=None, min_length=1, max_length=50)
    buckets: int = Field(default=10, ge=1, le=100)

    @model_validator(mode="after")
    def _valid(self) -> DistributionRequest:
        Period(start=self.start, end=self.end)
        if self.edges is not None and any(b <= a for a, b in zip(self.edges, self.edges[1:], strict=False)):
            raise ValueError("edges must be strictly ascending")
        return self


def per_member(orders: ir.Table, brand_id: int, request: DistributionRequest) -> ir.Table:
    o = orders.filter(
        orders.brand_id == brand_id,
        orders.member_id.notnull(),
        orders.status != "cancelled",
        orders.date_key >= _key(request.start),
        orders.date_key <= _key(request.end),
    )
    value = o.order_id.count() if request.measure == "orders" else (o.amount - o.refunded.fill_null(0)).sum()
    return o.group_by("member_id").aggregate(value=value.cast("float64"))


def distribution(orders: ir.Table, brand_id: int, request: DistributionRequest) -> ir.Table:
    """Members per bucket: ``bucket`` (0-based), ``low``, ``high`` (null for the open last one) and
    ``members``, lowest bucket first. With ``edges`` e₀ < … < eₙ the buckets are [e₀, e₁) … [eₙ, ∞);
    values below e₀ are left out."""
    values = per_member(orders, brand_id, request)
    return bucketed(values, edges=request.edges, buckets=request.buckets, counted="members")
