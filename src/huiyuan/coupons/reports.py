"""Coupon settlement for finance and the plain coupon figures operators watch.

Both filter by the ``brand_id`` they are given as well as by the session's scope.

* ``settle`` — who pays for the discounts of a period: per store, per funder (platform, brand, the
  store, third parties), per day or month, from the append-only ``coupon_shares`` (a return adds
  negated rows in the period it happens). Its total equals the sum of the discounts redeemed in the
  period minus those returned, to the fen, because every redeemed discount is split with
  ``rules.split_cost`` into parts that add up exactly.
* ``stats`` — issued, used, expired, usage rate, discount cost and the sales of orders that used a
  coupon, per template, store or channel. Plain queries on the OLTP tables for one period; deeper
  analysis belongs to the warehouse.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any, Literal

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from huiyuan.coupons.issuing import brand_zone
from huiyuan.coupons.models import Coupon, CouponEvent, CouponLock, CouponShare, CouponTemplate
from huiyuan.kit.errors import ValidationFailed, field_error
from huiyuan.kit.tables import Section
from huiyuan.kit.types import to_money
from huiyuan.tenancy.models import Store

ZERO = Decimal("0.00")
Period = Literal["day", "month", "all"]
Dimension = Literal["template", "store", "channel"]


def _check_period(start: datetime, end: datetime) -> None:
    if start.tzinfo is None or end.tzinfo is None or start >= end:
        raise ValidationFailed(
            "Give a period with time zones, its start before its end.",
            errors=[field_error("to", "must be after from (both with a time zone)", "period")],
        )


@dataclass
class SettlementLine:
    period: str
    store_id: int | None
    store_name: str | None
    party: str
    party_id: str | None
    redeemed: Decimal
    returned: Decimal
    net: Decimal
    coupons: int


@dataclass
class Settlement:
    start: datetime
    end: datetime
    redeemed: Decimal = ZERO
    returned: Decimal = ZERO
    net: Decimal = ZERO
    lines: list[SettlementLine] = field(default_factory=list)
    by_party: dict[str, Decimal] = field(default_factory=dict)
    by_store: dict[str, Decimal] = field(default_factory=dict)


def settle(
    session: Session, *, brand_id: int, start: datetime, end: datetime, period: Period = "month"
) -> Settlement:
    _check_period(start, end)
    zone = brand_zone(session, brand_id)
    rows = session.execute(
        select(
            CouponShare.occurred_at,
            CouponShare.store_id,
            CouponShare.party,
            CouponShare.party_id,
            CouponShare.kind,
            CouponShare.amount,
            CouponShare.coupon_id,
        ).where(
            CouponShare.brand_id == brand_id, CouponShare.occurred_at >= start, CouponShare.occurred_at < end
        )
    ).all()
    stores = dict(session.execute(select(Store.id, Store.name).where(Store.brand_id == brand_id)).all())
    groups: dict[tuple[str, int | None, str, str | None], list[Any]] = defaultdict(
        lambda: [ZERO, ZERO, set()]
    )
    for at, store_id, party, party_id, kind, amount, coupon_id in rows:
        local = at.astimezone(zone)
        label = {"day": local.strftime("%Y-%m-%d"), "month": local.strftime("%Y-%m"), "all": "all"}[period]
        g = groups[(label, store_id, party, party_id)]
        g[0 if kind == "redeem" else 1] += amount
        g[2].add(coupon_id)
    out = Settlement(start=start, end=end)
    for (label, store_id, party, party_id), (redeemed, returned, coupons) in sorted(
        groups.items(), key=lambda kv: (kv[0][0], kv[0][1] or 0, kv[0][2], kv[0][3] or "")
    ):
        net = to_money(redeemed + returned)
        out.lines.append(
            SettlementLine(
                period=label,
                store_id=store_id,
                store_name=stores.get(store_id) if store_id is not None else None,
                party=party,
                party_id=party_id,
                redeemed=to_money(redeemed),
                returned=to_money(-returned),
                net=net,
                coupons=len(coupons),
            )
        )
        out.redeemed += redeemed
        out.returned -= returned
        out.by_party[party if party_id is None else f"{party}:{party_id}"] = to_money(
            out.by_party.get(party if party_id is None else f"{party}:{party_id}", ZERO) + net
        )
        store_key = str(store_id) if store_id is not None else "online"
        out.by_store[store_key] = to_money(out.by_store.get(store_key, ZERO) + net)
    out.redeemed, out.returned = to_money(out.redeemed), to_money(out.returned)
    out.net = to_money(out.redeemed - out.returned)
    return out


SETTLEMENT_HEADERS = (
    "期间 / Period",
    "门店ID / Store id",
    "门店 / Store",
    "出资方 / Funder",
    "出资方ID / Funder id",
    "核销优惠 / Redeemed",
    "退回 / Returned",
    "净额 / Net",
    "券数 / Coupons",
)


def settlement_sections(s: Settlement) -> list[Section]:
    summary: list[list[Any]] = [
        ["开始 / From", s.start.isoformat()],
        ["结束 / To", s.end.isoformat()],
        ["核销优惠 / Redeemed", s.redeemed],
        ["退回 / Returned", s.returned],
        ["净额 / Net", s.net],
    ]
    lines = [
        [x.period, x.store_id, x.store_name, x.party, x.party_id, x.redeemed, x.returned, x.net, x.coupons]
        for x in s.lines
    ]
    return [
        ("券结算概要 / Summary", ("项目 / Item", "值 / Value"), summary),
        ("券结算明细 / Lines", SETTLEMENT_HEADERS, lines),
    ]


@dataclass
class StatsRow:
    key: str
    label: str
    issued: int = 0
    used: int = 0
    expired: int = 0
    usage_rate: float | None = None
    discount_cost: Decimal = ZERO
    coupon_sales: Decimal = ZERO
    orders: int = 0


def stats(
    session: Session, *, brand_id: int, start: datetime, end: datetime, by: Dimension = "template"
) -> list[StatsRow]:
    """The brand's figures (filtered by ``brand_id`` as well as by the scope, so a platform reader
    asking for one brand gets that brand's). Per ``by``: coupons issued in the period, used
    (redeemed) and expired in it, usage rate (of the coupons issued in the period, the share used by
    now), discount cost (net cost shares) and the sales (after discounts) of the orders that used a
    coupon. Issues and expiries have no store, so per store they are not shown."""
    _check_period(start, end)
    templates = dict(
        session.execute(
            select(CouponTemplate.id, CouponTemplate.name).where(CouponTemplate.brand_id == brand_id)
        ).all()
    )
    stores = dict(session.execute(select(Store.id, Store.name).where(Store.brand_id == brand_id)).all())
    rows: dict[str, StatsRow] = {}

    def row(template_id: Any, store_id: Any, channel: Any) -> StatsRow:
        key, label = {
            "template": (template_id, templates.get(template_id)),
            "store": (store_id, stores.get(store_id)),
            "channel": (channel, None),
        }[by]
        k = "—" if key is None else str(key)
        if k not in rows:
            rows[k] = StatsRow(key=k, label=label or k)
        return rows[k]

    if by != "store":
        issued_q = (
            select(
                Coupon.template_id,
                Coupon.channel,
                func.count(),
                func.count().filter(Coupon.status == "redeemed"),
            )
            .where(Coupon.brand_id == brand_id, Coupon.issued_at >= start, Coupon.issued_at < end)
            .group_by(Coupon.template_id, Coupon.channel)
        )
        used_now_of: dict[str, int] = defaultdict(int)
        for template_id, channel, issued, used_now in session.execute(issued_q):
            r = row(template_id, None, channel)
            r.issued += issued
            used_now_of[r.key] += used_now
        for r in rows.values():
            r.usage_rate = round(used_now_of[r.key] / r.issued, 4) if r.issued else None
        expired = (
            select(Coupon.template_id, Coupon.channel, func.count())
            .select_from(CouponEvent)
            .join(Coupon, Coupon.id == CouponEvent.coupon_id)
            .where(
                CouponEvent.brand_id == brand_id,
                CouponEvent.kind == "expired",
                CouponEvent.occurred_at >= start,
                CouponEvent.occurred_at < end,
            )
            .group_by(Coupon.template_id, Coupon.channel)
        )
        for template_id, channel, count in session.execute(expired):
            row(template_id, None, channel).expired += count
    # Used: redeem events in the period, by template or by the lock's store and channel.
    used = (
        select(Coupon.template_id, CouponLock.store_id, CouponLock.channel, func.count())
        .select_from(CouponEvent)
        .join(Coupon, Coupon.id == CouponEvent.coupon_id)
        .join(CouponLock, CouponLock.id == CouponEvent.lock_id)
        .where(
            CouponEvent.brand_id == brand_id,
            CouponEvent.kind == "redeemed",
            CouponEvent.occurred_at >= start,
            CouponEvent.occurred_at < end,
        )
        .group_by(Coupon.template_id, CouponLock.store_id, CouponLock.channel)
    )
    for u in session.execute(used):
        row(u[0], u[1], u[2]).used += u[3]
    cost = (
        select(
            CouponShare.template_id, CouponShare.store_id, CouponShare.channel, func.sum(CouponShare.amount)
        )
        .where(
            CouponShare.brand_id == brand_id, CouponShare.occurred_at >= start, CouponShare.occurred_at < end
        )
        .group_by(CouponShare.template_id, CouponShare.store_id, CouponShare.channel)
    )
    for c in session.execute(cost):
        r = row(c[0], c[1], c[2])
        r.discount_cost = to_money(r.discount_cost + (c[3] or ZERO))
    sales = select(
        CouponLock.store_id,
        CouponLock.channel,
        CouponLock.order_amount,
        CouponLock.discount,
        CouponLock.allocation,
    ).where(
        CouponLock.brand_id == brand_id,
        CouponLock.redeemed_at >= start,
        CouponLock.redeemed_at < end,
        CouponLock.state.in_(("redeemed", "returned")),
    )
    for store_id, channel, amount, discount, allocation in session.execute(sales):
        paid = to_money(amount - discount)
        template_ids: Sequence[int | None] = sorted(
            {int(a["template_id"]) for a in allocation.get("coupons", [])}
        )
        for r in {id(x): x for x in (row(t, store_id, channel) for t in template_ids or [None])}.values():
            r.coupon_sales = to_money(r.coupon_sales + paid)
            r.orders += 1
    return sorted(rows.values(), key=lambda r: r.key)
