"""Coupons as rows and ledgers: templates with their stock-and-budget ledger, issued coupons with
their append-only event trail, imported third-party codes, checkout locks and the cost shares of
every redemption.

* ``CouponTemplate`` — what a coupon is (discount, conditions, stacking, cost sharing, validity,
  validated by ``coupons.rules``) and how members get it (claim window, points price, cash price).
  ``stock_available`` and ``budget_available`` are caches of ``CouponStockEntry``: both equal the
  sum of their entries' deltas, and check constraints refuse negatives.
* ``Coupon`` — one issued coupon of one member, with a unique code. Its ``status`` moves
  ``available → locked → redeemed`` (or back to ``available`` on release or return), or ends as
  ``expired`` / ``voided``. Every move is a ``CouponEvent``; single use is guaranteed by moving the
  status with a conditional ``UPDATE … WHERE status = 'available'`` under the row lock.
* ``CouponLock`` — a checkout hold of one or more coupons for one order, with a timeout, under the
  client's idempotency key; it stores the allocation computed when it was taken.
* ``CouponShare`` — who pays for each redemption (platform, brand, store, third parties): signed,
  append-only; a return adds the negated rows, so settlement is a plain sum.

No business rules here (see ``coupons.service``).
"""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import CheckConstraint, Date, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from huiyuan.kit.clock import utcnow
from huiyuan.kit.db import Base, BrandOwned, TimestampMixin
from huiyuan.kit.types import IdType, JSONType, Money, UTCDateTime

TEMPLATE_STATUSES = ("draft", "active", "paused", "retired")
CODE_SOURCES = ("generated", "imported")
COUPON_STATUSES = ("available", "locked", "redeemed", "expired", "voided")
ISSUE_CHANNELS = ("claim", "grab", "exchange", "activity", "push", "purchase", "benefit", "manual")
EVENT_KINDS = ("issued", "locked", "released", "redeemed", "returned", "expired", "voided")
STOCK_ENTRY_KINDS = ("restock", "issue", "void", "expire", "redeem", "return", "adjust")
LOCK_STATES = ("held", "redeemed", "released", "returned")


class CouponTemplate(TimestampMixin, BrandOwned, Base):
    """A coupon the brand offers: rules, acquisition settings and the cached stock and budget."""

    __tablename__ = "coupon_templates"
    __table_args__ = (
        UniqueConstraint("brand_id", "code"),
        CheckConstraint("stock_available IS NULL OR stock_available >= 0", name="stock"),
        CheckConstraint("budget_available IS NULL OR budget_available >= 0", name="budget"),
    )

    id: Mapped[int] = mapped_column(IdType, primary_key=True)
    code: Mapped[str] = mapped_column(String(40), nullable=False)
    name: Mapped[str] = mapped_column(String(120), nullable=False)
    description: Mapped[str | None] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(16), nullable=False, default="draft")
    # ``coupons.rules.TemplateRules`` as JSON: discount, conditions, stacking, per_order_limit,
    # cost_sharing, validity.
    rules: Mapped[dict[str, Any]] = mapped_column(JSONType, nullable=False)
    # What one coupon can cost at most (the budget reserves it at issue), in yuan.
    face_value: Mapped[Decimal] = mapped_column(Money, nullable=False)
    code_source: Mapped[str] = mapped_column(String(16), nullable=False, default="generated")
    code_format: Mapped[dict[str, Any]] = mapped_column(JSONType, nullable=False)
    # None = unlimited; otherwise a cache of the stock ledger.
    stock_total: Mapped[int | None] = mapped_column(Integer)
    stock_available: Mapped[int | None] = mapped_column(Integer)
    budget_total: Mapped[Decimal | None] = mapped_column(Money)
    budget_available: Mapped[Decimal | None] = mapped_column(Money)
    limit_per_member: Mapped[int | None] = mapped_column(Integer)
    limit_per_member_per_day: Mapped[int | None] = mapped_column(Integer)
    # Stock per brand-local day across all members (None = no daily cap).
    limit_per_day: Mapped[int | None] = mapped_column(Integer)
    # Acquisition: members may claim it themselves inside the window (a grab when stock is short).
    claimable: Mapped[bool] = mapped_column(default=False, nullable=False)
    claim_from: Mapped[datetime | None] = mapped_column(UTCDateTime)
    claim_to: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # Exchange for points (spent through the points ledger) and sale for cash.
    point_type_id: Mapped[int | None] = mapped_column(IdType, ForeignKey("point_types.id"))
    points_price: Mapped[int | None] = mapped_column(Integer)
    cash_price: Mapped[Decimal | None] = mapped_column(Money)
    # Whether a coupon of a fully refunded order comes back to the member while still valid.
    return_on_refund: Mapped[bool] = mapped_column(default=True, nullable=False)


class CouponStockEntry(BrandOwned, Base):
    """An append-only line of a template's stock and budget ledger (signed deltas)."""

    __tablename__ = "coupon_stock_entries"
    __table_args__ = (Index("ix_coupon_stock_entries_template", "template_id", "id"),)

    id: Mapped[int] = mapped_column(IdType, primary_key=True)
    template_id: Mapped[int] = mapped_column(IdType, ForeignKey("coupon_templates.id"), nullable=False)
    kind: Mapped[str] = mapped_column(String(16), nullable=False)
    quantity: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    budget: Mapped[Decimal] = mapped_column(Money, nullable=False, default=Decimal("0.00"))
    coupon_id: Mapped[int | None] = mapped_column(IdType, ForeignKey("coupons.id"))
    reason: Mapped[str | None] = mapped_column(String(200))
    actor: Mapped[str] = mapped_column(String(120), nullable=False)
    occurred_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, nullable=False)


class Coupon(BrandOwned, Base):
    """One coupon issued to one member."""

    __tablename__ = "coupons"
    __table_args__ = (
        UniqueConstraint("brand_id", "code"),
        UniqueConstraint("brand_id", "issue_key"),
        Index("ix_coupons_member", "member_id", "status", "valid_to"),
        Index("ix_coupons_template_member", "template_id", "member_id", "local_day"),
        Index("ix_coupons_template_day", "template_id", "local_day"),
        Index("ix_coupons_due", "brand_id", "status", "valid_to"),
    )

    id: Mapped[int] = mapped_column(IdType, primary_key=True)
    template_id: Mapped[int] = mapped_column(IdType, ForeignKey("coupon_templates.id"), nullable=False)
    member_id: Mapped[int] = mapped_column(IdType, ForeignKey("members.id"), nullable=False)
    code: Mapped[str] = mapped_column(String(80), nullable=False)
    status: Mapped[str] = mapped_column(String(16), nullable=False, default="available")
    valid_from: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)
    valid_to: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)
    issued_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)
    # The brand-local day of issue, for the per-day limit.
    local_day: Mapped[date] = mapped_column(Date, nullable=False)
    channel: Mapped[str] = mapped_column(String(16), nullable=False)
    # The idempotency key of the issue that made it (one issue → one coupon).
    issue_key: Mapped[str] = mapped_column(String(200), nullable=False)
    issue_ref: Mapped[str | None] = mapped_column(String(120))
    budget_reserved: Mapped[Decimal] = mapped_column(Money, nullable=False, default=Decimal("0.00"))
    # Exchange and purchase: what was paid for it.
    points_entry_id: Mapped[int | None] = mapped_column(IdType, ForeignKey("point_entries.id"))
    payment_reference: Mapped[str | None] = mapped_column(String(64))
    paid_amount: Mapped[Decimal | None] = mapped_column(Money)
    # The checkout lock holding or having redeemed it.
    lock_id: Mapped[int | None] = mapped_column(IdType, ForeignKey("coupon_locks.id"), index=True)
    discount: Mapped[Decimal | None] = mapped_column(Money)
    redeemed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    store_id: Mapped[int | None] = mapped_column(IdType)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow, nullable=False)


class CouponEvent(BrandOwned, Base):
    """An append-only step in a coupon's life."""

    __tablename__ = "coupon_events"
    __table_args__ = (Index("ix_coupon_events_coupon", "coupon_id", "id"),)

    id: Mapped[int] = mapped_column(IdType, primary_key=True)
    coupon_id: Mapped[int] = mapped_column(IdType, ForeignKey("coupons.id"), nullable=False)
    kind: Mapped[str] = mapped_column(String(16), nullable=False)
    lock_id: Mapped[int | None] = mapped_column(IdType, ForeignKey("coupon_locks.id"))
    amount: Mapped[Decimal | None] = mapped_column(Money)
    detail: Mapped[dict[str, Any] | None] = mapped_column(JSONType)
    actor: Mapped[str] = mapped_column(String(120), nullable=False)
    occurred_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, nullable=False)


class CouponCode(BrandOwned, Base):
    """One imported third-party code of a template: ``available`` until a coupon takes it."""

    __tablename__ = "coupon_codes"
    __table_args__ = (
        UniqueConstraint("brand_id", "code"),
        Index("ix_coupon_codes_pick", "template_id", "status", "id"),
    )

    id: Mapped[int] = mapped_column(IdType, primary_key=True)
    template_id: Mapped[int] = mapped_column(IdType, ForeignKey("coupon_templates.id"), nullable=False)
    code: Mapped[str] = mapped_column(String(80), nullable=False)
    status: Mapped[str] = mapped_column(String(16), nullable=False, default="available")
    coupon_id: Mapped[int | None] = mapped_column(IdType, ForeignKey("coupons.id"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, nullable=False)


class CouponLock(TimestampMixin, BrandOwned, Base):
    """A checkout hold of a member's coupons for one order."""

    __tablename__ = "coupon_locks"
    __table_args__ = (
        UniqueConstraint("brand_id", "key"),
        Index("ix_coupon_locks_due", "brand_id", "state", "expires_at"),
        Index("ix_coupon_locks_order", "brand_id", "order_ref"),
    )

    id: Mapped[int] = mapped_column(IdType, primary_key=True)
    key: Mapped[str] = mapped_column(String(200), nullable=False)
    request_hash: Mapped[str] = mapped_column(String(64), nullable=False)
    member_id: Mapped[int] = mapped_column(IdType, ForeignKey("members.id"), nullable=False)
    order_ref: Mapped[str] = mapped_column(String(64), nullable=False)
    store_id: Mapped[int | None] = mapped_column(IdType)
    channel: Mapped[str | None] = mapped_column(String(32))
    state: Mapped[str] = mapped_column(String(16), nullable=False, default="held")
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)
    discount: Mapped[Decimal] = mapped_column(Money, nullable=False)
    # Order amount before coupons (goods after promotions + shipping), for coupon sales figures.
    order_amount: Mapped[Decimal] = mapped_column(Money, nullable=False)
    # The allocation: per coupon, its discount, lines and shipping part (``cart.Application``).
    allocation: Mapped[dict[str, Any]] = mapped_column(JSONType, nullable=False)
    redeemed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    payment_reference: Mapped[str | None] = mapped_column(String(64))
    closed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    close_reason: Mapped[str | None] = mapped_column(String(200))


class CouponShare(BrandOwned, Base):
    """Who funds one redeemed coupon's discount: one row per party, negated rows on return."""

    __tablename__ = "coupon_shares"
    __table_args__ = (Index("ix_coupon_shares_settle", "brand_id", "occurred_at"),)

    id: Mapped[int] = mapped_column(IdType, primary_key=True)
    coupon_id: Mapped[int] = mapped_column(IdType, ForeignKey("coupons.id"), nullable=False, index=True)
    template_id: Mapped[int] = mapped_column(IdType, ForeignKey("coupon_templates.id"), nullable=False)
    lock_id: Mapped[int] = mapped_column(IdType, ForeignKey("coupon_locks.id"), nullable=False)
    party: Mapped[str] = mapped_column(String(16), nullable=False)
    party_id: Mapped[str | None] = mapped_column(String(64))
    amount: Mapped[Decimal] = mapped_column(Money, nullable=False)
    store_id: Mapped[int | None] = mapped_column(IdType)
    channel: Mapped[str | None] = mapped_column(String(32))
    kind: Mapped[str] = mapped_column(String(16), nullable=False)  # redeem | return
    occurred_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, nullable=False)


class CouponIssueRun(TimestampMixin, BrandOwned, Base):
    """A push issue by an operator to a list of members (a background job) and its result report."""

    __tablename__ = "coupon_issue_runs"

    id: Mapped[int] = mapped_column(IdType, primary_key=True)
    template_id: Mapped[int] = mapped_column(IdType, ForeignKey("coupon_templates.id"), nullable=False)
    job_id: Mapped[int | None] = mapped_column(IdType)
    # Who to issue to: ``{"member_ids": [...]}`` or ``{"filter": {...}}`` (see ``coupons.push``).
    targets: Mapped[dict[str, Any]] = mapped_column(JSONType, nullable=False)
    reference: Mapped[str | None] = mapped_column(String(120))
    requested: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    issued: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    skipped: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    # Per skipped member: the reason (``{"member_id": …, "reason": …}``), capped in size.
    report: Mapped[list[dict[str, Any]]] = mapped_column(JSONType, nullable=False, default=list)
    status: Mapped[str] = mapped_column(String(16), nullable=False, default="queued")
    actor: Mapped[str] = mapped_column(String(120), nullable=False)
