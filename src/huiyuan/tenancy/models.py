"""Brands and stores. The platform is the installation itself; brands are its tenants."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from huiyuan.kit.db import Base, BrandOwned, TimestampMixin
from huiyuan.kit.types import IdType, UTCDateTime


class Brand(TimestampMixin, Base):
    __tablename__ = "brands"

    id: Mapped[int] = mapped_column(IdType, primary_key=True)
    code: Mapped[str] = mapped_column(String(40), unique=True, nullable=False)
    name: Mapped[str] = mapped_column(String(200), nullable=False)
    timezone: Mapped[str] = mapped_column(String(64), default="Asia/Shanghai", nullable=False)
    # Prefix of generated member numbers, e.g. "LX" → LX00001234.
    member_number_prefix: Mapped[str] = mapped_column(String(8), default="M", nullable=False)
    # Last member number handed out (``members.repository.next_member_number``).
    member_seq: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0", nullable=False)
    status: Mapped[str] = mapped_column(String(16), default="active", nullable=False)
    closed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class Store(TimestampMixin, BrandOwned, Base):
    __tablename__ = "stores"
    __table_args__ = (UniqueConstraint("brand_id", "code"),)

    id: Mapped[int] = mapped_column(IdType, primary_key=True)
    code: Mapped[str] = mapped_column(String(40), nullable=False)
    name: Mapped[str] = mapped_column(String(200), nullable=False)
    city: Mapped[str | None] = mapped_column(String(64))
    province: Mapped[str | None] = mapped_column(String(64))
    kind: Mapped[str] = mapped_column(String(24), default="store", nullable=False)  # store, online, outlet
    status: Mapped[str] = mapped_column(String(16), default="open", nullable=False)
