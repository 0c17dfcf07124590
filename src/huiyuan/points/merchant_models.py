"""The brand's registry of merchants (商户): the parties outside the brand that fund points
(``funded_by = "merchant:<code>"`` on a lot), named in clearing by this registry.

No business rules here (see ``points.merchants``).
"""

from __future__ import annotations

from sqlalchemy import String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from huiyuan.kit.db import Base, BrandOwned, TimestampMixin
from huiyuan.kit.types import IdType

MERCHANT_STATUSES = ("active", "inactive")


class Merchant(TimestampMixin, BrandOwned, Base):
    """A merchant of one brand, known by its ``code`` (the ``<code>`` of ``merchant:<code>``)."""

    __tablename__ = "merchants"
    __table_args__ = (UniqueConstraint("brand_id", "code"),)

    id: Mapped[int] = mapped_column(IdType, primary_key=True)
    code: Mapped[str] = mapped_column(String(32), nullable=False)
    name: Mapped[str] = mapped_column(String(100), nullable=False)
    contact: Mapped[str | None] = mapped_column(String(200))
    status: Mapped[str] = mapped_column(String(16), nullable=False, default="active")
