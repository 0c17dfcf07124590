"""Figures of the insight scenes (B13) that the other analyses do not already give, written once with
Ibis over the warehouse: the member base, enrolments, new and returning buyers, coupon use, points
movements and member engagement. The scenes combine these with ``kpi``, ``rfm`` and ``ltv``.

Definitions (business days ``[start, end]`` of a ``kpi.Period``, brand's time zone):

* **member base** — ``members`` enrolled up to ``end``; ``new_members`` enrolled in the period;
  ``member_buyers`` members with an order in the period; ``member_sales`` their net sales
  (paid less refunds) and ``sales`` everyone's;
* **new / returning buyer** — a member whose first order ever (not cancelled) falls in the period
  is *new*; one who had ordered before ``start`` is *returning*;
* **coupon use** — coupons of the brand redeemed (state ``redeemed``) in the period, with the
  discount they gave (the brand's coupon cost);
* **points** — ledger entries of the period per point type and entry kind (amounts signed as in
  the ledger: earning is positive, spending and expiry negative);
* **engagement** — people (``person_key``) with a tracked event in the period.

Each function returns an expression; nothing here runs a query or knows the console.
"""

from __future__ import annotations

from datetime import date
from typing import Literal

import ibis
import ibis.expr.types as ir

from huiyuan.analytics import rfm
from huiyuan.analytics.kpi import Grain, Period, business_day

BuyerKind = Literal["new", "returning"]


def _key(day: date) -> int:
    return day.year * 10_000 + day.month * 100 + day.day


def _in(t: ir.Table, brand_id: int, period: Period) -> ir.Table:
    return t.filter(t.brand_id == brand_id, t.date_key >= _key(period.start), t.date_key <= _key(period.end))


def _paid(orders: ir.Table, brand_id: int) -> ir.Table:
    return orders.filter(orders.brand_id == brand_id, orders.status != "cancelled")


def _net(t: ir.Table) -> ir.NumericValue:
    return t.amount - t.refunded.fill_null(0)


def _bucket(date_key: ir.IntegerValue, grain: Grain) -> ir.DateValue:
    day = business_day(date_key)
    return day if grain == "day" else day.truncate("W" if grain == "week" else "M")


def member_base(orders: ir.Table, members: ir.Table, brand_id: int, period: Period) -> ir.Table:
    """One row: ``members``, ``new_members``, ``member_buyers``, ``member_sales``, ``sales``."""
    m = members.filter(members.brand_id == brand_id, members.enrolled_date_key <= _key(period.end))
    base = m.aggregate(
        members=m.member_id.count(),
        new_members=(m.enrolled_date_key >= _key(period.start)).sum(),
    )
    o = _in(_paid(orders, brand_id), brand_id, period)
    net = _net(o)
    sold = o.aggregate(
        member_buyers=o.member_id.nunique(),
        member_sales=net.sum(where=o.member_id.notnull()).cast("decimal(18, 2)"),
        sales=net.sum().cast("decimal(18, 2)"),
    )
    return base.cross_join(sold)


def lifecycle_states(orders: ir.Table, brand_id: int, request: rfm.LifecycleRequest) -> ir.Table:
    """Members per lifecycle state (``rfm.lifecycle``), counted in the warehouse."""
    per = rfm.lifecycle(orders, brand_id, request)
    return per.group_by("state").aggregate(members=per.member_id.count()).order_by("state")


def rfm_segments(orders: ir.Table, brand_id: int, request: rfm.RFMRequest) -> ir.Table:
    """The RFM segment summary (``rfm.segment_summary``) of the brand's members."""
    return rfm.segment_summary(rfm.rfm(orders, brand_id, request))


def enrollments(members: ir.Table, brand_id: int, period: Period, grain: Grain) -> ir.Table:
    """Members enrolled per day / week / month and enrolment channel, oldest first."""
    m = members.filter(
        members.brand_id == brand_id,
        members.enrolled_date_key >= _key(period.start),
        members.enrolled_date_key <= _key(period.end),
    )
    m = m.mutate(bucket=_bucket(m.enrolled_date_key, grain), channel=m.enroll_channel.fill_null(""))
    return (
        m.group_by(["bucket", "channel"])
        .aggregate(members=m.member_id.count())
        .order_by(["bucket", "channel"])
    )


def new_member_conversion(orders: ir.Table, members: ir.Table, brand_id: int, period: Period) -> ir.Table:
    """One row: members enrolled in the period (``enrolled``) and how many of them ordered between
    their enrolment and ``end`` (``converted``), with those orders' net ``sales``."""
    m = members.filter(
        members.brand_id == brand_id,
        members.enrolled_date_key >= _key(period.start),
        members.enrolled_date_key <= _key(period.end),
    ).select("member_id", "enrolled_date_key")
    o = _paid(orders, brand_id)
    o = o.filter(o.date_key <= _key(period.end))
    o = o.select(buyer=o.member_id, date_key=o.date_key, net=_net(o))
    joined = m.join(o, (m.member_id == o.buyer) & (o.date_key >= m.enrolled_date_key))
    bought = joined.group_by("member_id").aggregate(sales=joined.net.sum())
    return m.aggregate(enrolled=m.member_id.count()).cross_join(
        bought.aggregate(converted=bought.member_id.count(), sales=bought.sales.sum().cast("decimal(18, 2)"))
    )


def buyers_by_kind(orders: ir.Table, brand_id: int, period: Period) -> ir.Table:
    """Per kind of member buyer (``new``, ``returning``): ``buyers``, ``orders``, net ``sales``,
    ``repeat_buyers`` (two orders or more in the period)."""
    paid = _paid(orders, brand_id)
    paid = paid.filter(paid.member_id.notnull())
    first = paid.group_by("member_id").aggregate(first_key=paid.date_key.min())
    o = _in(paid, brand_id, period)
    per = o.group_by("member_id").aggregate(orders=o.order_id.count(), sales=_net(o).sum())
    joined = per.join(first, "member_id")
    joined = joined.mutate(kind=ibis.ifelse(joined.first_key >= _key(period.start), "new", "returning"))
    return (
        joined.group_by("kind")
        .aggregate(
            buyers=joined.member_id.count(),
            orders=joined.orders.sum(),
            sales=joined.sales.sum().cast("decimal(18, 2)"),
            repeat_buyers=(joined.orders >= 2).sum(),
        )
        .order_by("kind")
    )


def _redeemed(redemptions: ir.Table, brand_id: int, period: Period) -> ir.Table:
    r = _in(redemptions, brand_id, period)
    return r.filter(r.state == "redeemed")


def coupon_use(redemptions: ir.Table, brand_id: int, period: Period) -> ir.Table:
    """Per coupon kind: coupons redeemed, members and orders that used them, and the ``discount``
    they gave; most used first."""
    r = _redeemed(redemptions, brand_id, period)
    r = r.mutate(coupon_kind=r.coupon_kind.fill_null(""))
    return (
        r.group_by("coupon_kind")
        .aggregate(
            coupons=r.coupon_id.count(),
            members=r.member_id.nunique(),
            orders=r.lock_id.nunique(),
            discount=r.discount.sum().cast("decimal(18, 2)"),
        )
        .order_by([ibis.desc("coupons"), "coupon_kind"])
    )


def coupon_trend(redemptions: ir.Table, brand_id: int, period: Period, grain: Grain) -> ir.Table:
    """Coupons redeemed and their discount per day / week / month, oldest first."""
    r = _redeemed(redemptions, brand_id, period)
    r = r.mutate(bucket=_bucket(r.date_key, grain))
    return (
        r.group_by("bucket")
        .aggregate(coupons=r.coupon_id.count(), discount=r.discount.sum().cast("decimal(18, 2)"))
        .order_by("bucket")
    )


def coupon_templates(redemptions: ir.Table, brand_id: int, period: Period, limit: int = 10) -> ir.Table:
    """The coupon templates (campaign coupons) redeemed most in the period."""
    r = _redeemed(redemptions, brand_id, period)
    return (
        r.group_by("template_id")
        .aggregate(
            coupons=r.coupon_id.count(),
            members=r.member_id.nunique(),
            discount=r.discount.sum().cast("decimal(18, 2)"),
        )
        .order_by([ibis.desc("coupons"), "template_id"])
        .limit(limit)
    )


def points_flow(points: ir.Table, brand_id: int, period: Period) -> ir.Table:
    """Per point type and entry kind: entries, members and the signed sum of points."""
    p = _in(points, brand_id, period)
    p = p.mutate(point_type=p.point_type.fill_null(""))
    return (
        p.group_by(["point_type", "kind"])
        .aggregate(entries=p.entry_id.count(), members=p.member_id.nunique(), points=p.amount.sum())
        .order_by(["point_type", "kind"])
    )


def points_earned_by(
    points: ir.Table, brand_id: int, period: Period, by: Literal["funder", "source_type"]
) -> ir.Table:
    """Points earned (``earn`` entries) per funder or per source (order, action, manual …)."""
    p = _in(points, brand_id, period)
    p = p.filter(p.kind == "earn")
    p = p.mutate(value=p[by].fill_null(""))
    return (
        p.group_by("value")
        .aggregate(entries=p.entry_id.count(), members=p.member_id.nunique(), points=p.amount.sum())
        .order_by([ibis.desc("points"), "value"])
    )


def engagement(events: ir.Table, brand_id: int, period: Period, grain: Grain) -> ir.Table:
    """Active people and events per day / week / month, oldest first."""
    e = _in(events, brand_id, period)
    e = e.mutate(bucket=_bucket(e.date_key, grain))
    return (
        e.group_by("bucket")
        .aggregate(people=e.person_key.nunique(), events=e.event_id.count())
        .order_by("bucket")
    )


def engagement_totals(events: ir.Table, brand_id: int, period: Period) -> ir.Table:
    """One row: distinct ``people`` with an event in the period and the ``events`` they made."""
    e = _in(events, brand_id, period)
    return e.aggregate(people=e.person_key.nunique(), events=e.event_id.count())


def top_events(events: ir.Table, brand_id: int, period: Period, limit: int = 10) -> ir.Table:
    """The events done by the most people in the period."""
    e = _in(events, brand_id, period)
    return (
        e.group_by("event")
        .aggregate(people=e.person_key.nunique(), events=e.event_id.count())
        .order_by([ibis.desc("people"), "event"])
        .limit(limit)
    )


def event_names(events: ir.Table, brand_id: int, limit: int = 200) -> ir.Table:
    """The brand's event names, most frequent first (for the analysis forms' suggestions)."""
    e = events.filter(events.brand_id == brand_id, events.event.notnull())
    return (
        e.group_by("event")
        .aggregate(events=e.event_id.count())
        .order_by([ibis.desc("events"), "event"])
        .limit(limit)
    )
