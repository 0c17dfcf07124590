"""The points mall (积分商城): gifts members exchange points (and optionally cash) for, the gift
stock as an append-only ledger, third-party codes, and redemptions.

Stock works like the points ledger: ``mall_stock_entries`` are append-only and ``stock_available``
on the gift is a cache updated in the same transaction, so ``stock_available = Σ quantity`` of the
gift's entries and never goes below zero. For a ``third_party_code`` gift the stock is also the
number of its codes still ``available``.

No business rules here (see ``points.mall``).
"""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal

from sqlalchemy import CheckConstraint, Date, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from huiyuan.kit.clock import utcnow
from huiyuan.kit.db import Base, BrandOwned, TimestampMixin
from huiyuan.kit.types import IdType, Money, UTCDateTime

GIFT_KINDS = ("physical", "virtual", "third_party_code")
GIFT_STATUSES = ("draft", "active", "paused", "retired")
STOCK_ENTRY_KINDS = ("restock", "reserve", "redeem", "release", "return", "adjust")
CODE_STATUSES = ("available", "held", "assigned")
REDEMPTION_STATUSES = ("awaiting_payment", "completed", "cancelled", "expired")


class MallGift(TimestampMixin, BrandOwned, Base):
    """A gift of the brand's points mall: its price (points, plus cash when ``cash_price`` > 0),
    sale window, per-member limits and cached stock."""

    __tablename__ = "mall_gifts"
    __table_args__ = (
        UniqueConstraint("brand_id", "code"),
        CheckConstraint("stock_available >= 0", name="stock"),
        CheckConstraint("points_price > 0 AND cash_price >= 0", name="price"),
    )

    id: Mapped[int] = mapped_column(IdType, primary_key=True)
    code: Mapped[str] = mapped_column(String(40), nullable=False)
    name: Mapped[str] = mapped_column(String(120), nullable=False)
    description: Mapped[str | None] = mapped_column(Text)
    kind: Mapped[str] = mapped_column(String(24), nullable=False)
    point_type_id: Mapped[int] = mapped_column(IdType, ForeignKey("point_types.id"), nullable=False)
    points_price: Mapped[int] = mapped_column(Integer, nullable=False)
    cash_price: Mapped[Decimal] = mapped_column(Money, nullable=False, default=Decimal("0.00"))
    status: Mapped[str] = mapped_column(String(16), nullable=False, default="active")
    sale_from: Mapped[datetime | None] = mapped_column(UTCDateTime)
    sale_to: Mapped[datetime | None] = mapped_column(UTCDateTime)
    limit_per_member: Mapped[int | None] = mapped_column(Integer)
    limit_per_member_per_day: Mapped[int | None] = mapped_column(Integer)
    # How long a points + cash redemption waits for its payment (the points stay reserved).
    payment_minutes: Mapped[int] = mapped_column(Integer, nullable=False, default=15)
    stock_available: Mapped[int] = mapped_column(Integer, nullable=False, default=0)


class MallStockEntry(BrandOwned, Base):
    """An append-only line of a gift's stock ledger; ``quantity`` is signed."""

    __tablename__ = "mall_stock_entries"
    __table_args__ = (Index("ix_mall_stock_entries_gift", "gift_id", "id"),)

    id: Mapped[int] = mapped_column(IdType, primary_key=True)
    gift_id: Mapped[int] = mapped_column(IdType, ForeignKey("mall_gifts.id"), nullable=False)
    kind: Mapped[str] = mapped_column(String(16), nullable=False)
    quantity: Mapped[int] = mapped_column(Integer, nullable=False)
    balance_after: Mapped[int] = mapped_column(Integer, nullable=False)
    redemption_id: Mapped[int | None] = mapped_column(IdType, ForeignKey("mall_redemptions.id"))
    reason: Mapped[str | None] = mapped_column(String(200))
    actor: Mapped[str] = mapped_column(String(120), nullable=False)
    occurred_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, nullable=False)


class MallGiftCode(BrandOwned, Base):
    """One single-use third-party code of a gift: ``available``, ``held`` by a redemption awaiting
    payment, or ``assigned`` (revealed to the member)."""

    __tablename__ = "mall_gift_codes"
    __table_args__ = (
        UniqueConstraint("gift_id", "code"),
        Index("ix_mall_gift_codes_pick", "gift_id", "status", "id"),
    )

    id: Mapped[int] = mapped_column(IdType, primary_key=True)
    gift_id: Mapped[int] = mapped_column(IdType, ForeignKey("mall_gifts.id"), nullable=False)
    code: Mapped[str] = mapped_column(String(200), nullable=False)
    status: Mapped[str] = mapped_column(String(16), nullable=False, default="available")
    redemption_id: Mapped[int | None] = mapped_column(IdType, ForeignKey("mall_redemptions.id"), index=True)
    assigned_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, nullable=False)


class MallRedemption(TimestampMixin, BrandOwned, Base):
    """A member's exchange of points (and cash) for a gift, under the client's idempotency key."""

    __tablename__ = "mall_redemptions"
    __table_args__ = (
        UniqueConstraint("brand_id", "key"),
        Index("ix_mall_redemptions_limits", "gift_id", "member_id", "local_day"),
        Index("ix_mall_redemptions_due", "brand_id", "status", "pay_by"),
        Index("ix_mall_redemptions_member", "member_id", "id"),
    )

    id: Mapped[int] = mapped_column(IdType, primary_key=True)
    key: Mapped[str] = mapped_column(String(200), nullable=False)
    request_hash: Mapped[str] = mapped_column(String(64), nullable=False)
    gift_id: Mapped[int] = mapped_column(IdType, ForeignKey("mall_gifts.id"), nullable=False)
    member_id: Mapped[int] = mapped_column(IdType, ForeignKey("members.id"), nullable=False)
    point_type_id: Mapped[int] = mapped_column(IdType, ForeignKey("point_types.id"), nullable=False)
    quantity: Mapped[int] = mapped_column(Integer, nullable=False)
    points: Mapped[int] = mapped_column(Integer, nullable=False)
    cash_amount: Mapped[Decimal] = mapped_column(Money, nullable=False)
    status: Mapped[str] = mapped_column(String(20), nullable=False)
    # The brand-local day of the redemption, for the per-day limit.
    local_day: Mapped[date] = mapped_column(Date, nullable=False)
    # The ledger entry that took the points (a spend, or the confirm of a reservation).
    spend_entry_id: Mapped[int | None] = mapped_column(IdType, ForeignKey("point_entries.id"))
    reservation_key: Mapped[str | None] = mapped_column(String(200))
    pay_by: Mapped[datetime | None] = mapped_column(UTCDateTime)
    payment_reference: Mapped[str | None] = mapped_column(String(64))
    paid_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    cancelled_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    cancel_reason: Mapped[str | None] = mapped_column(String(200))
    points_restored: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    stock_returned: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    channel: Mapped[str] = mapped_column(String(16), nullable=False, default="staff")
