"""Benefits as rows: the brand's catalogue, what members hold of it, and every step taken on it.

* ``BenefitDefinition`` — one catalogue entry (停车 2 小时, 贵宾厅, 包邮 …): its kind, how staff
  verify it, its usage limits, what one use costs and who funds and serves it. Shapes of the JSON
  columns are checked by ``benefits.schemas``.
* ``MemberBenefit`` — an entitlement: what one member holds of one definition (uses left, uses
  held by open appointments, validity, where it came from). ``remaining`` and ``reserved`` move only
  through conditional ``UPDATE … WHERE`` statements, and check constraints refuse an overdraft.
* ``BenefitEvent`` — the append-only trail: configured, issued, booked, rebooked, cancelled,
  verified, voided, expired. An ``issued`` row carries the grant's idempotency key (unique per
  brand), so one key grants once, also for kinds delegated to another ledger (coupons, points).
* ``BenefitUsage`` — one verified use, with the unit cost and the funding and serving parties
  copied from the definition at that moment: settlement is a plain sum over these rows. A scan
  code and an appointment can each be used once (unique columns).
* ``BenefitScanCode`` — a short-lived one-time code a member shows at the desk.
* ``BenefitAppointment`` — a booked slot of an appointment benefit.

Benefit cards (A9) are in ``card_models``. No business rules here.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import Boolean, CheckConstraint, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from huiyuan.kit.clock import utcnow
from huiyuan.kit.db import Base, BrandOwned, TimestampMixin
from huiyuan.kit.types import IdType, JSONType, Money, UTCDateTime

DEFINITION_KINDS = ("coupon", "points", "growth", "service", "custom", "third_party")
# Kinds whose balance lives in another domain's ledger: granting them delegates to that grantor.
DELEGATED_KINDS = ("coupon", "points", "growth")
VERIFICATION_METHODS = ("scan", "appointment", "manual", "identity_check")
DEFINITION_STATUSES = ("draft", "active", "paused", "retired")
ENTITLEMENT_STATUSES = ("active", "used_up", "expired", "voided")
EVENT_KINDS = ("configured", "issued", "booked", "rebooked", "cancelled", "verified", "voided", "expired")
APPOINTMENT_STATUSES = ("booked", "cancelled", "verified")


class BenefitDefinition(TimestampMixin, BrandOwned, Base):
    """One entry of a brand's benefit catalogue."""

    __tablename__ = "benefit_definitions"
    __table_args__ = (UniqueConstraint("brand_id", "code"),)

    id: Mapped[int] = mapped_column(IdType, primary_key=True)
    code: Mapped[str] = mapped_column(String(40), nullable=False)
    name: Mapped[str] = mapped_column(String(120), nullable=False)
    description: Mapped[str | None] = mapped_column(Text)
    kind: Mapped[str] = mapped_column(String(16), nullable=False)
    # service: parking, lounge, free_shipping, priority_service, … (``schemas.ServiceType``)
    service_type: Mapped[str | None] = mapped_column(String(40))
    # Null for delegated kinds (their own ledger decides how they are used).
    verification: Mapped[str | None] = mapped_column(String(16))
    # coupon: {"template"}; points/growth: {"point_type", "amount"}; third_party: {"offer", "reference"}
    params: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict, nullable=False)
    # ``schemas.UsageLimits``: uses_per_entitlement, per_period, time_windows, duration_minutes.
    limits: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict, nullable=False)
    # ``schemas.AppointmentRules`` for the appointment method, else null.
    appointment: Mapped[dict[str, Any] | None] = mapped_column(JSONType)
    # Default validity of an entitlement (a grant may say otherwise); null: no end.
    valid_days: Mapped[int | None] = mapped_column(Integer)
    unit_cost: Mapped[Decimal] = mapped_column(Money, default=Decimal("0.00"), nullable=False)
    funded_by: Mapped[str] = mapped_column(String(40), default="brand", nullable=False)
    served_by: Mapped[str] = mapped_column(String(40), default="brand", nullable=False)
    partner_id: Mapped[str | None] = mapped_column(String(64))
    # Members may claim it themselves, up to ``claim_limit`` times.
    claimable: Mapped[bool] = mapped_column(Boolean, default=False, nullable=False)
    claim_limit: Mapped[int] = mapped_column(Integer, default=1, nullable=False)
    status: Mapped[str] = mapped_column(String(16), default="active", nullable=False)


class MemberBenefit(TimestampMixin, BrandOwned, Base):
    """What one member holds of one definition (an entitlement)."""

    __tablename__ = "member_benefits"
    __table_args__ = (
        UniqueConstraint("brand_id", "grant_key"),
        Index("ix_member_benefits_member", "member_id", "status"),
        Index("ix_member_benefits_due", "status", "valid_to"),
        CheckConstraint("reserved >= 0 AND used >= 0", name="counts"),
        CheckConstraint(
            "remaining IS NULL OR (remaining >= 0 AND reserved <= remaining)", name="no_overdraft"
        ),
    )

    id: Mapped[int] = mapped_column(IdType, primary_key=True)
    member_id: Mapped[int] = mapped_column(IdType, ForeignKey("members.id"), nullable=False)
    definition_id: Mapped[int] = mapped_column(IdType, ForeignKey("benefit_definitions.id"), nullable=False)
    # Uses granted and left; null: unlimited within validity (period limits still apply).
    quantity: Mapped[int | None] = mapped_column(Integer)
    remaining: Mapped[int | None] = mapped_column(Integer)
    # Uses held by open appointments (part of ``remaining``).
    reserved: Mapped[int] = mapped_column(Integer, default=0, nullable=False)
    used: Mapped[int] = mapped_column(Integer, default=0, nullable=False)
    valid_from: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)
    valid_to: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # tier, paid_subscription, benefit_card, campaign, claim, operator …
    source_type: Mapped[str] = mapped_column(String(24), nullable=False)
    source_id: Mapped[str] = mapped_column(String(64), nullable=False)
    grant_key: Mapped[str] = mapped_column(String(200), nullable=False)
    status: Mapped[str] = mapped_column(String(16), default="active", nullable=False)


class BenefitEvent(BrandOwned, Base):
    """One step in the life of a definition or an entitlement. Append-only."""

    __tablename__ = "benefit_events"
    __table_args__ = (
        UniqueConstraint("brand_id", "key"),
        Index("ix_benefit_events_entitlement", "member_benefit_id", "id"),
        Index("ix_benefit_events_definition", "definition_id", "id"),
    )

    id: Mapped[int] = mapped_column(IdType, primary_key=True)
    definition_id: Mapped[int] = mapped_column(IdType, ForeignKey("benefit_definitions.id"), nullable=False)
    member_benefit_id: Mapped[int | None] = mapped_column(IdType, ForeignKey("member_benefits.id"))
    member_id: Mapped[int | None] = mapped_column(IdType, ForeignKey("members.id"))
    kind: Mapped[str] = mapped_column(String(16), nullable=False)
    # The idempotency key of a grant (``issued`` rows only).
    key: Mapped[str | None] = mapped_column(String(200))
    quantity: Mapped[int | None] = mapped_column(Integer)
    detail: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict, nullable=False)
    actor: Mapped[str] = mapped_column(String(200), nullable=False)
    occurred_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, nullable=False)


class BenefitScanCode(BrandOwned, Base):
    """A one-time code for one entitlement; the signed token the member shows names its id and nonce."""

    __tablename__ = "benefit_scan_codes"
    __table_args__ = (Index("ix_benefit_scan_codes_entitlement", "member_benefit_id"),)

    id: Mapped[int] = mapped_column(IdType, primary_key=True)
    member_benefit_id: Mapped[int] = mapped_column(IdType, ForeignKey("member_benefits.id"), nullable=False)
    member_id: Mapped[int] = mapped_column(IdType, ForeignKey("members.id"), nullable=False)
    nonce: Mapped[str] = mapped_column(String(32), nullable=False)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)
    used_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, nullable=False)


class BenefitAppointment(BrandOwned, Base):
    """A slot booked against an entitlement: it holds one use until verified or cancelled."""

    __tablename__ = "benefit_appointments"
    __table_args__ = (
        UniqueConstraint("brand_id", "booking_key"),
        Index("ix_benefit_appointments_slot", "definition_id", "starts_at", "status"),
        Index("ix_benefit_appointments_member", "member_id", "starts_at"),
    )

    id: Mapped[int] = mapped_column(IdType, primary_key=True)
    member_benefit_id: Mapped[int] = mapped_column(IdType, ForeignKey("member_benefits.id"), nullable=False)
    definition_id: Mapped[int] = mapped_column(IdType, ForeignKey("benefit_definitions.id"), nullable=False)
    member_id: Mapped[int] = mapped_column(IdType, ForeignKey("members.id"), nullable=False)
    store_id: Mapped[int | None] = mapped_column(IdType, ForeignKey("stores.id"))
    starts_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)
    ends_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)
    status: Mapped[str] = mapped_column(String(16), default="booked", nullable=False)
    booking_key: Mapped[str] = mapped_column(String(200), nullable=False)
    request_hash: Mapped[str] = mapped_column(String(64), nullable=False)
    note: Mapped[str | None] = mapped_column(String(200))
    changes: Mapped[int] = mapped_column(Integer, default=0, nullable=False)
    booked_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)
    closed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class BenefitUsage(BrandOwned, Base):
    """One verified use of an entitlement, priced for settlement. Append-only."""

    __tablename__ = "benefit_usages"
    __table_args__ = (
        UniqueConstraint("scan_code_id"),
        UniqueConstraint("appointment_id"),
        Index("ix_benefit_usages_member", "member_id", "definition_id", "used_at"),
        Index("ix_benefit_usages_brand_time", "brand_id", "used_at"),
    )

    id: Mapped[int] = mapped_column(IdType, primary_key=True)
    member_benefit_id: Mapped[int] = mapped_column(IdType, ForeignKey("member_benefits.id"), nullable=False)
    definition_id: Mapped[int] = mapped_column(IdType, ForeignKey("benefit_definitions.id"), nullable=False)
    member_id: Mapped[int] = mapped_column(IdType, ForeignKey("members.id"), nullable=False)
    method: Mapped[str] = mapped_column(String(16), nullable=False)
    used_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)
    minutes: Mapped[int | None] = mapped_column(Integer)
    store_id: Mapped[int | None] = mapped_column(IdType, ForeignKey("stores.id"))
    # What staff recorded: a masked identity document reference, a partner's confirmation number …
    reference: Mapped[str | None] = mapped_column(String(120))
    note: Mapped[str | None] = mapped_column(String(200))
    scan_code_id: Mapped[int | None] = mapped_column(IdType, ForeignKey("benefit_scan_codes.id"))
    appointment_id: Mapped[int | None] = mapped_column(IdType, ForeignKey("benefit_appointments.id"))
    unit_cost: Mapped[Decimal] = mapped_column(Money, nullable=False)
    funded_by: Mapped[str] = mapped_column(String(40), nullable=False)
    served_by: Mapped[str] = mapped_column(String(40), nullable=False)
    verified_by: Mapped[str] = mapped_column(String(200), nullable=False)
