from __future__ import annotations

from datetime import datetime

from sqlalchemy import Boolean, ForeignKey, String
from sqlalchemy.orm import Mapped, mapped_column

from huiyuan.kit.db import Base, BrandOptional, TimestampMixin
from huiyuan.kit.types import IdType, JSONType, UTCDateTime


class ConsoleUser(TimestampMixin, BrandOptional, Base):
    """An operator of the console. ``brand_id`` null = platform user (sees every brand)."""

    __tablename__ = "console_users"

    id: Mapped[int] = mapped_column(IdType, primary_key=True)
    username: Mapped[str] = mapped_column(String(80), unique=True, nullable=False)
    display_name: Mapped[str] = mapped_column(String(120), nullable=False)
    password_hash: Mapped[str] = mapped_column(String(255), nullable=False)
    role: Mapped[str] = mapped_column(String(32), nullable=False)
    active: Mapped[bool] = mapped_column(Boolean, default=True, nullable=False)
    locale: Mapped[str] = mapped_column(String(8), default="zh", nullable=False)
    last_login_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class ConsoleSession(Base):
    """Server-side console session; the cookie holds only the random token (hashed here)."""

    __tablename__ = "console_sessions"

    id: Mapped[int] = mapped_column(IdType, primary_key=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True, nullable=False)
    user_id: Mapped[int] = mapped_column(IdType, ForeignKey("console_users.id"), index=True, nullable=False)
    csrf_token: Mapped[str] = mapped_column(String(64), nullable=False)
    # The brand a platform user is looking at (brand switcher); ignored for brand users.
    active_brand_id: Mapped[int | None] = mapped_column(IdType, ForeignKey("brands.id"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class ApiKey(TimestampMixin, BrandOptional, Base):
    """A key for other systems. Only a SHA-256 of the secret is kept; the secret is shown once."""

    __tablename__ = "api_keys"

    id: Mapped[int] = mapped_column(IdType, primary_key=True)
    name: Mapped[str] = mapped_column(String(120), nullable=False)
    prefix: Mapped[str] = mapped_column(String(16), unique=True, nullable=False)
    key_hash: Mapped[str] = mapped_column(String(64), nullable=False)
    scopes: Mapped[list[str]] = mapped_column(JSONType, default=list, nullable=False)
    rate_limit: Mapped[str | None] = mapped_column(String(32))
    created_by: Mapped[str | None] = mapped_column(String(200))
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
