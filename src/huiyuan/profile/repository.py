"""Every query of the profile: one person's rows for the timeline and features, and the brand's
population aggregates the features compare them with.

Tenancy is applied by the session's scope (``kit.db``): every model here is ``BrandScoped``. The
population queries also name their brand, which is what lets them use the ``(brand_id, …)`` indexes;
that condition is on top of the scope, never instead of it. Person queries take member ids and
identifier values that were themselves read through the scope.

Timeline queries are keyset pages ordered by ``(time, id)`` descending, each below a ``Cursor``
(time, kind rank, id) so that the merged timeline has one total order (see ``service.timeline``).

A person's events come from the person index (``event_people``, ordered by key, event time and id)
up to the brand's index cursor, and from the store above it (the not yet indexed tail, a primary-key
range scan) — the split of ``events.repository`` (its module docstring says why the union is exact).
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import ColumnElement, Integer, and_, cast, distinct, false, func, or_, select, true
from sqlalchemy.orm import InstrumentedAttribute, Session

from huiyuan.coupons.models import Coupon, CouponEvent, CouponTemplate
from huiyuan.events import repository as events_repository
from huiyuan.events.models import Event, EventPerson
from huiyuan.members.models import Member
from huiyuan.orders.models import Category, Order, OrderItem
from huiyuan.points.models import PointEntry, PointType
from huiyuan.tenancy.models import Store

# Fully refunded orders are left out of every figure; partial refunds count net of the refund.
COUNTED = Order.status != "refunded"


@dataclass(frozen=True)
class Cursor:
    """Position in the merged timeline: everything strictly after it in (at, rank, id) descending."""

    at: datetime
    rank: int
    id: int


def _before(at: Any, id_: Any, rank: int, cursor: Cursor | None) -> ColumnElement[bool]:
    """Rows of a source of ``rank`` whose (at, rank, id) sorts below the cursor."""
    if cursor is None:
        return true()
    if rank < cursor.rank:
        return at <= cursor.at  # type: ignore[no-any-return]
    if rank > cursor.rank:
        return at < cursor.at  # type: ignore[no-any-return]
    return or_(at < cursor.at, and_(at == cursor.at, id_ < cursor.id))


def _epoch_hour(session: Session, column: Any) -> ColumnElement[Any]:
    """Hours since the epoch (UTC) of a time column; turned into local hours of day in Python, which
    stays exact across daylight-saving changes."""
    if session.get_bind().dialect.name == "postgresql":
        return func.floor(func.extract("epoch", column) / 3600)
    return cast(func.strftime("%s", column), Integer) // 3600


class ProfileRepository:
    def __init__(self, session: Session) -> None:
        self.session = session

    # -- lookups -----------------------------------------------------------------------------------

    def members_by_number(self, brand_id: int, numbers: Collection[str]) -> list[Member]:
        if not numbers:
            return []
        stmt = select(Member).where(Member.brand_id == brand_id, Member.member_number.in_(list(numbers)))
        return list(self.session.scalars(stmt.order_by(Member.id)))

    def stores(self, ids: Collection[int]) -> dict[int, Store]:
        if not ids:
            return {}
        return {s.id: s for s in self.session.scalars(select(Store).where(Store.id.in_(list(ids))))}

    def categories(self, ids: Collection[int]) -> dict[int, Category]:
        if not ids:
            return {}
        stmt = select(Category).where(Category.id.in_(list(ids)))
        return {c.id: c for c in self.session.scalars(stmt)}

    # -- timeline ----------------------------------------------------------------------------------

    def events(
        self,
        *,
        user_ids: Sequence[str],
        anonymous_ids: Sequence[str],
        cursor: Cursor | None,
        rank: int,
        limit: int,
    ) -> list[Event]:
        """The person's events newest first by event time: the newest ``limit`` of the person index
        (one key range each) and of the not yet indexed tail, merged."""
        if not user_ids and not anonymous_ids:
            return []
        upto = events_repository.people_cursor(self.session)
        tail = (
            select(Event)
            .where(
                Event.id > upto,
                events_repository.who(user_ids, anonymous_ids),
                _before(Event.timestamp, Event.id, rank, cursor),
            )
            .order_by(Event.timestamp.desc(), Event.id.desc())
            .limit(limit)
        )
        rows = list(self.session.scalars(tail))
        if upto:
            indexed = (
                select(Event)
                .join(EventPerson, EventPerson.event_id == Event.id)
                .where(
                    EventPerson.person_key.in_(events_repository.person_keys(user_ids, anonymous_ids)),
                    EventPerson.event_id <= upto,
                    _before(EventPerson.at, EventPerson.event_id, rank, cursor),
                )
                .order_by(EventPerson.at.desc(), EventPerson.event_id.desc())
                .limit(limit)
            )
            rows += self.session.scalars(indexed)
        rows.sort(key=lambda e: (e.timestamp, e.id), reverse=True)
        return rows[:limit]

    def orders(
        self, member_ids: Sequence[int], *, cursor: Cursor | None, rank: int, limit: int
    ) -> list[Order]:
        if not member_ids:
            return []
        stmt = (
            select(Order)
            .where(Order.member_id.in_(list(member_ids)), _before(Order.paid_at, Order.id, rank, cursor))
            .order_by(Order.paid_at.desc(), Order.id.desc())
            .limit(limit)
        )
        return list(self.session.scalars(stmt))

    def point_entries(
        self, member_ids: Sequence[int], *, cursor: Cursor | None, rank: int, limit: int
    ) -> list[tuple[PointEntry, str]]:
        """Ledger lines with their point type's code (stored-value sub-ledgers left out, as the
        points product does)."""
        if not member_ids:
            return []
        stmt = (
            select(PointEntry, PointType.code)
            .join(PointType, PointType.id == PointEntry.point_type_id)
            .where(
                PointEntry.member_id.in_(list(member_ids)),
                PointType.kind != "wallet",
                _before(PointEntry.occurred_at, PointEntry.id, rank, cursor),
            )
            .order_by(PointEntry.occurred_at.desc(), PointEntry.id.desc())
            .limit(limit)
        )
        return [(entry, str(code)) for entry, code in self.session.execute(stmt)]

    def coupon_events(
        self, member_ids: Sequence[int], *, cursor: Cursor | None, rank: int, limit: int
    ) -> list[tuple[CouponEvent, Coupon, CouponTemplate]]:
        if not member_ids:
            return []
        stmt = (
            select(CouponEvent, Coupon, CouponTemplate)
            .join(Coupon, Coupon.id == CouponEvent.coupon_id)
            .join(CouponTemplate, CouponTemplate.id == Coupon.template_id)
            .where(
                Coupon.member_id.in_(list(member_ids)),
                _before(CouponEvent.occurred_at, CouponEvent.id, rank, cursor),
            )
            .order_by(CouponEvent.occurred_at.desc(), CouponEvent.id.desc())
            .limit(limit)
        )
        return [(e, c, t) for e, c, t in self.session.execute(stmt)]

    # -- one person's aggregates (features) ---------------------------------------------------------

    def category_spend(
        self, brand_id: int, member_ids: Sequence[int] | None = None
    ) -> list[tuple[int, int, Decimal]]:
        """``(category id, orders containing it, net spend)`` of the brand's member orders, or of
        these members' orders. Lines without a category are left out."""
        spent = func.sum(OrderItem.paid_amount)
        refunded = func.sum(OrderItem.refunded_amount)
        stmt = (
            select(OrderItem.category_id, func.count(distinct(OrderItem.order_id)), spent, refunded)
            .join(Order, Order.id == OrderItem.order_id)
            .where(Order.brand_id == brand_id, COUNTED, OrderItem.category_id.is_not(None))
            .group_by(OrderItem.category_id)
        )
        stmt = stmt.where(self._whose(member_ids))
        return [
            (int(cat), int(n), Decimal(s or 0) - Decimal(r or 0))
            for cat, n, s, r in self.session.execute(stmt)
            if cat is not None
        ]

    def order_counts_by(
        self, brand_id: int, column: InstrumentedAttribute[Any], member_ids: Sequence[int] | None = None
    ) -> dict[Any, int]:
        """Orders per value of ``column`` (channel, store id) of the brand's member orders or of
        these members' orders."""
        stmt = (
            select(column, func.count())
            .where(Order.brand_id == brand_id, COUNTED, self._whose(member_ids), column.is_not(None))
            .group_by(column)
        )
        return {key: int(n) for key, n in self.session.execute(stmt)}

    def order_hours(self, brand_id: int, member_ids: Sequence[int] | None = None) -> list[tuple[int, int]]:
        """``(hour since the epoch, orders)`` of the brand's member orders or of these members'."""
        # Grouped over a subquery: PostgreSQL binds the hour expression's parameters separately in
        # SELECT and GROUP BY and would not see them as one expression.
        inner = (
            select(_epoch_hour(self.session, Order.paid_at).label("hour"))
            .where(Order.brand_id == brand_id, COUNTED, self._whose(member_ids))
            .subquery()
        )
        stmt = select(inner.c.hour, func.count()).group_by(inner.c.hour)
        return [(int(h), int(n)) for h, n in self.session.execute(stmt)]

    def event_hours(self, brand_id: int, *, scan_limit: int) -> list[tuple[int, int]]:
        """``(hour since the epoch, events)`` over the brand's newest ``scan_limit`` events (the
        store has no time index: the scan walks the primary key backwards and stops there)."""
        recent = (
            select(Event.timestamp.label("at"))
            .where(Event.brand_id == brand_id)
            .order_by(Event.id.desc())
            .limit(scan_limit)
            .subquery()
        )
        inner = select(_epoch_hour(self.session, recent.c.at).label("hour")).subquery()
        stmt = select(inner.c.hour, func.count()).group_by(inner.c.hour)
        return [(int(h), int(n)) for h, n in self.session.execute(stmt)]

    def event_times(
        self, *, user_ids: Sequence[str], anonymous_ids: Sequence[str], limit: int
    ) -> list[datetime]:
        """Times of the person's newest ``limit`` events (by store order): the tail above the index
        cursor first, then the person index."""
        if not user_ids and not anonymous_ids:
            return []
        upto = events_repository.people_cursor(self.session)
        tail = (
            select(Event.timestamp)
            .where(Event.id > upto, events_repository.who(user_ids, anonymous_ids))
            .order_by(Event.id.desc())
            .limit(limit)
        )
        times = list(self.session.scalars(tail))
        if upto and len(times) < limit:
            indexed = (
                select(EventPerson.at)
                .where(
                    EventPerson.person_key.in_(events_repository.person_keys(user_ids, anonymous_ids)),
                    EventPerson.event_id <= upto,
                )
                .order_by(EventPerson.event_id.desc())
                .limit(limit - len(times))
            )
            times += self.session.scalars(indexed)
        return times

    def buyer_stats(
        self, brand_id: int, member_ids: Sequence[int] | None = None
    ) -> list[tuple[int, int, Decimal, datetime]]:
        """``(member id, orders, net spend, last paid at)`` of every member of the brand who bought
        (one pass over the brand's orders: O(orders); the warehouse should serve this at scale), or
        of these members."""
        stmt = (
            select(
                Order.member_id,
                func.count(),
                func.sum(Order.paid_amount),
                func.sum(Order.refunded_amount),
                func.max(Order.paid_at),
            )
            .where(Order.brand_id == brand_id, COUNTED, self._whose(member_ids))
            .group_by(Order.member_id)
        )
        return [
            (int(m), int(n), Decimal(p or 0) - Decimal(r or 0), last)
            for m, n, p, r, last in self.session.execute(stmt)
            if m is not None
        ]

    @staticmethod
    def _whose(member_ids: Sequence[int] | None) -> ColumnElement[bool]:
        if member_ids is None:
            return Order.member_id.is_not(None)
        return Order.member_id.in_(list(member_ids)) if member_ids else false()
