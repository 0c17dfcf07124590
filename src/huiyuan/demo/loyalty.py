"""The demo world's loyalty programme lived: each brand's point types, earn rules, tier ladder and
paid plans configured (``demo.loyalty_config``), then two years of it lived through the real verbs
with the clock set to the time each thing happened.

The history is two walks per brand, forward in time, with the clock set to each moment:

1. Points, one local month a step. Events of the step run at their own times, in time order: paid
   plans bought and renewed (``paid.service.buy``: one-time points, the plan's multiplier on later
   earning), check-ins over the last 60 days (``earning.earn_for_action``), redemptions
   (``ledger.spend`` at a store) and checkouts paying part of an order with points
   (``ledger.reserve`` + ``ledger.confirm``). Then, once the month's return window (7 days) has
   closed, the month's orders earn set-based (``points.bulk.earn_for_orders``, chunks of up to 2,000
   orders, grouped by member): lots carry the order's
   ``paid_at`` as ``earned_at`` and are spendable at once; the last week of history earns at the end
   and stays pending. Refunds of orders that have earned give their points back
   (``earning.give_back_for_refund``; the latest ``GIVE_BACK_LIMIT`` refunds of a brand, as each
   costs ~15 ms). After each yearly clearing the expired lots are swept (``sweeps.expire_due_bulk``).
   At the end: the activation and expiry sweeps, and paid plans past their end expire.
2. Tiers, configured once the points walk is done, so history points carry no tier multiplier
   (paid plan multipliers do apply). The growth value of every step comes from the entries the
   points walk wrote, as a window sliding over them. One step per month, then one per day over the
   last 90 days: members whose growth over the 12 months before the step reaches a higher level,
   and members whose level's validity (plus grace) ended, are evaluated
   (``tiers.service.evaluate_member``: upgrades with their gift points, retention, downgrades);
   members never evaluated hold the base level, as the distribution counts them. Each
   of the last 90 days and today get their distribution snapshot (``take_snapshot`` for that day),
   taken as the walk passes that day, so the series shows the ladder as it was.

Outbox events written by the history are dropped, as for the backfilled orders: the history is not
replayed to subscribers; the configuration and every verb leave their audit rows. Randomness comes
from ``random.Random`` streams named after the seed and the brand, and the walk only depends on
them and on the stored history, so the same seed and end give the same balances on either database.
Must not print: progress goes to the caller's callbacks.
"""

from __future__ import annotations

import bisect
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any

from dateutil.relativedelta import relativedelta
from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from huiyuan.demo.loyalty_config import (
    GROWTH,
    LOYALTY,
    PENDING_DAYS,
    POINTS,
    configure_plans,
    configure_points,
    configure_tiers,
)
from huiyuan.demo.people import LOCAL, utc
from huiyuan.kit.clock import Clock, FrozenClock, get_clock, set_clock, utcnow
from huiyuan.kit.db import Database
from huiyuan.kit.scope import system_for_brand
from huiyuan.members.models import Member
from huiyuan.orders.models import Order, Refund
from huiyuan.outbox.models import OutboxEvent
from huiyuan.paid import service as paid_service
from huiyuan.paid.repository import SubscriptionRepository
from huiyuan.paid.schemas import BuyIn
from huiyuan.points import bulk, earning, ledger, sweeps
from huiyuan.points.models import PointEntry, PointType
from huiyuan.points.repository import PointQueryRepository
from huiyuan.tiers import distribution
from huiyuan.tiers import service as tiers_service
from huiyuan.tiers.ladder import load_ladder
from huiyuan.tiers.models import MemberTier, TierLevel
from huiyuan.tiers.repository import GROWTH_ENTRY_KINDS

# -- the history -----------------------------------------------------------------------------------

CHUNK = 2_000  # orders per set-based earning call
SNAPSHOT_DAYS = 90
CLEARING_MONTHS = (1,)  # yearly clearing: lots of year Y end at 00:00 local on 1 January Y+2
PLAN_SHARE = 0.025  # members with 4+ orders who buy a paid plan at some point
CHECK_IN_SHARE = 0.04  # of the profile's check-in share: members checking in over the last 60 days
REDEEM_SHARE = 0.02  # members with orders redeeming points for a gift once
CHECKOUT_SHARE = 0.003  # orders of the last year paid partly with points
GIVE_BACK_LIMIT = 400  # refunds (the latest) whose points are given back, per brand


@dataclass
class _Order:
    id: int
    member_id: int
    paid_at: datetime
    store_id: int | None
    number: str
    paid_fen: int


@dataclass(order=True)
class _Event:
    at: datetime
    seq: int
    kind: str = field(compare=False)
    member_id: int = field(compare=False)
    detail: dict[str, Any] = field(compare=False, default_factory=dict)


@dataclass
class LoyaltyCounts:
    counts: dict[str, int] = field(default_factory=dict)

    def add(self, name: str, n: int = 1) -> None:
        self.counts[name] = self.counts.get(name, 0) + n


def _months(start: datetime, end: datetime) -> list[datetime]:
    """UTC instants of local month starts after ``start`` up to ``end``, then ``end`` itself."""
    local = (start + LOCAL).date()
    out = []
    year, month = local.year, local.month
    while True:
        month += 1
        if month > 12:
            year, month = year + 1, 1
        at = utc(date(year, month, 1))
        if at >= end:
            break
        out.append(at)
    return [*out, end]


def _day_ends(end: datetime, days: int) -> list[tuple[date, datetime]]:
    """(local day, its end as UTC) of the ``days`` full local days before ``end``'s day."""
    today = (end + LOCAL).date()
    return [(today - timedelta(days=i), utc(today - timedelta(days=i - 1))) for i in range(days, 0, -1)]


def _clock(at: datetime) -> None:
    set_clock(FrozenClock(at))


class History:
    """The programme of one brand, lived from the first order to ``end``."""

    def __init__(
        self,
        db: Database,
        *,
        brand_id: int,
        code: str,
        store_ids: list[int],
        seed: int,
        start: datetime,
        end: datetime,
        advance: Callable[[str, int], None],
    ) -> None:
        self.db = db
        self.brand_id = brand_id
        self.code = code
        self.store_ids = store_ids
        self.start = start
        self.end = end
        self.actor = system_for_brand(brand_id)
        self.rng = random.Random(f"{seed}:{code}:loyalty")
        self.advance = advance
        self.result = LoyaltyCounts()
        self.plan_levels: dict[str, tuple[int, str, int]] = {}
        self.thresholds: list[tuple[int, int]] = []
        self.orders: list[_Order] = []
        self.refunds: list[tuple[datetime, int, int]] = []  # (refunded_at, refund id, order id)
        self._points_type_id: int | None = None

    # -- setup -------------------------------------------------------------------------------------

    def configure(self) -> None:
        _clock(self.start)
        with self.db.unit_of_work() as s:
            configure_points(s, actor=self.actor, code=self.code, store_ids=self.store_ids)
            self.plan_levels = configure_plans(s, actor=self.actor, code=self.code)

    def load(self) -> int:
        with self.db.unit_of_work(write=False) as s:
            rows = s.execute(
                select(
                    Order.id,
                    Order.member_id,
                    Order.paid_at,
                    Order.store_id,
                    Order.order_number,
                    Order.paid_amount,
                )
                .where(Order.brand_id == self.brand_id, Order.member_id.is_not(None))
                .order_by(Order.paid_at, Order.id)
            ).all()
            self.orders = [
                _Order(r[0], r[1], r[2], r[3], r[4], int(r[5] * 100)) for r in rows if r[1] is not None
            ]
            refunds = s.execute(
                select(Refund.refunded_at, Refund.id, Refund.order_id)
                .join(Order, Order.id == Refund.order_id)
                .where(Order.brand_id == self.brand_id, Order.member_id.is_not(None))
                .order_by(Refund.refunded_at, Refund.id)
            ).all()
            self.refunds = [(r[0], r[1], r[2]) for r in refunds][-GIVE_BACK_LIMIT:]
            self.open_members = set(
                s.scalars(
                    select(Member.id).where(Member.brand_id == self.brand_id, Member.status == "active")
                )
            )
        return len(self.orders)

    def events(self) -> list[_Event]:
        """Plan purchases, check-ins, redemptions and checkouts, drawn from the orders."""
        rng = self.rng
        by_member: dict[int, list[_Order]] = {}
        for o in self.orders:
            by_member.setdefault(o.member_id, []).append(o)
        members = sorted(m for m in by_member if m in self.open_members)
        out: list[_Event] = []

        def add(at: datetime, kind: str, member_id: int, **detail: Any) -> None:
            if self.orders[0].paid_at < at < self.end:
                out.append(_Event(at, len(out), kind, member_id, detail))

        loyal = [m for m in members if len(by_member[m]) >= 4]
        for m in rng.sample(loyal, min(len(loyal), max(3, round(len(loyal) * PLAN_SHARE)))):
            first = rng.choice(by_member[m])
            level = rng.choice(
                ["working-month", "working-month", "family-month", "working-year", "family-year"]
            )
            months = self.plan_levels[level][2]
            renewals = rng.choice([0, 0, 1, 2, 3]) if months == 1 else rng.choice([0, 0, 0, 1])
            for n in range(renewals + 1):
                at = first.paid_at + timedelta(minutes=5) + relativedelta(months=months * n)
                if n:
                    at -= timedelta(days=rng.randint(1, 5))
                add(at, "buy", m, level=level, n=n)
        profile = LOYALTY[self.code]
        checkers = rng.sample(
            members, min(len(members), round(len(members) * profile.check_in_share * CHECK_IN_SHARE))
        )
        for m in checkers:
            for day in sorted(rng.sample(range(1, 61), rng.randint(1, 4))):
                at = utc((self.end + LOCAL).date() - timedelta(days=day)) + timedelta(
                    hours=rng.randint(8, 22)
                )
                add(at, "check_in", m)
        for m in rng.sample(members, min(len(members), round(len(members) * REDEEM_SHARE))):
            at = self.end - timedelta(days=rng.uniform(1, 400))
            add(at, "redeem", m, store=rng.choice(self.store_ids))
        last_year = [
            o
            for o in self.orders
            if o.paid_at > self.end - timedelta(days=365) and o.member_id in self.open_members
        ]
        for o in rng.sample(last_year, min(len(last_year), round(len(last_year) * CHECKOUT_SHARE))):
            add(o.paid_at - timedelta(minutes=3), "checkout", o.member_id, order=o)
        out.sort()
        return out

    # -- the points walk ---------------------------------------------------------------------------

    def _available(self, s: Session, member_id: int) -> int:
        """The points the member can spend at the clock's time (``PointQueryRepository.spendable``),
        not the account's cached ``available``: that still counts lots expired since the last sweep,
        so a redemption sized by it could ask for more than the ledger draws (it did with the history
        ending on 2026-12-07)."""
        if self._points_type_id is None:
            self._points_type_id = ledger.point_type_by_code(s, self.brand_id, POINTS).id
        return PointQueryRepository(s).spendable(member_id, self._points_type_id, now=utcnow())

    def _run_event(self, s: Session, event: _Event) -> None:
        _clock(event.at)
        actor, m = self.actor, event.member_id
        if event.kind == "buy":
            level_id, price, _months = self.plan_levels[event.detail["level"]]
            paid_service.buy(
                s,
                actor=actor,
                member_id=m,
                data=BuyIn(
                    level_id=level_id,
                    payment_reference=f"DEMO-{self.code}-{m}-{event.detail['n']}",
                    amount=Decimal(price),
                ),
            )
            self.result.add("plan_purchases" if event.detail["n"] == 0 else "plan_renewals")
        elif event.kind == "check_in":
            day = (event.at + LOCAL).date().isoformat()
            earning.earn_for_action(
                s,
                actor=actor,
                member_id=m,
                action="check_in",
                key=f"check_in:{m}:{day}",
                occurred_at=event.at,
            )
            self.result.add("check_ins")
        elif event.kind == "redeem":
            available = self._available(s, m)
            if available >= 500:
                amount = min(available // 500 * 500, 5000)
                ledger.spend(
                    s,
                    actor=actor,
                    member_id=m,
                    point_type=POINTS,
                    amount=amount,
                    key=f"redeem:{m}:{event.seq}",
                    source_type="redemption",
                    source_id=f"gift-{amount}",
                    reason="积分兑礼",
                    store_id=event.detail["store"],
                )
                self.result.add("redemptions")
        elif event.kind == "checkout":
            order: _Order = event.detail["order"]
            available = self._available(s, m)
            # Points pay at most a fifth of the order here (100 points = 1 yuan).
            amount = min(available, order.paid_fen // 5) // 100 * 100
            if amount >= 100:
                key = f"checkout:{order.id}"
                ledger.reserve(
                    s,
                    actor=actor,
                    member_id=m,
                    point_type=POINTS,
                    amount=amount,
                    key=key,
                    order_ref=order.number,
                    store_id=order.store_id,
                )
                _clock(event.at + timedelta(minutes=2))
                ledger.confirm(s, actor=actor, reservation_key=key)
                self.result.add("checkouts")

    def _earn(self, orders: list[_Order], at: datetime) -> None:
        _clock(at)
        ordered = sorted(orders, key=lambda o: (o.member_id, o.paid_at, o.id))
        for i in range(0, len(ordered), CHUNK):
            chunk = ordered[i : i + CHUNK]
            with self.db.unit_of_work() as s:
                done = bulk.earn_for_orders(s, actor=self.actor, order_ids=[o.id for o in chunk])
                for order_id in done.per_order:  # members with a refund debt: one by one
                    earning.earn_for_order(s, actor=self.actor, order_id=order_id)
            self.result.add("point_grants", done.grants)
            self.advance("points", len(chunk))

    def _sweep_expired(self, at: datetime) -> None:
        _clock(at)
        after = 0
        while True:
            with self.db.unit_of_work() as s:
                lots, points, after = sweeps.expire_due_bulk(s, actor=self.actor, now=at, after_lot_id=after)
            if not lots:
                return
            self.result.add("expired_points", points)

    def walk_points(self) -> None:
        """Month by month: events, then the month's earning after its return window, give-backs,
        and expiry after each yearly clearing."""
        events = self.events()
        refunds = list(self.refunds)
        earned_until = self.orders[0].paid_at - timedelta(seconds=1)
        pending = list(self.orders)
        bounds = _months(self.orders[0].paid_at, self.end)
        for i, bound in enumerate(bounds):
            final = i == len(bounds) - 1
            at = self.end if final else min(bound + timedelta(days=PENDING_DAYS), self.end)
            due = [e for e in events if e.at <= at]
            events = events[len(due) :]
            if due:
                with self.db.unit_of_work() as s:
                    for event in due:
                        self._run_event(s, event)
            cut = bisect.bisect_right([o.paid_at for o in pending], bound if not final else self.end)
            window, pending = pending[:cut], pending[cut:]
            if window:
                self._earn(window, at)
                earned_until = window[-1].paid_at
            back = [r for r in refunds if r[0] <= at]
            refunds = refunds[len(back) :]
            if back:
                _clock(at)
                with self.db.unit_of_work() as s:
                    for _when, refund_id, order_id in back:
                        earning.give_back_for_refund(
                            s, actor=self.actor, order_id=order_id, refund_id=refund_id
                        )
                self.result.add("refund_give_backs", len(back))
            previous = bounds[i - 1] if i else self.orders[0].paid_at
            if (bound + LOCAL).month == 1 and (bound + LOCAL).day == 1 and previous < bound:
                self._sweep_expired(at)
        assert earned_until <= self.end and not pending

    def finish_points(self) -> None:
        """At the end: the activation and expiry sweeps, and paid plans past their end expire."""
        _clock(self.end)
        after = 0
        while True:
            with self.db.unit_of_work() as s:
                lots, points, after = ledger.activate_due(
                    s, actor=self.actor, now=self.end, after_lot_id=after
                )
            if not lots:
                break
            self.result.add("activated_points", points)
        self._sweep_expired(self.end)
        with self.db.unit_of_work(self.actor.scope) as s:
            repo = SubscriptionRepository(s)
            for sub_id in repo.due_to_expire_ids(self.end, after_id=0, limit=100_000):
                if paid_service.expire_one(s, actor=self.actor, subscription_id=sub_id):
                    self.result.add("plans_expired")

    # -- the tier walk -----------------------------------------------------------------------------

    def tier_steps(self) -> list[tuple[datetime, date | None]]:
        """(moment, day to snapshot) of the tier walk: month ends, then every day of the last 90."""
        days = _day_ends(self.end, SNAPSHOT_DAYS)
        first_day_end = days[0][1]
        steps: list[tuple[datetime, date | None]] = [
            (b, None) for b in _months(self.orders[0].paid_at, self.end)[:-1] if b < first_day_end
        ]
        steps += [(at, day) for day, at in days]
        return [*steps, (self.end, (self.end + LOCAL).date())]

    def _growth_entries(self) -> list[tuple[datetime, int, int]]:
        """(occurred_at, member, amount) of every entry that moves growth value, in time order."""
        growth_type = select(PointType.id).where(
            PointType.brand_id == self.brand_id, PointType.code == GROWTH
        )
        with self.db.unit_of_work(write=False) as s:
            rows = s.execute(
                select(PointEntry.occurred_at, PointEntry.member_id, PointEntry.amount)
                .where(
                    PointEntry.brand_id == self.brand_id,
                    PointEntry.point_type_id.in_(growth_type.scalar_subquery()),
                    PointEntry.kind.in_(GROWTH_ENTRY_KINDS),
                )
                .order_by(PointEntry.occurred_at, PointEntry.id)
            ).all()
        return [(at, int(m), int(n)) for at, m, n in rows]

    def walk_tiers(self, advance: Callable[[int], None]) -> None:
        """Configure the ladder, then evaluate at each step the members a step can change: those
        whose growth reached a higher level, and those whose level's validity ended."""
        _clock(self.start)
        with self.db.unit_of_work() as s:
            self.thresholds = configure_tiers(s, actor=self.actor, code=self.code)
        rank: dict[int, int] = {}
        # Growth over the 12 months before each step, as a window sliding over the entries.
        entries = self._growth_entries()
        growth: dict[int, int] = {}
        added = dropped = 0
        for at, day in self.tier_steps():
            while added < len(entries) and entries[added][0] <= at:
                _when, m, n = entries[added]
                growth[m] = growth.get(m, 0) + n
                added += 1
            since = at - relativedelta(months=12)
            while dropped < added and entries[dropped][0] <= since:
                _when, m, n = entries[dropped]
                growth[m] -= n
                dropped += 1
            _clock(at)
            with self.db.unit_of_work(self.actor.scope) as s:
                due = set(
                    s.scalars(
                        select(MemberTier.member_id).where(
                            MemberTier.brand_id == self.brand_id,
                            MemberTier.review_at.is_not(None),
                            MemberTier.review_at <= at,
                        )
                    )
                )
                reach = {
                    m
                    for m, g in growth.items()
                    if any(g >= t and r > rank.get(m, 0) for r, t in self.thresholds)
                }
                ladder = load_ladder(s, self.brand_id)
                for m in sorted(due | reach):
                    state = tiers_service.evaluate_member(
                        s, actor=self.actor, member_id=m, reason="demo history", ladder=ladder
                    )
                    if state is not None and ladder is not None:
                        rank[m] = ladder.by_id(state.level_id).rank
                self.result.add("tier_evaluations", len(due | reach))
                if day is not None:
                    distribution.take_snapshot(s, brand_id=self.brand_id, day=day)
                    self.result.add("tier_snapshots")
            advance(1)
        with self.db.unit_of_work(write=False) as s:
            for code, n in s.execute(
                select(TierLevel.code, func.count())
                .join(MemberTier, MemberTier.level_id == TierLevel.id)
                .where(TierLevel.brand_id == self.brand_id)
                .group_by(TierLevel.code)
            ):
                self.result.counts[f"tier_{code}"] = int(n)


@dataclass
class LoyaltyBrand:
    id: int
    code: str
    store_ids: list[int]


def build_loyalty(
    db: Database,
    brands: list[LoyaltyBrand],
    *,
    seed: int,
    start: datetime,
    end: datetime,
    start_phase: Callable[[str, int], None],
    advance: Callable[[str, int], None],
    finish_phase: Callable[[str], None],
) -> dict[str, dict[str, int]]:
    """Configure and live the loyalty programme of every brand; returns counts per brand code.

    Phases reported: ``points`` (member orders earned), ``tiers`` (steps of the tier walk)."""
    previous: Clock = get_clock()
    with db.unit_of_work(write=False) as s:
        last_event = int(s.scalar(select(func.coalesce(func.max(OutboxEvent.id), 0))) or 0)
    try:
        histories = [
            History(
                db,
                brand_id=b.id,
                code=b.code,
                store_ids=b.store_ids,
                seed=seed,
                start=start,
                end=end,
                advance=advance,
            )
            for b in brands
        ]
        for h in histories:
            h.configure()
        start_phase("points", sum(h.load() for h in histories))
        for h in histories:
            if h.orders:
                h.walk_points()
            h.finish_points()
        finish_phase("points")
        start_phase("tiers", sum(len(h.tier_steps()) for h in histories if h.orders))
        for h in histories:
            if h.orders:
                h.walk_tiers(lambda n: advance("tiers", n))
        finish_phase("tiers")
    finally:
        set_clock(previous)
    with db.unit_of_work() as s:
        # The history is not replayed to subscribers, like the backfilled orders.
        s.execute(delete(OutboxEvent).where(OutboxEvent.id > last_event))
    return {h.code: h.result.counts for h in histories}
