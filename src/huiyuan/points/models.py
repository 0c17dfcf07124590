"""Points as a ledger: point types, accounts, lots, append-only entries and the lots each entry
touched, reservations for checkout, earn rules, and the idempotent operations that group entries.

Buckets of an account (all integers, in points):

* ``available`` — remaining points of active lots that can be spent now;
* ``pending``   — remaining points of lots waiting for their return window to close;
* ``frozen``    — remaining points of frozen lots;
* ``reserved``  — points drawn from lots and held by open checkout reservations.

Every entry carries the change it makes to each bucket (``d_available`` …), so an account row is
only a cache: ``available = Σ d_available`` and so on, and the *balance* (points still in lots,
``available + pending + frozen``) equals ``Σ amount`` of the entries and ``Σ remaining`` of the lots.
``debt`` is what a refund could not claw back (points already spent); later earnings repay it.

No business rules here (see ``ledger`` and ``service``).
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    Boolean,
    CheckConstraint,
    ForeignKey,
    Index,
    Integer,
    Numeric,
    String,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from huiyuan.kit.clock import utcnow
from huiyuan.kit.db import Base, BrandOwned, TimestampMixin
from huiyuan.kit.types import IdType, JSONType, UTCDateTime

# "wallet": the sub-ledgers of stored value (``huiyuan.wallet``), hidden from the points product.
POINT_KINDS = ("spendable", "growth", "annual", "wallet")
LOT_STATES = ("pending", "active", "frozen", "expired")
ENTRY_KINDS = (
    "earn",
    "activate",
    "spend",
    "reserve",
    "confirm",
    "release",
    "expire",
    "carry",
    "freeze",
    "unfreeze",
    "adjust",
    "reverse",
    "restore",
    "transfer_out",
    "transfer_in",
)
RESERVATION_STATES = ("held", "confirmed", "released")
RULE_STATUSES = ("active", "paused", "retired")


class PointType(TimestampMixin, BrandOwned, Base):
    """A kind of points a brand keeps: spendable points, growth value (成长值), annual points."""

    __tablename__ = "point_types"
    __table_args__ = (UniqueConstraint("brand_id", "code"),)

    id: Mapped[int] = mapped_column(IdType, primary_key=True)
    code: Mapped[str] = mapped_column(String(32), nullable=False)
    name: Mapped[str] = mapped_column(String(80), nullable=False)
    kind: Mapped[str] = mapped_column(String(16), nullable=False)
    # What one point is worth in yuan, for liability and clearing (e.g. 0.01).
    fair_value: Mapped[Decimal] = mapped_column(Numeric(12, 6), nullable=False, default=Decimal("0.01"))
    # Validated by ``points.expiry_policy``.
    expiry_policy: Mapped[dict[str, Any]] = mapped_column(JSONType, nullable=False)
    # Order points stay pending this many days (the return window) before they can be spent.
    pending_days: Mapped[int] = mapped_column(Integer, default=0, nullable=False)
    spendable: Mapped[bool] = mapped_column(Boolean, default=True, nullable=False)
    transferable: Mapped[bool] = mapped_column(Boolean, default=False, nullable=False)
    # Checkout: how many points make one yuan, and the share of a cart points may pay (0–1).
    points_per_yuan: Mapped[int] = mapped_column(Integer, default=100, nullable=False)
    max_pay_ratio: Mapped[Decimal] = mapped_column(Numeric(5, 4), default=Decimal("1"), nullable=False)
    reservation_minutes: Mapped[int] = mapped_column(Integer, default=15, nullable=False)
    status: Mapped[str] = mapped_column(String(16), default="active", nullable=False)


class PointAccount(TimestampMixin, BrandOwned, Base):
    """One member's points of one type; its buckets are a cache of the entries."""

    __tablename__ = "point_accounts"
    __table_args__ = (
        UniqueConstraint("member_id", "point_type_id"),
        CheckConstraint("available >= 0 AND pending >= 0 AND frozen >= 0 AND reserved >= 0", name="buckets"),
    )

    id: Mapped[int] = mapped_column(IdType, primary_key=True)
    member_id: Mapped[int] = mapped_column(IdType, ForeignKey("members.id"), nullable=False, index=True)
    point_type_id: Mapped[int] = mapped_column(IdType, ForeignKey("point_types.id"), nullable=False)
    available: Mapped[int] = mapped_column(Integer, default=0, nullable=False)
    pending: Mapped[int] = mapped_column(Integer, default=0, nullable=False)
    frozen: Mapped[int] = mapped_column(Integer, default=0, nullable=False)
    reserved: Mapped[int] = mapped_column(Integer, default=0, nullable=False)
    debt: Mapped[int] = mapped_column(Integer, default=0, nullable=False)
    earned_total: Mapped[int] = mapped_column(Integer, default=0, nullable=False)
    spent_total: Mapped[int] = mapped_column(Integer, default=0, nullable=False)
    expired_total: Mapped[int] = mapped_column(Integer, default=0, nullable=False)


class PointOperation(BrandOwned, Base):
    """One business call on the ledger (earn, spend, reserve …) under its idempotency key.

    A retry with the same key returns ``result`` and writes nothing; the same key with another
    request (different ``request_hash``) is refused.
    """

    __tablename__ = "point_operations"
    __table_args__ = (UniqueConstraint("brand_id", "key"),)

    id: Mapped[int] = mapped_column(IdType, primary_key=True)
    key: Mapped[str] = mapped_column(String(200), nullable=False)
    kind: Mapped[str] = mapped_column(String(24), nullable=False)
    request_hash: Mapped[str] = mapped_column(String(64), nullable=False)
    member_id: Mapped[int | None] = mapped_column(IdType, ForeignKey("members.id"), index=True)
    result: Mapped[dict[str, Any]] = mapped_column(JSONType, nullable=False)
    actor: Mapped[str] = mapped_column(String(120), nullable=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, nullable=False)


class PointLot(BrandOwned, Base):
    """One grant of points: what it was, what remains, until when, and who pays for it."""

    __tablename__ = "point_lots"
    __table_args__ = (
        # Spending order: soonest expiry first, then first in (id). NULL expiry sorts last.
        Index("ix_point_lots_spend", "account_id", "state", "expires_at", "id"),
        Index("ix_point_lots_expiry", "brand_id", "state", "expires_at"),
        Index("ix_point_lots_activation", "brand_id", "state", "activates_at"),
        # The lots an order earned (refunds take them back).
        Index("ix_point_lots_source", "member_id", "source_type", "source_id"),
        CheckConstraint("remaining >= 0 AND remaining <= amount", name="remaining"),
    )

    id: Mapped[int] = mapped_column(IdType, primary_key=True)
    account_id: Mapped[int] = mapped_column(IdType, ForeignKey("point_accounts.id"), nullable=False)
    member_id: Mapped[int] = mapped_column(IdType, ForeignKey("members.id"), nullable=False)
    point_type_id: Mapped[int] = mapped_column(IdType, ForeignKey("point_types.id"), nullable=False)
    amount: Mapped[int] = mapped_column(Integer, nullable=False)
    remaining: Mapped[int] = mapped_column(Integer, nullable=False)
    state: Mapped[str] = mapped_column(String(16), nullable=False)
    earned_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)
    activates_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # When the lot stops being usable (grace included); the nominal date is for display.
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    nominal_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    source_type: Mapped[str] = mapped_column(String(24), nullable=False)
    source_id: Mapped[str | None] = mapped_column(String(64))
    store_id: Mapped[int | None] = mapped_column(IdType, ForeignKey("stores.id"))
    funded_by: Mapped[str] = mapped_column(String(40), default="brand", nullable=False)
    rule_id: Mapped[int | None] = mapped_column(IdType, ForeignKey("point_earn_rules.id"))
    # Fair value of one point when granted, so clearing prices each grant as it was made.
    unit_value: Mapped[Decimal] = mapped_column(Numeric(12, 6), nullable=False)
    frozen_reason: Mapped[str | None] = mapped_column(String(200))
    # Points of this lot taken back by refunds so far, and the part of that forgiven because it had
    # expired unused (counters over the lot's own ``reverse`` entries, kept to bound later refunds).
    reversed_amount: Mapped[int] = mapped_column(Integer, default=0, nullable=False)
    forgiven_amount: Mapped[int] = mapped_column(Integer, default=0, nullable=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, nullable=False)


class PointEntry(BrandOwned, Base):
    """An append-only ledger line; never updated or deleted."""

    __tablename__ = "point_entries"
    __table_args__ = (
        Index("ix_point_entries_account", "account_id", "id"),
        Index("ix_point_entries_member", "member_id", "id"),
        Index("ix_point_entries_brand_time", "brand_id", "occurred_at"),
        Index("ix_point_entries_source", "brand_id", "source_type", "source_id"),
        # Releasing, confirming or refunding a hold finds its reserve entries by reservation.
        Index("ix_point_entries_reservation", "reservation_id"),
    )

    id: Mapped[int] = mapped_column(IdType, primary_key=True)
    operation_id: Mapped[int] = mapped_column(IdType, ForeignKey("point_operations.id"), nullable=False)
    account_id: Mapped[int] = mapped_column(IdType, ForeignKey("point_accounts.id"), nullable=False)
    member_id: Mapped[int] = mapped_column(IdType, ForeignKey("members.id"), nullable=False)
    point_type_id: Mapped[int] = mapped_column(IdType, ForeignKey("point_types.id"), nullable=False)
    kind: Mapped[str] = mapped_column(String(16), nullable=False)
    # Change of the balance (points in lots): d_available + d_pending + d_frozen.
    amount: Mapped[int] = mapped_column(Integer, nullable=False)
    d_available: Mapped[int] = mapped_column(Integer, default=0, nullable=False)
    d_pending: Mapped[int] = mapped_column(Integer, default=0, nullable=False)
    d_frozen: Mapped[int] = mapped_column(Integer, default=0, nullable=False)
    d_reserved: Mapped[int] = mapped_column(Integer, default=0, nullable=False)
    d_debt: Mapped[int] = mapped_column(Integer, default=0, nullable=False)
    reason: Mapped[str | None] = mapped_column(String(200))
    source_type: Mapped[str | None] = mapped_column(String(24))
    source_id: Mapped[str | None] = mapped_column(String(64))
    store_id: Mapped[int | None] = mapped_column(IdType, ForeignKey("stores.id"))
    reservation_id: Mapped[int | None] = mapped_column(IdType, ForeignKey("point_reservations.id"))
    reverses_entry_id: Mapped[int | None] = mapped_column(IdType, ForeignKey("point_entries.id"))
    actor: Mapped[str] = mapped_column(String(120), nullable=False)
    occurred_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, nullable=False)

    # Assigned, never loaded: lets one flush insert an operation, its entries and their lot moves.
    operation: Mapped[PointOperation] = relationship(lazy="raise")
    reservation: Mapped[PointReservation | None] = relationship(lazy="raise")


class PointEntryLot(BrandOwned, Base):
    """How an entry touched one lot: ``amount`` < 0 drew from it, > 0 gave back to it."""

    __tablename__ = "point_entry_lots"
    __table_args__ = (Index("ix_point_entry_lots_lot", "lot_id"),)

    id: Mapped[int] = mapped_column(IdType, primary_key=True)
    entry_id: Mapped[int] = mapped_column(IdType, ForeignKey("point_entries.id"), nullable=False, index=True)
    lot_id: Mapped[int] = mapped_column(IdType, ForeignKey("point_lots.id"), nullable=False)
    amount: Mapped[int] = mapped_column(Integer, nullable=False)

    entry: Mapped[PointEntry] = relationship(lazy="raise")
    lot: Mapped[PointLot] = relationship(lazy="raise")


class PointReservation(TimestampMixin, BrandOwned, Base):
    """Points held for a checkout until confirmed, released, or timed out."""

    __tablename__ = "point_reservations"
    __table_args__ = (
        UniqueConstraint("brand_id", "key"),
        Index("ix_point_reservations_due", "brand_id", "status", "expires_at"),
    )

    id: Mapped[int] = mapped_column(IdType, primary_key=True)
    key: Mapped[str] = mapped_column(String(200), nullable=False)
    account_id: Mapped[int] = mapped_column(IdType, ForeignKey("point_accounts.id"), nullable=False)
    member_id: Mapped[int] = mapped_column(IdType, ForeignKey("members.id"), nullable=False)
    amount: Mapped[int] = mapped_column(Integer, nullable=False)
    status: Mapped[str] = mapped_column(String(16), default="held", nullable=False)
    order_ref: Mapped[str | None] = mapped_column(String(64))
    store_id: Mapped[int | None] = mapped_column(IdType, ForeignKey("stores.id"))
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)
    settled_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class EarnRule(TimestampMixin, BrandOwned, Base):
    """A declarative earn rule (``definition`` validated by ``points.rule_schema``)."""

    __tablename__ = "point_earn_rules"
    __table_args__ = (UniqueConstraint("brand_id", "code"),)

    id: Mapped[int] = mapped_column(IdType, primary_key=True)
    code: Mapped[str] = mapped_column(String(40), nullable=False)
    name: Mapped[str] = mapped_column(String(120), nullable=False)
    trigger: Mapped[str] = mapped_column(String(64), nullable=False)  # "order" or the action name
    definition: Mapped[dict[str, Any]] = mapped_column(JSONType, nullable=False)
    priority: Mapped[int] = mapped_column(Integer, default=0, nullable=False)
    status: Mapped[str] = mapped_column(String(16), default="active", nullable=False)
    valid_from: Mapped[datetime | None] = mapped_column(UTCDateTime)
    valid_to: Mapped[datetime | None] = mapped_column(UTCDateTime)
    granted_total: Mapped[int] = mapped_column(Integer, default=0, nullable=False)
