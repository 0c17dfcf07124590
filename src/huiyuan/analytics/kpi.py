"""Retail KPIs over the warehouse's ``fact_orders`` (and ``dim_member``, ``dim_store``): totals,
trends by day / week / month, period-on-period and year-on-year comparison, breakdown by a
dimension and each value's contribution to a change — written once with Ibis.

Definitions (business days ``[start, end]``, brand's time zone):

* ``sales`` — paid amount less refunds; ``orders`` — paid orders; ``units`` — items sold;
* ``buyers`` — distinct people (``person_key``; an anonymous order counts as one buyer);
* ``aov`` (客单价) = sales / buyers, so **sales = AOV × buyers**;
* ``aspt`` (笔单价) = sales / orders; ``upt`` (连带率) = units / orders; ``aspu`` (件单价) =
  sales / units, so **ASPT = ASPU × UPT**;
* ``discount_rate`` = discount / list amount; ``repurchase_rate`` = share of member buyers with two
  orders or more in the period; ``new_members`` — members enrolled in the period.

Contribution to a change (``contribution``): for an additive metric (sales, orders, units) each
value's share is its own delta ÷ the total delta, so the shares add up to 1 — what drove the change.
"""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any, Literal

import ibis
import ibis.expr.types as ir
from pydantic import BaseModel, ConfigDict, Field, model_validator

ADDITIVE = ("sales", "orders", "units", "buyers", "list_amount", "discount")
DERIVED = ("aov", "aspt", "upt", "aspu", "discount_rate", "repurchase_rate")
METRICS = (*ADDITIVE, *DERIVED)
DIMENSIONS = ("channel", "store", "city")
Grain = Literal["day", "week", "month"]


def _key(day: date) -> int:
    return day.year * 10_000 + day.month * 100 + day.day


def business_day(date_key: ir.IntegerValue) -> ir.DateValue:
    return ibis.date(date_key // 10_000, (date_key // 100) % 100, date_key % 100)


class Period(BaseModel):
    model_config = ConfigDict(extra="forbid")

    start: date
    end: date = Field(description="Last business day, included")

    @model_validator(mode="after")
    def _ordered(self) -> Period:
        if self.end < self.start:
            raise ValueError("end must not be before start")
        if (self.end - self.start).days > 3660:
            raise ValueError("a period is at most ten years")
        return self

    def previous(self, kind: Literal["period", "year"]) -> Period:
        if kind == "year":
            return Period(start=_minus_year(self.start), end=_minus_year(self.end))
        days = (self.end - self.start).days + 1
        return Period(start=self.start - timedelta(days=days), end=self.end - timedelta(days=days))


def _minus_year(day: date) -> date:
    try:
        return day.replace(year=day.year - 1)
    except ValueError:  # 29 February
        return day.replace(year=day.year - 1, day=28)


def _orders_in(orders: ir.Table, brand_id: int, period: Period) -> ir.Table:
    return orders.filter(
        orders.brand_id == brand_id,
        orders.status != "cancelled",
        orders.date_key >= _key(period.start),
        orders.date_key <= _key(period.end),
    )


def _aggregate(t: ir.Table, by: list[Any]) -> ir.Table:
    buyer = t.person_key.fill_null(ibis.literal("order:") + t.order_id.cast("string"))
    metrics = {
        "sales": (t.amount - t.refunded.fill_null(0)).sum().cast("decimal(18, 2)"),
        "orders": t.order_id.count(),
        "units": t.units.sum(),
        "buyers": buyer.nunique(),
        "list_amount": t.list_amount.sum().cast("decimal(18, 2)"),
        "discount": t.discount.sum().cast("decimal(18, 2)"),
    }
    return t.group_by(by).aggregate(**metrics) if by else t.aggregate(**metrics)


def _ratio(a: ir.NumericValue, b: ir.NumericValue) -> ir.FloatingValue:
    return ibis.cases((b == 0, ibis.null("float64")), else_=a.cast("float64") / b.cast("float64"))


def _derive(t: ir.Table) -> ir.Table:
    return t.mutate(
        aov=_ratio(t.sales, t.buyers),
        aspt=_ratio(t.sales, t.orders),
        upt=_ratio(t.units, t.orders),
        aspu=_ratio(t.sales, t.units),
        discount_rate=_ratio(t.discount, t.list_amount),
    )


def _repurchase(orders: ir.Table, by: list[str]) -> ir.Table:
    members = orders.filter(orders.member_id.notnull())
    per = members.group_by([*by, "member_id"]).aggregate(n=members.order_id.count())
    agg = {"member_buyers": per.member_id.count(), "repeat_buyers": (per.n >= 2).sum()}
    return per.group_by(by).aggregate(**agg) if by else per.aggregate(**agg)


def totals(orders: ir.Table, brand_id: int, period: Period) -> ir.Table:
    """One row: every metric over the period."""
    t = _orders_in(orders, brand_id, period)
    base = _derive(_aggregate(t, []))
    rep = _repurchase(t, [])
    joined = base.cross_join(rep)
    return joined.mutate(repurchase_rate=_ratio(joined.repeat_buyers, joined.member_buyers)).drop(
        "member_buyers", "repeat_buyers"
    )


def trend(orders: ir.Table, brand_id: int, period: Period, grain: Grain) -> ir.Table:
    """One row per day / week (from Monday) / month of the period that has orders, oldest first."""
    t = _orders_in(orders, brand_id, period)
    day = business_day(t.date_key)
    bucket = day if grain == "day" else day.truncate("W" if grain == "week" else "M")
    t = t.mutate(bucket=bucket)
    base = _derive(_aggregate(t, ["bucket"]))
    rep = _repurchase(t, ["bucket"])
    joined = base.left_join(rep, "bucket").drop("bucket_right")
    return (
        joined.mutate(repurchase_rate=_ratio(joined.repeat_buyers, joined.member_buyers))
        .drop("member_buyers", "repeat_buyers")
        .order_by("bucket")
    )


def _with_dimension(orders: ir.Table, stores: ir.Table | None, dimension: str) -> tuple[ir.Table, str]:
    if dimension == "channel":
        return orders.mutate(value=orders.channel.fill_null("")), "value"
    if dimension == "store":
        return orders.mutate(value=orders.store_id.cast("string").fill_null("")), "value"
    if dimension == "city":
        if stores is None:
            raise ValueError("the city breakdown needs dim_store")
        s = stores.select(store_id=stores.store_id, store_city=stores.city)
        joined = orders.left_join(s, orders.store_id == s.store_id)
        return joined.mutate(value=joined.store_city.fill_null("")), "value"
    raise ValueError(f"unknown dimension {dimension!r} ({', '.join(DIMENSIONS)})")


def breakdown(
    orders: ir.Table, brand_id: int, period: Period, dimension: str, *, stores: ir.Table | None = None
) -> ir.Table:
    """Every additive and derived metric per value of ``dimension``, largest sales first."""
    t, col = _with_dimension(_orders_in(orders, brand_id, period), stores, dimension)
    return _derive(_aggregate(t, [col])).order_by([ibis.desc("sales"), col])


def contribution(
    orders: ir.Table,
    brand_id: int,
    period: Period,
    dimension: str,
    *,
    metric: Literal["sales", "orders", "units"] = "sales",
    against: Literal["period", "year"] = "period",
    stores: ir.Table | None = None,
) -> ir.Table:
    """Per value of ``dimension``: the metric now and in the previous period (or a year before),
    the delta, and its share of the total delta (shares add up to 1); biggest movers first."""
    before = period.previous(against)
    now_t, col = _with_dimension(_orders_in(orders, brand_id, period), stores, dimension)
    then_t, _ = _with_dimension(_orders_in(orders, brand_id, before), stores, dimension)
    now = _aggregate(now_t, [col]).select(col, current=ibis._[metric])
    then = _aggregate(then_t, [col]).select(col, previous=ibis._[metric])
    both = now.outer_join(then, col)
    both = both.mutate(value=both[col].fill_null(both[f"{col}_right"])).select(
        "value", current=both.current.fill_null(0), previous=both.previous.fill_null(0)
    )
    both = both.mutate(delta=both.current - both.previous)
    total = both.delta.sum().over(ibis.window())
    return both.mutate(share_of_change=_ratio(both.delta, total)).order_by(
        [ibis.desc(both.delta.abs()), "value"]
    )
