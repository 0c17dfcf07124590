"""Rows of paid membership: plan categories (one per customer group), plan levels with their price,
validity and benefits, members' subscriptions, and the append-only history of every subscription.

Every row belongs to one brand (``BrandOwned``); money columns are ``Money`` (integer fen). The
database itself holds the rule "one active subscription per member": a unique index on
``member_id`` over the rows whose status is ``active``. No business rules here (see ``service``).
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import CheckConstraint, ForeignKey, Index, Integer, String, UniqueConstraint, text
from sqlalchemy.orm import Mapped, mapped_column

from huiyuan.kit.clock import utcnow
from huiyuan.kit.db import Base, BrandOwned, TimestampMixin
from huiyuan.kit.types import IdType, JSONType, Money, UTCDateTime

PLAN_STATUSES = ("active", "retired")
VALIDITY_UNITS = ("month", "day")
BENEFIT_PERIODS = ("month", "week")
SUBSCRIPTION_STATUSES = ("active", "expired", "upgraded", "cancelled")
EVENT_KINDS = ("bought", "renewed", "upgraded", "cancelled", "refunded", "expired", "benefit_granted")

# Points multipliers are stored in basis points (10000 = ×1) so they stay exact on every database.
MULTIPLIER_SCALE = 10_000


class PlanCategory(TimestampMixin, BrandOwned, Base):
    """A family of plans sold to one customer group (working people, families, young people …)."""

    __tablename__ = "paid_plan_categories"
    __table_args__ = (UniqueConstraint("brand_id", "code"),)

    id: Mapped[int] = mapped_column(IdType, primary_key=True)
    code: Mapped[str] = mapped_column(String(40), nullable=False)
    name: Mapped[str] = mapped_column(String(120), nullable=False)
    customer_group: Mapped[str] = mapped_column(String(40), nullable=False)
    description: Mapped[str | None] = mapped_column(String(500))
    status: Mapped[str] = mapped_column(String(16), default="active", nullable=False)


class PlanLevel(TimestampMixin, BrandOwned, Base):
    """One level of a category: what it costs, how long it lasts and what it grants.

    ``one_time_benefits`` are granted once per subscription, at purchase; ``periodic_benefits`` at
    the start of every ``benefit_period`` of the subscription; ``points_multiplier_bp`` is read by
    earn rules through ``service.active_plan``."""

    __tablename__ = "paid_plan_levels"
    __table_args__ = (
        UniqueConstraint("category_id", "code"),
        UniqueConstraint("category_id", "rank"),
        CheckConstraint("validity_count > 0", name="validity_positive"),
        CheckConstraint("points_multiplier_bp >= 10000", name="multiplier_at_least_one"),
    )

    id: Mapped[int] = mapped_column(IdType, primary_key=True)
    category_id: Mapped[int] = mapped_column(
        IdType, ForeignKey("paid_plan_categories.id"), index=True, nullable=False
    )
    code: Mapped[str] = mapped_column(String(40), nullable=False)
    name: Mapped[str] = mapped_column(String(120), nullable=False)
    rank: Mapped[int] = mapped_column(Integer, nullable=False)
    price: Mapped[Decimal] = mapped_column(Money, nullable=False)
    validity_unit: Mapped[str] = mapped_column(String(8), nullable=False)
    validity_count: Mapped[int] = mapped_column(Integer, nullable=False)
    cooling_off_days: Mapped[int] = mapped_column(Integer, default=7, nullable=False)
    one_time_benefits: Mapped[list[dict[str, Any]]] = mapped_column(JSONType, default=list, nullable=False)
    benefit_period: Mapped[str | None] = mapped_column(String(8))
    periodic_benefits: Mapped[list[dict[str, Any]]] = mapped_column(JSONType, default=list, nullable=False)
    points_multiplier_bp: Mapped[int] = mapped_column(Integer, default=MULTIPLIER_SCALE, nullable=False)
    status: Mapped[str] = mapped_column(String(16), default="active", nullable=False)

    @property
    def points_multiplier(self) -> Decimal:
        return (Decimal(self.points_multiplier_bp) / MULTIPLIER_SCALE).quantize(Decimal("0.0001"))


class Subscription(TimestampMixin, BrandOwned, Base):
    """A member's subscription to one level for one continuous term.

    Renewing extends ``ends_at``; upgrading ends this row (status ``upgraded``) and starts a new one;
    ``ended_at`` is when the subscription actually stopped (expiry, upgrade or cancellation), so the
    plan covered ``[starts_at, coalesce(ended_at, ends_at))``. ``amount_paid`` is the money paid into
    this row (purchase, renewals, an upgrade's difference); ``credit_applied`` the value carried over
    from the subscription it upgraded."""

    __tablename__ = "paid_subscriptions"
    __table_args__ = (
        Index(
            "uq_paid_subscriptions_one_active",
            "member_id",
            unique=True,
            sqlite_where=text("status = 'active'"),
            postgresql_where=text("status = 'active'"),
        ),
        Index("ix_paid_subscriptions_status_ends", "status", "ends_at"),
        Index("ix_paid_subscriptions_member_starts", "member_id", "starts_at"),
    )

    id: Mapped[int] = mapped_column(IdType, primary_key=True)
    member_id: Mapped[int] = mapped_column(IdType, ForeignKey("members.id"), nullable=False)
    category_id: Mapped[int] = mapped_column(IdType, ForeignKey("paid_plan_categories.id"), nullable=False)
    level_id: Mapped[int] = mapped_column(IdType, ForeignKey("paid_plan_levels.id"), nullable=False)
    status: Mapped[str] = mapped_column(String(16), default="active", nullable=False)
    starts_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)
    ends_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)
    ended_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    amount_paid: Mapped[Decimal] = mapped_column(Money, nullable=False)
    credit_applied: Mapped[Decimal] = mapped_column(Money, default=Decimal("0.00"), nullable=False)
    refunded_amount: Mapped[Decimal] = mapped_column(Money, default=Decimal("0.00"), nullable=False)
    # Periods 0 .. periods_granted-1 have had their periodic benefits granted.
    periods_granted: Mapped[int] = mapped_column(Integer, default=0, nullable=False)
    upgraded_from_id: Mapped[int | None] = mapped_column(IdType, ForeignKey("paid_subscriptions.id"))


class SubscriptionEvent(BrandOwned, Base):
    """One entry of a subscription's history; rows are only ever added.

    ``reference`` is the client's payment (or refund) reference and the idempotency key of the
    request that wrote the entry, unique within the brand; ``request_hash`` fingerprints that
    request so a replay with another body is refused."""

    __tablename__ = "paid_subscription_events"
    __table_args__ = (
        UniqueConstraint("brand_id", "reference"),
        Index("ix_paid_subscription_events_member", "member_id", "id"),
        Index("ix_paid_subscription_events_subscription", "subscription_id", "id"),
    )

    id: Mapped[int] = mapped_column(IdType, primary_key=True)
    subscription_id: Mapped[int] = mapped_column(IdType, ForeignKey("paid_subscriptions.id"), nullable=False)
    member_id: Mapped[int] = mapped_column(IdType, ForeignKey("members.id"), nullable=False)
    kind: Mapped[str] = mapped_column(String(24), nullable=False)
    level_id: Mapped[int] = mapped_column(IdType, ForeignKey("paid_plan_levels.id"), nullable=False)
    amount: Mapped[Decimal | None] = mapped_column(Money)
    reference: Mapped[str | None] = mapped_column(String(64))
    request_hash: Mapped[str | None] = mapped_column(String(64))
    reason: Mapped[str | None] = mapped_column(String(200))
    detail: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict, nullable=False)
    occurred_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, nullable=False)
