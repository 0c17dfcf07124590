"""Platform-shared point programmes (联盟积分): several brands earn and spend one kind of points.

A programme is created by the platform and *hosted* by one brand: its point type is an ordinary
``PointType`` of the host, so every programme account, lot, entry, expiry and refund lives in the
host brand's ledger (``points.ledger``), unchanged. What this module adds is who takes part and who
did what, each row owned by the brand it concerns so the session's tenancy filter keeps brands
apart:

* ``point_programs`` — the programme itself (platform-level, no brand column): code, host brand,
  point type, status;
* ``point_program_brands`` — one row per brand in the programme (owned by that brand): role
  (``host`` or ``participant``), status (``active``, ``left``), earn rate, joined / left;
* ``point_program_links`` — a participant's member linked to the programme account of a host
  member (owned by the participant brand);
* ``point_program_operations`` — every earn, spend and refund a brand made through the programme
  (and every automatic earn taken back because its order was refunded, and every checkout hold
  reserved, confirmed or released)
  (owned by that brand), pointing at the host ledger's ``PointOperation``: the record of which
  brand funded a grant and where points were consumed, which programme clearing reads.

No business rules here (see ``points.programs``).
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from sqlalchemy import ForeignKey, Index, Integer, Numeric, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from huiyuan.kit.clock import utcnow
from huiyuan.kit.db import Base, BrandOwned, TimestampMixin
from huiyuan.kit.types import IdType, Money, UTCDateTime

PROGRAM_STATUSES = ("active", "paused", "closed")
PROGRAM_ROLES = ("host", "participant")
PARTICIPATION_STATUSES = ("active", "left")
PROGRAM_OPERATION_KINDS = ("earn", "spend", "refund", "reverse", "reserve", "confirm", "release")


class PointProgram(TimestampMixin, Base):
    """A points programme shared by brands; its points are the host brand's ``point_type_id``."""

    __tablename__ = "point_programs"

    id: Mapped[int] = mapped_column(IdType, primary_key=True)
    code: Mapped[str] = mapped_column(String(40), unique=True, nullable=False)
    name: Mapped[str] = mapped_column(String(120), nullable=False)
    host_brand_id: Mapped[int] = mapped_column(IdType, ForeignKey("brands.id"), index=True, nullable=False)
    # One programme per point type: the type's ledger is the programme's.
    point_type_id: Mapped[int] = mapped_column(
        IdType, ForeignKey("point_types.id"), unique=True, nullable=False
    )
    status: Mapped[str] = mapped_column(String(16), default="active", nullable=False)
    created_by: Mapped[str] = mapped_column(String(120), nullable=False)


class PointProgramBrand(TimestampMixin, BrandOwned, Base):
    """A brand's participation in a programme (the host has one too, with role ``host``)."""

    __tablename__ = "point_program_brands"
    __table_args__ = (UniqueConstraint("program_id", "brand_id"),)

    id: Mapped[int] = mapped_column(IdType, primary_key=True)
    program_id: Mapped[int] = mapped_column(IdType, ForeignKey("point_programs.id"), nullable=False)
    role: Mapped[str] = mapped_column(String(16), nullable=False)
    status: Mapped[str] = mapped_column(String(16), default="active", nullable=False)
    # Points per yuan paid that the brand's orders earn (0: the brand earns only by explicit grants).
    earn_rate: Mapped[Decimal] = mapped_column(Numeric(12, 4), default=Decimal("0"), nullable=False)
    joined_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, nullable=False)
    left_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class PointProgramLink(BrandOwned, Base):
    """A brand's member linked to the programme account of a member of the host brand.

    The host's own members link to themselves (``host_member_id == member_id``)."""

    __tablename__ = "point_program_links"
    __table_args__ = (
        UniqueConstraint("program_id", "member_id"),
        UniqueConstraint("program_id", "brand_id", "host_member_id"),
    )

    id: Mapped[int] = mapped_column(IdType, primary_key=True)
    program_id: Mapped[int] = mapped_column(IdType, ForeignKey("point_programs.id"), nullable=False)
    member_id: Mapped[int] = mapped_column(IdType, ForeignKey("members.id"), nullable=False)
    host_member_id: Mapped[int] = mapped_column(IdType, ForeignKey("members.id"), index=True, nullable=False)
    # How the host member was found: "phone" (same phone blind index), "created" or "self" (host).
    matched_by: Mapped[str] = mapped_column(String(16), nullable=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, nullable=False)


class PointProgramOperation(BrandOwned, Base):
    """An earn, spend, refund, reverse, reserve, confirm or release a brand made through the
    programme, and the host ledger operation it became. ``brand_id`` is the acting brand: the funder
    of an earn, the redeemer of a spend or confirm. ``refunds_id``: the spend (or confirm) a refund
    gives back to, the earn a reverse takes back, or the reserve a confirm or release settles."""

    __tablename__ = "point_program_operations"
    __table_args__ = (
        UniqueConstraint("program_id", "brand_id", "key"),
        Index("ix_point_program_operations_member", "brand_id", "member_id", "id"),
    )

    id: Mapped[int] = mapped_column(IdType, primary_key=True)
    program_id: Mapped[int] = mapped_column(IdType, ForeignKey("point_programs.id"), nullable=False)
    key: Mapped[str] = mapped_column(String(200), nullable=False)
    kind: Mapped[str] = mapped_column(String(16), nullable=False)
    request_hash: Mapped[str] = mapped_column(String(64), nullable=False)
    link_id: Mapped[int] = mapped_column(IdType, ForeignKey("point_program_links.id"), nullable=False)
    member_id: Mapped[int] = mapped_column(IdType, ForeignKey("members.id"), nullable=False)
    host_member_id: Mapped[int] = mapped_column(IdType, ForeignKey("members.id"), nullable=False)
    ledger_operation_id: Mapped[int] = mapped_column(
        IdType, ForeignKey("point_operations.id"), unique=True, nullable=False
    )
    refunds_id: Mapped[int | None] = mapped_column(IdType, ForeignKey("point_program_operations.id"))
    points: Mapped[int] = mapped_column(Integer, nullable=False)
    paid_amount: Mapped[Decimal | None] = mapped_column(Money)
    order_ref: Mapped[str | None] = mapped_column(String(64))
    store_id: Mapped[int | None] = mapped_column(IdType, ForeignKey("stores.id"))
    reason: Mapped[str | None] = mapped_column(String(200))
    actor: Mapped[str] = mapped_column(String(120), nullable=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, nullable=False)
