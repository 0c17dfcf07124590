"""Every query of paid membership. Tenancy is applied by the session's scope (``kit.db``); the explicit
``brand_id`` conditions here only say which brand a write path is working for."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from huiyuan.members.models import Member
from huiyuan.paid.models import PlanCategory, PlanLevel, Subscription, SubscriptionEvent


class PlanRepository:
    def __init__(self, session: Session) -> None:
        self.session = session

    def category(self, category_id: int, *, for_update: bool = False) -> PlanCategory | None:
        stmt = select(PlanCategory).where(PlanCategory.id == category_id)
        if for_update:
            stmt = stmt.with_for_update()
        return self.session.scalars(stmt).one_or_none()

    def category_by_code(self, brand_id: int, code: str) -> PlanCategory | None:
        stmt = select(PlanCategory).where(PlanCategory.brand_id == brand_id, PlanCategory.code == code)
        return self.session.scalars(stmt).one_or_none()

    def categories(self) -> list[PlanCategory]:
        return list(self.session.scalars(select(PlanCategory).order_by(PlanCategory.id)))

    def categories_by_id(self, ids: set[int]) -> dict[int, PlanCategory]:
        if not ids:
            return {}
        stmt = select(PlanCategory).where(PlanCategory.id.in_(list(ids)))
        return {c.id: c for c in self.session.scalars(stmt)}

    def level(self, level_id: int, *, for_update: bool = False) -> PlanLevel | None:
        stmt = select(PlanLevel).where(PlanLevel.id == level_id)
        if for_update:
            stmt = stmt.with_for_update()
        return self.session.scalars(stmt).one_or_none()

    def level_by_code(self, category_id: int, code: str) -> PlanLevel | None:
        stmt = select(PlanLevel).where(PlanLevel.category_id == category_id, PlanLevel.code == code)
        return self.session.scalars(stmt).one_or_none()

    def level_by_rank(self, category_id: int, rank: int) -> PlanLevel | None:
        stmt = select(PlanLevel).where(PlanLevel.category_id == category_id, PlanLevel.rank == rank)
        return self.session.scalars(stmt).one_or_none()

    def levels(self, *, category_id: int | None = None) -> list[PlanLevel]:
        stmt = select(PlanLevel)
        if category_id is not None:
            stmt = stmt.where(PlanLevel.category_id == category_id)
        return list(self.session.scalars(stmt.order_by(PlanLevel.category_id, PlanLevel.rank)))

    def levels_by_id(self, ids: set[int]) -> dict[int, PlanLevel]:
        if not ids:
            return {}
        stmt = select(PlanLevel).where(PlanLevel.id.in_(list(ids)))
        return {lv.id: lv for lv in self.session.scalars(stmt)}


class SubscriptionRepository:
    def __init__(self, session: Session) -> None:
        self.session = session

    def lock_member(self, member_id: int) -> Member | None:
        """The member row, locked (PostgreSQL) so the member's subscription changes queue up."""
        stmt = select(Member).where(Member.id == member_id).with_for_update()
        return self.session.scalars(stmt).one_or_none()

    def member_exists(self, member_id: int) -> bool:
        return self.session.scalar(select(Member.id).where(Member.id == member_id)) is not None

    def get(
        self, subscription_id: int, *, for_update: bool = False, refresh: bool = False
    ) -> Subscription | None:
        stmt = select(Subscription).where(Subscription.id == subscription_id)
        if for_update:
            stmt = stmt.with_for_update()
        if refresh:
            stmt = stmt.execution_options(populate_existing=True)
        return self.session.scalars(stmt).one_or_none()

    def active_for_member(self, member_id: int) -> Subscription | None:
        stmt = select(Subscription).where(
            Subscription.member_id == member_id, Subscription.status == "active"
        )
        return self.session.scalars(stmt).one_or_none()

    def latest_for_member(self, member_id: int) -> Subscription | None:
        stmt = (
            select(Subscription)
            .where(Subscription.member_id == member_id)
            .order_by(Subscription.starts_at.desc(), Subscription.id.desc())
            .limit(1)
        )
        return self.session.scalars(stmt).first()

    def covering_with_plan(
        self, member_id: int, at: datetime
    ) -> tuple[Subscription, PlanLevel, PlanCategory] | None:
        """The subscription whose term covered ``at`` (``starts_at ≤ at < coalesce(ended_at, ends_at)``)
        with its level and category, in one statement."""
        stmt = (
            select(Subscription, PlanLevel, PlanCategory)
            .join(PlanLevel, PlanLevel.id == Subscription.level_id)
            .join(PlanCategory, PlanCategory.id == Subscription.category_id)
            .where(
                Subscription.member_id == member_id,
                Subscription.starts_at <= at,
                func.coalesce(Subscription.ended_at, Subscription.ends_at) > at,
            )
            .order_by(Subscription.starts_at.desc(), Subscription.id.desc())
            .limit(1)
        )
        row = self.session.execute(stmt).first()
        return None if row is None else (row[0], row[1], row[2])

    def overlapping_with_plan(
        self, member_ids: list[int], start: datetime, end: datetime
    ) -> list[tuple[Subscription, PlanLevel, PlanCategory]]:
        """Subscriptions of these members whose term overlaps ``[start, end]``, with level and
        category, newest start first."""
        if not member_ids:
            return []
        stmt = (
            select(Subscription, PlanLevel, PlanCategory)
            .join(PlanLevel, PlanLevel.id == Subscription.level_id)
            .join(PlanCategory, PlanCategory.id == Subscription.category_id)
            .where(
                Subscription.member_id.in_(member_ids),
                Subscription.starts_at <= end,
                func.coalesce(Subscription.ended_at, Subscription.ends_at) > start,
            )
            .order_by(Subscription.starts_at.desc(), Subscription.id.desc())
        )
        return [(r[0], r[1], r[2]) for r in self.session.execute(stmt)]

    def for_member(self, member_id: int) -> list[Subscription]:
        stmt = (
            select(Subscription)
            .where(Subscription.member_id == member_id)
            .order_by(Subscription.starts_at.desc(), Subscription.id.desc())
        )
        return list(self.session.scalars(stmt))

    def events_for_member(self, member_id: int, limit: int) -> list[SubscriptionEvent]:
        stmt = (
            select(SubscriptionEvent)
            .where(SubscriptionEvent.member_id == member_id)
            .order_by(SubscriptionEvent.id.desc())
            .limit(limit)
        )
        return list(self.session.scalars(stmt))

    def event_by_reference(self, brand_id: int, reference: str) -> SubscriptionEvent | None:
        stmt = select(SubscriptionEvent).where(
            SubscriptionEvent.brand_id == brand_id, SubscriptionEvent.reference == reference
        )
        return self.session.scalars(stmt).one_or_none()

    # -- sweeps of the background jobs -----------------------------------------------------------

    def due_to_expire_ids(self, now: datetime, *, after_id: int, limit: int) -> list[int]:
        stmt = (
            select(Subscription.id)
            .where(Subscription.status == "active", Subscription.ends_at <= now, Subscription.id > after_id)
            .order_by(Subscription.id)
            .limit(limit)
        )
        return list(self.session.scalars(stmt))

    def count_due_to_expire(self, now: datetime, *, after_id: int) -> int:
        stmt = select(func.count()).where(
            Subscription.status == "active", Subscription.ends_at <= now, Subscription.id > after_id
        )
        return int(self.session.scalar(stmt.select_from(Subscription)) or 0)

    def active_ids(self, *, after_id: int, limit: int) -> list[int]:
        stmt = (
            select(Subscription.id)
            .where(Subscription.status == "active", Subscription.id > after_id)
            .order_by(Subscription.id)
            .limit(limit)
        )
        return list(self.session.scalars(stmt))

    def count_active(self, *, after_id: int) -> int:
        stmt = (
            select(func.count())
            .select_from(Subscription)
            .where(Subscription.status == "active", Subscription.id > after_id)
        )
        return int(self.session.scalar(stmt) or 0)
