"""Benefit cards (权益卡, A9) as rows: what a brand sells, the cards members bought, and every
scheduled issue of a card's benefits.

* ``BenefitCardProduct`` — a card on sale: price, validity, benefit lines with their schedule and
  worth, perks stated as data (a discount, a points multiplier) and purchase rules.
* ``MemberBenefitCard`` — one card a member bought. It copies the product's lines, perks and
  validity at purchase, so later product edits never change a card already sold. (Named apart from
  ``members.models.MemberCard``, the physical membership card.)
* ``BenefitCardIssue`` — one line of one period of one card, issued once: the unique
  ``(card_id, line, period)`` is what makes the issuing job safe to rerun.

No business rules here (``cards``, ``card_issuing``, ``card_refunds``).
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from huiyuan.kit.clock import utcnow
from huiyuan.kit.db import Base, BrandOwned, TimestampMixin
from huiyuan.kit.types import IdType, JSONType, Money, UTCDateTime

PRODUCT_STATUSES = ("draft", "active", "retired")
ACTIVATIONS = ("immediate", "first_use")
CARD_STATUSES = ("pending", "active", "expired", "refunded")
SCHEDULES = ("once", "week", "month")


class BenefitCardProduct(TimestampMixin, BrandOwned, Base):
    """A benefit card the brand sells."""

    __tablename__ = "benefit_card_products"
    __table_args__ = (UniqueConstraint("brand_id", "code"),)

    id: Mapped[int] = mapped_column(IdType, primary_key=True)
    code: Mapped[str] = mapped_column(String(40), nullable=False)
    name: Mapped[str] = mapped_column(String(120), nullable=False)
    description: Mapped[str | None] = mapped_column(Text)
    price: Mapped[Decimal] = mapped_column(Money, nullable=False)
    validity_months: Mapped[int] = mapped_column(Integer, nullable=False)
    activation: Mapped[str] = mapped_column(String(16), default="immediate", nullable=False)
    # [{"benefit": {...registry spec...}, "every": "once" | "week" | "month", "value": "20.00"}]
    lines: Mapped[list[dict[str, Any]]] = mapped_column(JSONType, default=list, nullable=False)
    # {"discount_percent": "5", "points_multiplier": "1.5"}: read by checkout and earning code.
    perks: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict, nullable=False)
    eligible_tiers: Mapped[list[str]] = mapped_column(JSONType, default=list, nullable=False)
    limit_per_member: Mapped[int | None] = mapped_column(Integer)
    sale_from: Mapped[datetime | None] = mapped_column(UTCDateTime)
    sale_to: Mapped[datetime | None] = mapped_column(UTCDateTime)
    status: Mapped[str] = mapped_column(String(16), default="active", nullable=False)


class MemberBenefitCard(TimestampMixin, BrandOwned, Base):
    """A card one member bought: pending until activated (first use), then active until it expires
    or is refunded."""

    __tablename__ = "member_benefit_cards"
    __table_args__ = (
        UniqueConstraint("brand_id", "payment_reference"),
        UniqueConstraint("brand_id", "refund_reference"),
        Index("ix_member_benefit_cards_member", "member_id", "product_id"),
        Index("ix_member_benefit_cards_due", "status", "next_due_at"),
    )

    id: Mapped[int] = mapped_column(IdType, primary_key=True)
    member_id: Mapped[int] = mapped_column(IdType, ForeignKey("members.id"), nullable=False)
    product_id: Mapped[int] = mapped_column(IdType, ForeignKey("benefit_card_products.id"), nullable=False)
    product_code: Mapped[str] = mapped_column(String(40), nullable=False)
    status: Mapped[str] = mapped_column(String(16), nullable=False)
    price_paid: Mapped[Decimal] = mapped_column(Money, nullable=False)
    validity_months: Mapped[int] = mapped_column(Integer, nullable=False)
    lines: Mapped[list[dict[str, Any]]] = mapped_column(JSONType, nullable=False)
    perks: Mapped[dict[str, Any]] = mapped_column(JSONType, nullable=False)
    payment_reference: Mapped[str] = mapped_column(String(64), nullable=False)
    purchase_hash: Mapped[str] = mapped_column(String(64), nullable=False)
    bought_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)
    activated_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # When the issuing job next has work on this card: the next period start, else the expiry.
    next_due_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    refund_reference: Mapped[str | None] = mapped_column(String(64))
    refund_hash: Mapped[str | None] = mapped_column(String(64))
    refunded_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    refunded_amount: Mapped[Decimal | None] = mapped_column(Money)
    # The refund's arithmetic, kept for finance: values, fractions, what was voided.
    refund_detail: Mapped[dict[str, Any] | None] = mapped_column(JSONType)


class BenefitCardIssue(BrandOwned, Base):
    """One scheduled issue of one card line (period 0 of a ``once`` line is its only one)."""

    __tablename__ = "benefit_card_issues"
    __table_args__ = (
        UniqueConstraint("card_id", "line", "period"),
        Index("ix_benefit_card_issues_entitlement", "member_benefit_id"),
    )

    id: Mapped[int] = mapped_column(IdType, primary_key=True)
    card_id: Mapped[int] = mapped_column(IdType, ForeignKey("member_benefit_cards.id"), nullable=False)
    member_id: Mapped[int] = mapped_column(IdType, ForeignKey("members.id"), nullable=False)
    line: Mapped[int] = mapped_column(Integer, nullable=False)
    period: Mapped[int] = mapped_column(Integer, nullable=False)
    due_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)
    value: Mapped[Decimal] = mapped_column(Money, nullable=False)
    key: Mapped[str] = mapped_column(String(200), nullable=False)
    # The grantor's answer (coupon ids, a points operation, an entitlement id).
    result: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict, nullable=False)
    # Set when the line grants a catalogue entitlement, which a refund may void.
    member_benefit_id: Mapped[int | None] = mapped_column(IdType, ForeignKey("member_benefits.id"))
    issued_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, nullable=False)
