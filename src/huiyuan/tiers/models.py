"""Member tiers (会员等级): a brand's tier program and its levels, each member's tier state, the
append-only record of every tier change, and the daily distribution snapshots.

Conditions, validity rules and benefit lists are JSON documents whose shape is checked by
``tiers.schemas`` (configuration) and read by ``tiers.policy`` (evaluation). No business rules here.
"""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import Boolean, Date, ForeignKey, Index, Integer, Numeric, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from huiyuan.kit.clock import utcnow
from huiyuan.kit.db import Base, BrandOwned, TimestampMixin
from huiyuan.kit.types import IdType, JSONType, UTCDateTime

CHANGE_REASONS = ("initial", "upgrade", "retain", "downgrade", "override", "reactivation")


class TierProgram(TimestampMixin, BrandOwned, Base):
    """How a brand's levels are won and kept: the qualification window, when validity ends are
    settled, and the grace period before a downgrade. One program per brand."""

    __tablename__ = "tier_programs"
    __table_args__ = (UniqueConstraint("brand_id"),)

    id: Mapped[int] = mapped_column(IdType, primary_key=True)
    # {"kind": "rolling_months", "months": 12} or {"kind": "calendar_year"}
    window: Mapped[dict[str, Any]] = mapped_column(JSONType, nullable=False)
    # {"mode": "realtime"} or {"mode": "fixed_date", "month": 1, "day": 1}
    settlement: Mapped[dict[str, Any]] = mapped_column(JSONType, nullable=False)
    grace_days: Mapped[int] = mapped_column(Integer, default=0, nullable=False)


class TierLevel(TimestampMixin, BrandOwned, Base):
    """One rung of the ladder; rank 0 is the base level every member starts at."""

    __tablename__ = "tier_levels"
    __table_args__ = (UniqueConstraint("brand_id", "code"), UniqueConstraint("brand_id", "rank"))

    id: Mapped[int] = mapped_column(IdType, primary_key=True)
    program_id: Mapped[int] = mapped_column(IdType, ForeignKey("tier_programs.id"), nullable=False)
    code: Mapped[str] = mapped_column(String(40), nullable=False)
    name_zh: Mapped[str] = mapped_column(String(80), nullable=False)
    name_en: Mapped[str] = mapped_column(String(80), nullable=False)
    rank: Mapped[int] = mapped_column(Integer, nullable=False)
    # Condition trees (``tiers.schemas.Condition``); null: not reachable / kept without conditions.
    upgrade: Mapped[dict[str, Any] | None] = mapped_column(JSONType)
    retention: Mapped[dict[str, Any] | None] = mapped_column(JSONType)
    # {"kind": "months", "months": 12} | {"kind": "anniversary"} | {"kind": "fixed_date", ...};
    # null: the level never expires (the base level).
    validity: Mapped[dict[str, Any] | None] = mapped_column(JSONType)
    # Where a member goes when retention fails; null: one level down.
    downgrade_to_code: Mapped[str | None] = mapped_column(String(40))
    points_multiplier: Mapped[Decimal] = mapped_column(Numeric(6, 3), default=Decimal("1"), nullable=False)
    upgrade_gifts: Mapped[list[dict[str, Any]]] = mapped_column(JSONType, default=list, nullable=False)
    benefits: Mapped[list[dict[str, Any]]] = mapped_column(JSONType, default=list, nullable=False)


class MemberTier(TimestampMixin, BrandOwned, Base):
    """A member's current level and the dates that govern it (one row per member)."""

    __tablename__ = "member_tiers"
    __table_args__ = (
        UniqueConstraint("member_id"),
        Index("ix_member_tiers_review", "brand_id", "review_at"),
        Index("ix_member_tiers_level", "brand_id", "level_id"),
    )

    id: Mapped[int] = mapped_column(IdType, primary_key=True)
    member_id: Mapped[int] = mapped_column(IdType, ForeignKey("members.id"), nullable=False)
    level_id: Mapped[int] = mapped_column(IdType, ForeignKey("tier_levels.id"), nullable=False)
    since: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)
    valid_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # When the end of validity is settled: valid_until + grace, moved to the next settlement date
    # for programs that settle on a set date. Null while the level does not expire.
    review_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # An operator's level acts as a floor until ``override_until`` (null: until lifted).
    override_level_id: Mapped[int | None] = mapped_column(IdType, ForeignKey("tier_levels.id"))
    override_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    override_reason: Mapped[str | None] = mapped_column(String(200))
    rfm_score: Mapped[Decimal | None] = mapped_column(Numeric(8, 3))
    # Dropped because retention was not met; the next qualifying purchase is a reactivation.
    lapsed: Mapped[bool] = mapped_column(Boolean, default=False, nullable=False)
    last_change_id: Mapped[int | None] = mapped_column(IdType)


class TierChange(BrandOwned, Base):
    """One change of a member's level (or a retained one), with the basis values that decided it.
    Append-only: never updated or deleted."""

    __tablename__ = "tier_changes"
    __table_args__ = (Index("ix_tier_changes_member", "member_id", "id"),)

    id: Mapped[int] = mapped_column(IdType, primary_key=True)
    member_id: Mapped[int] = mapped_column(IdType, ForeignKey("members.id"), nullable=False)
    from_level_id: Mapped[int | None] = mapped_column(IdType, ForeignKey("tier_levels.id"))
    to_level_id: Mapped[int] = mapped_column(IdType, ForeignKey("tier_levels.id"), nullable=False)
    from_rank: Mapped[int | None] = mapped_column(Integer)
    to_rank: Mapped[int] = mapped_column(Integer, nullable=False)
    reason: Mapped[str] = mapped_column(String(16), nullable=False)
    # {"growth": 1200, "spend": "5300.00", "single_order": "900.00", "rfm_score": null, "window": {...}}
    basis: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict, nullable=False)
    valid_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    note: Mapped[str | None] = mapped_column(String(200))
    actor: Mapped[str] = mapped_column(String(200), nullable=False)
    occurred_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, nullable=False)


class TierSnapshot(BrandOwned, Base):
    """How many members held a level on a day (written by the ``tiers.snapshot`` job)."""

    __tablename__ = "tier_snapshots"
    __table_args__ = (UniqueConstraint("brand_id", "day", "level_id"),)

    id: Mapped[int] = mapped_column(IdType, primary_key=True)
    day: Mapped[date] = mapped_column(Date, nullable=False)
    level_id: Mapped[int] = mapped_column(IdType, ForeignKey("tier_levels.id"), nullable=False)
    level_code: Mapped[str] = mapped_column(String(40), nullable=False)
    members: Mapped[int] = mapped_column(Integer, nullable=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, nullable=False)
