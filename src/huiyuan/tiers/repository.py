"""Every query of the tier domain: the program and its levels, member tier states and changes,
snapshots, and the basis values (growth value from the points ledger, spend and single orders from
the orders table). Tenancy is applied by the session's scope (``kit.db``); explicit ``brand_id``
conditions only say which brand a job or write path works for."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import delete, func, select, type_coerce
from sqlalchemy.orm import Session

from huiyuan.kit.types import Money
from huiyuan.members.models import Member
from huiyuan.orders.models import Order
from huiyuan.points.models import PointEntry, PointType
from huiyuan.tiers.models import MemberTier, TierChange, TierLevel, TierProgram, TierSnapshot

# Ledger entries that move growth value; spending and expiry do not lower what was earned.
GROWTH_ENTRY_KINDS = ("earn", "adjust", "reverse", "transfer_in", "transfer_out")
# Members counted in the distribution.
COUNTED_STATUSES = ("active", "frozen")
ZERO = Decimal("0.00")


class TierRepository:
    def __init__(self, session: Session) -> None:
        self.session = session

    # -- program and levels ----------------------------------------------------------------------

    def program(self, brand_id: int) -> TierProgram | None:
        stmt = select(TierProgram).where(TierProgram.brand_id == brand_id)
        return self.session.scalars(stmt).one_or_none()

    def levels(self, brand_id: int) -> list[TierLevel]:
        stmt = select(TierLevel).where(TierLevel.brand_id == brand_id).order_by(TierLevel.rank)
        return list(self.session.scalars(stmt))

    def level(self, level_id: int, *, for_update: bool = False) -> TierLevel | None:
        stmt = select(TierLevel).where(TierLevel.id == level_id)
        if for_update:
            stmt = stmt.with_for_update()
        return self.session.scalars(stmt).one_or_none()

    def brands_with_program(self) -> list[int]:
        return list(self.session.scalars(select(TierProgram.brand_id).order_by(TierProgram.brand_id)))

    # -- member states and changes ---------------------------------------------------------------

    def states(self, member_ids: Sequence[int], *, for_update: bool = False) -> dict[int, MemberTier]:
        """Current tier rows of many members (those never evaluated are missing); ``for_update``
        locks them in member order."""
        if not member_ids:
            return {}
        stmt = select(MemberTier).where(MemberTier.member_id.in_(member_ids))
        if for_update:  # the rows as they are once locked, even if read before
            stmt = (
                stmt.order_by(MemberTier.member_id)
                .with_for_update()
                .execution_options(populate_existing=True)
            )
        return {row.member_id: row for row in self.session.scalars(stmt)}

    def state_facts(self, member_ids: Sequence[int]) -> dict[int, Any]:
        """What decides whether many members' levels may change and what they are now, as plain
        rows (``member_id``, ``level_id``, ``valid_until``, ``review_at``, ``override_until``,
        ``rfm_score``), not locked: a batch reads every buyer's, and loads and locks the state
        objects only of the members it then evaluates."""
        if not member_ids:
            return {}
        stmt = select(
            MemberTier.member_id,
            MemberTier.level_id,
            MemberTier.valid_until,
            MemberTier.review_at,
            MemberTier.override_until,
            MemberTier.rfm_score,
        ).where(MemberTier.member_id.in_(member_ids))
        return {row.member_id: row for row in self.session.execute(stmt)}

    def members(self, member_ids: Sequence[int]) -> dict[int, Member]:
        """Members by id (a batch being evaluated)."""
        if not member_ids:
            return {}
        stmt = select(Member).where(Member.id.in_(member_ids))
        return {m.id: m for m in self.session.scalars(stmt)}

    def state(self, member_id: int, *, for_update: bool = False) -> MemberTier | None:
        stmt = select(MemberTier).where(MemberTier.member_id == member_id)
        if for_update:
            stmt = stmt.with_for_update()
        return self.session.scalars(stmt).one_or_none()

    def changes(self, member_id: int, *, before_id: int | None, limit: int) -> list[TierChange]:
        stmt = select(TierChange).where(TierChange.member_id == member_id)
        if before_id is not None:
            stmt = stmt.where(TierChange.id < before_id)
        return list(self.session.scalars(stmt.order_by(TierChange.id.desc()).limit(limit)))

    def due_member_ids(self, now: datetime, *, after_id: int, limit: int) -> list[tuple[int, int, int]]:
        """``(state id, member id, brand id)`` of states whose end of validity is due, by state id."""
        stmt = (
            select(MemberTier.id, MemberTier.member_id, MemberTier.brand_id)
            .where(MemberTier.review_at.is_not(None), MemberTier.review_at <= now, MemberTier.id > after_id)
            .order_by(MemberTier.id)
            .limit(limit)
        )
        return [(sid, mid, bid) for sid, mid, bid in self.session.execute(stmt)]

    def count_due(self, now: datetime) -> int:
        stmt = select(func.count()).where(MemberTier.review_at.is_not(None), MemberTier.review_at <= now)
        return int(self.session.scalar(stmt.select_from(MemberTier)) or 0)

    # -- distribution ----------------------------------------------------------------------------

    def level_counts(self, brand_id: int, base_level_id: int) -> dict[int, int]:
        """Members of the brand per level now; members never evaluated hold the base level."""
        level = func.coalesce(MemberTier.level_id, base_level_id)
        stmt = (
            select(level, func.count())
            .select_from(Member)
            .outerjoin(MemberTier, MemberTier.member_id == Member.id)
            .where(Member.brand_id == brand_id, Member.status.in_(COUNTED_STATUSES))
            .group_by(level)
        )
        return {int(lid): int(n) for lid, n in self.session.execute(stmt)}

    def replace_snapshot(self, brand_id: int, day: date, rows: Sequence[TierSnapshot]) -> None:
        self.session.execute(
            delete(TierSnapshot).where(TierSnapshot.brand_id == brand_id, TierSnapshot.day == day)
        )
        self.session.add_all(rows)

    def snapshots(self, brand_id: int, start: date, end: date) -> list[TierSnapshot]:
        stmt = (
            select(TierSnapshot)
            .where(TierSnapshot.brand_id == brand_id, TierSnapshot.day >= start, TierSnapshot.day <= end)
            .order_by(TierSnapshot.day, TierSnapshot.level_id)
        )
        return list(self.session.scalars(stmt))


class BasisRepository:
    """The values conditions are judged on, for one member and one window ``[start, end]``."""

    def __init__(self, session: Session) -> None:
        self.session = session

    def growth(self, member_id: int, start: datetime, end: datetime) -> int:
        growth_types = select(PointType.id).where(PointType.kind == "growth")
        stmt = select(func.coalesce(func.sum(PointEntry.amount), 0)).where(
            PointEntry.member_id == member_id,
            PointEntry.point_type_id.in_(growth_types),
            PointEntry.kind.in_(GROWTH_ENTRY_KINDS),
            PointEntry.occurred_at >= start,
            PointEntry.occurred_at <= end,
        )
        return int(self.session.scalar(stmt) or 0)

    def spend(self, member_id: int, start: datetime, end: datetime) -> tuple[Decimal, Decimal]:
        """``(paid minus refunded in total, the largest such amount of one order)``."""
        net = Order.paid_amount - Order.refunded_amount
        stmt = select(type_coerce(func.sum(net), Money), type_coerce(func.max(net), Money)).where(
            Order.member_id == member_id, Order.paid_at >= start, Order.paid_at <= end
        )
        total, best = self.session.execute(stmt).one()
        return (total or ZERO, best or ZERO)

    def growth_by_member(self, member_ids: Sequence[int], start: datetime, end: datetime) -> dict[int, int]:
        """``growth`` for many members in one query (members with none are missing)."""
        if not member_ids:
            return {}
        growth_types = select(PointType.id).where(PointType.kind == "growth")
        stmt = (
            select(PointEntry.member_id, func.coalesce(func.sum(PointEntry.amount), 0))
            .where(
                PointEntry.member_id.in_(member_ids),
                PointEntry.point_type_id.in_(growth_types),
                PointEntry.kind.in_(GROWTH_ENTRY_KINDS),
                PointEntry.occurred_at >= start,
                PointEntry.occurred_at <= end,
            )
            .group_by(PointEntry.member_id)
        )
        return {int(member_id): int(total or 0) for member_id, total in self.session.execute(stmt)}

    def spend_by_member(
        self, member_ids: Sequence[int], start: datetime, end: datetime
    ) -> dict[int, tuple[Decimal, Decimal]]:
        """``spend`` for many members in one query (members without orders are missing)."""
        if not member_ids:
            return {}
        net = Order.paid_amount - Order.refunded_amount
        stmt = (
            select(Order.member_id, type_coerce(func.sum(net), Money), type_coerce(func.max(net), Money))
            .where(Order.member_id.in_(member_ids), Order.paid_at >= start, Order.paid_at <= end)
            .group_by(Order.member_id)
        )
        return {
            int(member_id): (total or ZERO, best or ZERO)
            for member_id, total, best in self.session.execute(stmt)
            if member_id is not None
        }
