"""Member records and everything hanging off them: identifiers, cards, consents, verifications,
custom-field definitions. PII columns hold Fernet tokens plus a blind index (see ``kit.pii``)."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from sqlalchemy import (
    Boolean,
    Date,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from huiyuan.kit.clock import utcnow
from huiyuan.kit.db import Base, BrandOwned, TimestampMixin
from huiyuan.kit.types import IdType, JSONType, UTCDateTime

MEMBER_STATUSES = ("prospect", "active", "frozen", "closed")
ENROLL_CHANNELS = (
    "store",
    "mini_program",
    "app",
    "web",
    "douyin",
    "payment",
    "e_invoice",
    "parking",
    "referral",
    "import",
)
JOIN_CONDITIONS = ("register", "first_purchase", "paid")
GENDERS = ("male", "female", "unknown")
IDENTIFIER_TYPES = (
    "phone",
    "email",
    "wechat_openid",
    "wechat_unionid",
    "alipay_id",
    "device_id",
    "card_number",
    "platform_id",
    "external_id",
)


class Member(TimestampMixin, BrandOwned, Base):
    __tablename__ = "members"
    __table_args__ = (
        UniqueConstraint("brand_id", "member_number"),
        Index("ix_members_brand_status", "brand_id", "status"),
        Index("ix_members_brand_name", "brand_id", "name"),
    )

    id: Mapped[int] = mapped_column(IdType, primary_key=True)
    member_number: Mapped[str] = mapped_column(String(32), nullable=False)
    status: Mapped[str] = mapped_column(String(16), default="active", nullable=False)

    name: Mapped[str | None] = mapped_column(String(100))
    gender: Mapped[str] = mapped_column(String(8), default="unknown", nullable=False)
    birthday: Mapped[date | None] = mapped_column(Date)
    phone_enc: Mapped[str | None] = mapped_column(Text)
    phone_bidx: Mapped[str | None] = mapped_column(String(64), index=True)
    email_enc: Mapped[str | None] = mapped_column(Text)
    email_bidx: Mapped[str | None] = mapped_column(String(64), index=True)
    province: Mapped[str | None] = mapped_column(String(40))
    city: Mapped[str | None] = mapped_column(String(40))
    occupation: Mapped[str | None] = mapped_column(String(60))
    education: Mapped[str | None] = mapped_column(String(40))
    income_band: Mapped[str | None] = mapped_column(String(40))
    interests: Mapped[list[str]] = mapped_column(JSONType, default=list, nullable=False)

    enroll_channel: Mapped[str] = mapped_column(String(24), nullable=False)
    enroll_source: Mapped[str | None] = mapped_column(String(120))
    enroll_store_id: Mapped[int | None] = mapped_column(IdType, ForeignKey("stores.id"))
    referrer_member_id: Mapped[int | None] = mapped_column(IdType, ForeignKey("members.id"))
    join_condition: Mapped[str] = mapped_column(String(16), default="register", nullable=False)
    enrolled_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, nullable=False)

    custom: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict, nullable=False)

    closed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    close_reason: Mapped[str | None] = mapped_column(String(200))
    erased_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    version: Mapped[int] = mapped_column(Integer, default=1, nullable=False)


class MemberIdentifier(BrandOwned, Base):
    """One identifier of a member (phone, OpenID, card number …); unique per brand and type."""

    __tablename__ = "member_identifiers"
    __table_args__ = (UniqueConstraint("brand_id", "type", "value_bidx"),)

    id: Mapped[int] = mapped_column(IdType, primary_key=True)
    member_id: Mapped[int] = mapped_column(IdType, ForeignKey("members.id"), index=True, nullable=False)
    type: Mapped[str] = mapped_column(String(24), nullable=False)
    value_enc: Mapped[str] = mapped_column(Text, nullable=False)
    value_bidx: Mapped[str] = mapped_column(String(64), nullable=False)
    source: Mapped[str | None] = mapped_column(String(60))
    verified: Mapped[bool] = mapped_column(Boolean, default=False, nullable=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, nullable=False)


class MemberCard(BrandOwned, Base):
    """A physical card. Lost cards stay as history; a replacement is a new row pointing back."""

    __tablename__ = "member_cards"
    __table_args__ = (UniqueConstraint("brand_id", "card_number"),)

    id: Mapped[int] = mapped_column(IdType, primary_key=True)
    member_id: Mapped[int] = mapped_column(IdType, ForeignKey("members.id"), index=True, nullable=False)
    card_number: Mapped[str] = mapped_column(String(40), nullable=False)
    status: Mapped[str] = mapped_column(String(16), default="active", nullable=False)  # lost, replaced
    bound_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, nullable=False)
    lost_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    replaces_card_id: Mapped[int | None] = mapped_column(IdType, ForeignKey("member_cards.id"))


class Consent(BrandOwned, Base):
    """Append-only consent history; the newest row per (member, purpose, channel) is in force."""

    __tablename__ = "consents"
    __table_args__ = (Index("ix_consents_member_purpose", "member_id", "purpose", "channel", "id"),)

    id: Mapped[int] = mapped_column(IdType, primary_key=True)
    member_id: Mapped[int] = mapped_column(IdType, ForeignKey("members.id"), nullable=False)
    purpose: Mapped[str] = mapped_column(String(24), nullable=False)  # marketing, profiling, partner_sharing
    channel: Mapped[str] = mapped_column(
        String(24), nullable=False
    )  # sms, email, wechat, app_push, phone, all
    granted: Mapped[bool] = mapped_column(Boolean, nullable=False)
    at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, nullable=False)
    source: Mapped[str] = mapped_column(String(60), nullable=False)
    evidence: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict, nullable=False)


class Verification(BrandOwned, Base):
    __tablename__ = "member_verifications"

    id: Mapped[int] = mapped_column(IdType, primary_key=True)
    member_id: Mapped[int] = mapped_column(IdType, ForeignKey("members.id"), index=True, nullable=False)
    kind: Mapped[str] = mapped_column(String(24), nullable=False)  # real_name, student, occupation
    status: Mapped[str] = mapped_column(String(16), nullable=False)  # pending, verified, rejected
    evidence: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict, nullable=False)
    at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, nullable=False)
    by: Mapped[str | None] = mapped_column(String(200))


class CustomFieldDefinition(TimestampMixin, BrandOwned, Base):
    __tablename__ = "custom_field_definitions"
    __table_args__ = (UniqueConstraint("brand_id", "key"),)

    id: Mapped[int] = mapped_column(IdType, primary_key=True)
    key: Mapped[str] = mapped_column(String(64), nullable=False)
    label_zh: Mapped[str] = mapped_column(String(120), nullable=False)
    label_en: Mapped[str] = mapped_column(String(120), nullable=False)
    type: Mapped[str] = mapped_column(String(16), nullable=False)
    required: Mapped[bool] = mapped_column(Boolean, default=False, nullable=False)
    unique: Mapped[bool] = mapped_column(Boolean, default=False, nullable=False)
    default: Mapped[Any] = mapped_column(JSONType)
    pattern: Mapped[str | None] = mapped_column(String(300))
    min_value: Mapped[str | None] = mapped_column(String(40))
    max_value: Mapped[str | None] = mapped_column(String(40))
    options: Mapped[list[str]] = mapped_column(JSONType, default=list, nullable=False)
    status: Mapped[str] = mapped_column(String(16), default="active", nullable=False)  # retired
    position: Mapped[int] = mapped_column(Integer, default=0, nullable=False)


class CustomFieldUniqueValue(BrandOwned, Base):
    """Index row enforcing ``unique`` custom fields across members of a brand."""

    __tablename__ = "custom_field_unique_values"
    __table_args__ = (UniqueConstraint("brand_id", "field_key", "value"),)

    id: Mapped[int] = mapped_column(IdType, primary_key=True)
    field_key: Mapped[str] = mapped_column(String(64), nullable=False)
    value: Mapped[str] = mapped_column(String(300), nullable=False)
    member_id: Mapped[int] = mapped_column(IdType, ForeignKey("members.id"), index=True, nullable=False)


IMPORT_STATUSES = ("pending", "running", "succeeded", "failed", "cancelled")


class ImportRun(TimestampMixin, BrandOwned, Base):
    """One import of a file (members or prospects): options, progress counts and outcome."""

    __tablename__ = "import_runs"
    __table_args__ = (Index("ix_import_runs_brand_created", "brand_id", "id"),)

    id: Mapped[int] = mapped_column(IdType, primary_key=True)
    kind: Mapped[str] = mapped_column(String(24), default="members", nullable=False)
    filename: Mapped[str] = mapped_column(String(255), nullable=False)
    format: Mapped[str] = mapped_column(String(8), nullable=False)  # csv, xlsx
    stored_path: Mapped[str | None] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(16), default="pending", nullable=False)
    dry_run: Mapped[bool] = mapped_column(Boolean, default=False, nullable=False)
    on_duplicate: Mapped[str] = mapped_column(String(8), default="skip", nullable=False)
    default_status: Mapped[str] = mapped_column(String(16), default="prospect", nullable=False)
    columns: Mapped[list[str]] = mapped_column(JSONType, default=list, nullable=False)
    total_rows: Mapped[int] = mapped_column(Integer, default=0, nullable=False)
    processed_rows: Mapped[int] = mapped_column(Integer, default=0, nullable=False)
    created: Mapped[int] = mapped_column(Integer, default=0, nullable=False)
    updated: Mapped[int] = mapped_column(Integer, default=0, nullable=False)
    skipped: Mapped[int] = mapped_column(Integer, default=0, nullable=False)
    failed: Mapped[int] = mapped_column(Integer, default=0, nullable=False)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_by: Mapped[str] = mapped_column(String(200), nullable=False)
    job_id: Mapped[int | None] = mapped_column(IdType)  # the background job run that carries it out
    error: Mapped[str | None] = mapped_column(Text)


class ImportRowError(BrandOwned, Base):
    """A row an import could not take. ``raw`` keeps the row's non-PII cells; PII cells (phone,
    e-mail, identifiers) are kept only as a Fernet token of their JSON in ``raw_pii_enc``."""

    __tablename__ = "import_row_errors"
    __table_args__ = (Index("ix_import_row_errors_run_row", "import_run_id", "row_number"),)

    id: Mapped[int] = mapped_column(IdType, primary_key=True)
    import_run_id: Mapped[int] = mapped_column(IdType, ForeignKey("import_runs.id"), nullable=False)
    row_number: Mapped[int] = mapped_column(Integer, nullable=False)
    column: Mapped[str | None] = mapped_column(String(120))
    code: Mapped[str] = mapped_column(String(40), nullable=False)
    message: Mapped[str] = mapped_column(Text, nullable=False)
    raw: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict, nullable=False)
    raw_pii_enc: Mapped[str | None] = mapped_column(Text)
