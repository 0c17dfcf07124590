"""Every query the points service, API and console read with: point types, earn rules, a member's
lots, entries and accounts, brand-wide outstanding points and expiry outlooks.

Tenancy is applied by the session's scope (``kit.db``); explicit ``brand_id`` conditions only say
which brand a write path works for. "Outstanding" means points still in a lot that is pending,
active or frozen and not past its expiry (a lot past due counts as gone even before the expiry job
or the next write on the account has marked it). Money is multiplied out in Python with ``Decimal``
(sums are grouped by unit value), since SQLite would sum numerics as floats.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import ColumnElement, case, distinct, func, or_, select
from sqlalchemy.orm import Session

from huiyuan.members.models import Member
from huiyuan.points.models import (
    EarnRule,
    PointAccount,
    PointEntry,
    PointEntryLot,
    PointLot,
    PointReservation,
    PointType,
)
from huiyuan.tenancy.models import Store

HELD_STATES = ("pending", "active", "frozen")


@dataclass
class EntryFilter:
    point_type_id: int | None = None
    kind: str | None = None
    occurred_from: datetime | None = None
    occurred_to: datetime | None = None
    source_type: str | None = None
    source_id: str | None = None


@dataclass
class LotBucket:
    point_type_id: int
    state: str
    remaining: int
    expiring_30d: int
    expiring_90d: int


@dataclass
class OutstandingRow:
    point_type_id: int
    funded_by: str
    unit_value: Decimal
    points: int


def _unexpired(now: datetime) -> ColumnElement[bool]:
    return or_(PointLot.expires_at.is_(None), PointLot.expires_at > now)


# Point types of kind "wallet" are the sub-ledgers of stored value (``huiyuan.wallet``): the points
# product neither lists them nor counts their lots and entries.
_WALLET_TYPES = select(PointType.id).where(PointType.kind == "wallet").scalar_subquery()


class PointConfigRepository:
    """Point types and earn rules."""

    def __init__(self, session: Session) -> None:
        self.session = session

    def types(self, *, include_retired: bool = True) -> list[PointType]:
        stmt = select(PointType).where(PointType.kind != "wallet")
        if not include_retired:
            stmt = stmt.where(PointType.status == "active")
        return list(self.session.scalars(stmt.order_by(PointType.id)))

    def type_by_code(self, code: str, *, brand_id: int | None, for_update: bool = False) -> PointType | None:
        stmt = select(PointType).where(PointType.code == code, PointType.kind != "wallet")
        if brand_id is not None:
            stmt = stmt.where(PointType.brand_id == brand_id)
        if for_update:
            stmt = stmt.with_for_update()
        return self.session.scalars(stmt.order_by(PointType.id).limit(1)).first()

    def types_by_id(self, ids: Collection[int]) -> dict[int, PointType]:
        if not ids:
            return {}
        stmt = select(PointType).where(PointType.id.in_(list(ids)))
        return {pt.id: pt for pt in self.session.scalars(stmt)}

    def rules(
        self, *, status: str | None = None, trigger: str | None = None, point_type: str | None = None
    ) -> list[EarnRule]:
        stmt = select(EarnRule)
        if status:
            stmt = stmt.where(EarnRule.status == status)
        if trigger:
            stmt = stmt.where(EarnRule.trigger == trigger)
        rules = list(self.session.scalars(stmt.order_by(EarnRule.priority.desc(), EarnRule.id)))
        if point_type:
            # The point type lives inside the JSON definition; the list is short enough to filter here.
            rules = [r for r in rules if r.definition.get("point_type") == point_type]
        return rules

    def rule(self, rule_id: int, *, for_update: bool = False) -> EarnRule | None:
        stmt = select(EarnRule).where(EarnRule.id == rule_id)
        if for_update:
            stmt = stmt.with_for_update()
        return self.session.scalars(stmt).one_or_none()

    def rule_by_code(self, brand_id: int, code: str) -> EarnRule | None:
        stmt = select(EarnRule).where(EarnRule.brand_id == brand_id, EarnRule.code == code)
        return self.session.scalars(stmt).one_or_none()


class PointQueryRepository:
    """Members' balances, lots and entries; brand totals."""

    def __init__(self, session: Session) -> None:
        self.session = session

    # -- look-ups ----------------------------------------------------------------------------------

    def member(self, member_id: int) -> Member | None:
        return self.session.scalars(select(Member).where(Member.id == member_id)).one_or_none()

    def store_by_code(self, brand_id: int, code: str) -> Store | None:
        stmt = select(Store).where(Store.brand_id == brand_id, Store.code == code)
        return self.session.scalars(stmt).one_or_none()

    # -- one member --------------------------------------------------------------------------------

    def accounts(self, member_id: int) -> list[PointAccount]:
        stmt = select(PointAccount).where(PointAccount.member_id == member_id).order_by(PointAccount.id)
        return list(self.session.scalars(stmt))

    def spendable(self, member_id: int, point_type_id: int, *, now: datetime) -> int:
        """Points of the member's active lots of the type that have not expired at ``now``: what a
        spend can draw. The account's cached ``available`` also counts lots expired since the last
        sweep, until a ledger operation settles the account."""
        stmt = select(func.coalesce(func.sum(PointLot.remaining), 0)).where(
            PointLot.member_id == member_id,
            PointLot.point_type_id == point_type_id,
            PointLot.state == "active",
            PointLot.remaining > 0,
            _unexpired(now),
        )
        return int(self.session.scalar(stmt) or 0)

    def lot_buckets(
        self, member_id: int, *, now: datetime, until_30d: datetime, until_90d: datetime
    ) -> list[LotBucket]:
        """Outstanding points per point type and lot state, with the active ones expiring by each bound."""

        def expiring_by(until: datetime) -> Any:
            soon = (
                (PointLot.state == "active")
                & (PointLot.expires_at.is_not(None))
                & (PointLot.expires_at <= until)
            )
            return func.coalesce(func.sum(case((soon, PointLot.remaining), else_=0)), 0)

        stmt = (
            select(
                PointLot.point_type_id,
                PointLot.state,
                func.coalesce(func.sum(PointLot.remaining), 0),
                expiring_by(until_30d),
                expiring_by(until_90d),
            )
            .where(
                PointLot.member_id == member_id,
                PointLot.state.in_(HELD_STATES),
                PointLot.remaining > 0,
                _unexpired(now),
                PointLot.point_type_id.not_in(_WALLET_TYPES),
            )
            .group_by(PointLot.point_type_id, PointLot.state)
        )
        return [
            LotBucket(int(pt), str(state), int(rem), int(e30), int(e90))
            for pt, state, rem, e30, e90 in self.session.execute(stmt)
        ]

    def available(self, member_id: int, point_type_id: int, *, now: datetime) -> int:
        """What a spend could take now: active lots not past their expiry."""
        stmt = select(func.coalesce(func.sum(PointLot.remaining), 0)).where(
            PointLot.member_id == member_id,
            PointLot.point_type_id == point_type_id,
            PointLot.state == "active",
            _unexpired(now),
        )
        return int(self.session.scalar(stmt) or 0)

    def entries(
        self, member_id: int, f: EntryFilter, *, before_id: int | None, limit: int
    ) -> list[PointEntry]:
        """Newest first; ``before_id`` is the keyset position of the previous page."""
        stmt = select(PointEntry).where(
            PointEntry.member_id == member_id, PointEntry.point_type_id.not_in(_WALLET_TYPES)
        )
        if f.point_type_id is not None:
            stmt = stmt.where(PointEntry.point_type_id == f.point_type_id)
        if f.kind:
            stmt = stmt.where(PointEntry.kind == f.kind)
        if f.occurred_from:
            stmt = stmt.where(PointEntry.occurred_at >= f.occurred_from)
        if f.occurred_to:
            stmt = stmt.where(PointEntry.occurred_at < f.occurred_to)
        if f.source_type:
            stmt = stmt.where(PointEntry.source_type == f.source_type)
        if f.source_id:
            stmt = stmt.where(PointEntry.source_id == f.source_id)
        if before_id is not None:
            stmt = stmt.where(PointEntry.id < before_id)
        return list(self.session.scalars(stmt.order_by(PointEntry.id.desc()).limit(limit)))

    def lots(
        self,
        member_id: int,
        *,
        state: str | None,
        point_type_id: int | None,
        before_id: int | None,
        limit: int,
    ) -> list[PointLot]:
        """Newest first; ``before_id`` is the keyset position of the previous page."""
        stmt = select(PointLot).where(
            PointLot.member_id == member_id, PointLot.point_type_id.not_in(_WALLET_TYPES)
        )
        if state:
            stmt = stmt.where(PointLot.state == state)
        if point_type_id is not None:
            stmt = stmt.where(PointLot.point_type_id == point_type_id)
        if before_id is not None:
            stmt = stmt.where(PointLot.id < before_id)
        return list(self.session.scalars(stmt.order_by(PointLot.id.desc()).limit(limit)))

    # -- brand totals ------------------------------------------------------------------------------

    def outstanding(self, *, now: datetime) -> list[OutstandingRow]:
        """Points still in lots, per point type, funder and the unit value they were granted at."""
        stmt = (
            select(
                PointLot.point_type_id,
                PointLot.funded_by,
                PointLot.unit_value,
                func.coalesce(func.sum(PointLot.remaining), 0),
            )
            .where(
                PointLot.state.in_(HELD_STATES),
                PointLot.remaining > 0,
                _unexpired(now),
                PointLot.point_type_id.not_in(_WALLET_TYPES),
            )
            .group_by(PointLot.point_type_id, PointLot.funded_by, PointLot.unit_value)
        )
        return [
            OutstandingRow(int(pt), str(f), Decimal(v), int(n)) for pt, f, v, n in self.session.execute(stmt)
        ]

    def reserved(self) -> list[OutstandingRow]:
        """Points drawn from lots by reservations still held, per the lots they came from."""
        stmt = (
            select(
                PointLot.point_type_id,
                PointLot.funded_by,
                PointLot.unit_value,
                func.coalesce(-func.sum(PointEntryLot.amount), 0),
            )
            .join(PointEntryLot, PointEntryLot.lot_id == PointLot.id)
            .join(PointEntry, PointEntry.id == PointEntryLot.entry_id)
            .join(PointReservation, PointReservation.id == PointEntry.reservation_id)
            .where(
                PointReservation.status == "held",
                PointEntry.kind == "reserve",
                PointLot.point_type_id.not_in(_WALLET_TYPES),
            )
            .group_by(PointLot.point_type_id, PointLot.funded_by, PointLot.unit_value)
        )
        return [
            OutstandingRow(int(pt), str(f), Decimal(v), int(n)) for pt, f, v, n in self.session.execute(stmt)
        ]

    def holders(self, *, now: datetime) -> tuple[dict[int, int], int]:
        """Members holding outstanding points: per point type, and in all."""
        where = (
            PointLot.state.in_(HELD_STATES),
            PointLot.remaining > 0,
            _unexpired(now),
            PointLot.point_type_id.not_in(_WALLET_TYPES),
        )
        per_type = self.session.execute(
            select(PointLot.point_type_id, func.count(distinct(PointLot.member_id)))
            .where(*where)
            .group_by(PointLot.point_type_id)
        )
        total = self.session.scalar(select(func.count(distinct(PointLot.member_id))).where(*where))
        return {int(pt): int(n) for pt, n in per_type}, int(total or 0)

    def expiring(
        self, *, now: datetime, until: datetime, member_id: int | None = None
    ) -> list[tuple[int, datetime, int]]:
        """``(point_type_id, expires_at, points)`` of active lots expiring in ``(now, until]``."""
        stmt = select(
            PointLot.point_type_id, PointLot.expires_at, func.coalesce(func.sum(PointLot.remaining), 0)
        ).where(
            PointLot.state == "active",
            PointLot.remaining > 0,
            PointLot.expires_at.is_not(None),
            PointLot.expires_at > now,
            PointLot.expires_at <= until,
            PointLot.point_type_id.not_in(_WALLET_TYPES),
        )
        if member_id is not None:
            stmt = stmt.where(PointLot.member_id == member_id)
        stmt = stmt.group_by(PointLot.point_type_id, PointLot.expires_at).order_by(PointLot.expires_at)
        return [(int(pt), at, int(n)) for pt, at, n in self.session.execute(stmt) if at is not None]
