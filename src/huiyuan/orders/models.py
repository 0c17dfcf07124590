"""Consumption data: the product catalogue (category tree, products) and orders with their lines,
discounts, payments and refunds. Every row belongs to one brand (``BrandOwned``); money columns are
``Money`` (integer fen). Anonymous buyers are kept as blind indexes and masked values only: no
plaintext phone or e-mail ever reaches these tables. No business rules here (see ``service``)."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import Boolean, ForeignKey, Index, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from huiyuan.kit.clock import utcnow
from huiyuan.kit.db import Base, BrandOwned, TimestampMixin
from huiyuan.kit.types import IdType, JSONType, Money, UTCDateTime

ORDER_CHANNELS = ("store", "mini_program", "app", "web", "douyin", "tmall", "jd", "other")
ORDER_STATUSES = ("paid", "partially_refunded", "refunded")
DISCOUNT_KINDS = ("coupon", "promotion", "points", "member_price", "other")
PAYMENT_METHODS = ("wechat_pay", "alipay", "card", "cash", "points", "stored_value", "coupon", "other")
PRODUCT_STATUSES = ("active", "retired")


class Category(TimestampMixin, BrandOwned, Base):
    """A node of the brand's category tree; ``path`` is the codes from the root joined by ``/``."""

    __tablename__ = "product_categories"
    __table_args__ = (
        UniqueConstraint("brand_id", "code"),
        Index("ix_product_categories_path", "brand_id", "path"),
    )

    id: Mapped[int] = mapped_column(IdType, primary_key=True)
    parent_id: Mapped[int | None] = mapped_column(IdType, ForeignKey("product_categories.id"))
    code: Mapped[str] = mapped_column(String(40), nullable=False)
    name: Mapped[str] = mapped_column(String(120), nullable=False)
    path: Mapped[str] = mapped_column(String(400), nullable=False)
    level: Mapped[int] = mapped_column(Integer, nullable=False)


class Product(TimestampMixin, BrandOwned, Base):
    __tablename__ = "products"
    __table_args__ = (UniqueConstraint("brand_id", "sku"),)

    id: Mapped[int] = mapped_column(IdType, primary_key=True)
    sku: Mapped[str] = mapped_column(String(64), nullable=False)
    name: Mapped[str] = mapped_column(String(200), nullable=False)
    # The maker's brand of the product (a department store sells many); not the tenant.
    product_brand: Mapped[str | None] = mapped_column(String(120))
    category_id: Mapped[int | None] = mapped_column(IdType, ForeignKey("product_categories.id"), index=True)
    list_price: Mapped[Decimal] = mapped_column(Money, nullable=False)
    status: Mapped[str] = mapped_column(String(16), default="active", nullable=False)


class Order(TimestampMixin, BrandOwned, Base):
    """A paid order. ``order_number`` is the client's idempotency key within the brand."""

    __tablename__ = "orders"
    __table_args__ = (
        UniqueConstraint("brand_id", "order_number"),
        Index("ix_orders_member_paid", "member_id", "paid_at"),
        Index("ix_orders_store_paid", "store_id", "paid_at"),
        Index("ix_orders_brand_paid", "brand_id", "paid_at"),
    )

    id: Mapped[int] = mapped_column(IdType, primary_key=True)
    order_number: Mapped[str] = mapped_column(String(64), nullable=False)
    member_id: Mapped[int | None] = mapped_column(IdType, ForeignKey("members.id"))
    # Non-member buyers: [{"type", "bidx", "masked"}] — blind index for matching, mask for display.
    anonymous_identifiers: Mapped[list[dict[str, Any]]] = mapped_column(
        JSONType, default=list, nullable=False
    )
    store_id: Mapped[int | None] = mapped_column(IdType, ForeignKey("stores.id"))
    channel: Mapped[str] = mapped_column(String(16), nullable=False)
    status: Mapped[str] = mapped_column(String(24), default="paid", nullable=False)
    currency: Mapped[str] = mapped_column(String(3), default="CNY", nullable=False)
    list_amount: Mapped[Decimal] = mapped_column(Money, nullable=False)
    deal_amount: Mapped[Decimal] = mapped_column(Money, nullable=False)
    discount_amount: Mapped[Decimal] = mapped_column(Money, nullable=False)
    paid_amount: Mapped[Decimal] = mapped_column(Money, nullable=False)
    refunded_amount: Mapped[Decimal] = mapped_column(Money, default=Decimal("0.00"), nullable=False)
    units: Mapped[int] = mapped_column(Integer, nullable=False)
    paid_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)
    # sha256 of the canonical request (identifier values replaced by their blind index).
    request_hash: Mapped[str] = mapped_column(String(64), nullable=False)


class OrderItem(BrandOwned, Base):
    """One order line. ``paid_amount`` is the line's share of what was paid after order discounts."""

    __tablename__ = "order_items"
    __table_args__ = (UniqueConstraint("order_id", "line_no"),)

    id: Mapped[int] = mapped_column(IdType, primary_key=True)
    order_id: Mapped[int] = mapped_column(IdType, ForeignKey("orders.id"), nullable=False)
    line_no: Mapped[int] = mapped_column(Integer, nullable=False)
    product_id: Mapped[int | None] = mapped_column(IdType, ForeignKey("products.id"), index=True)
    sku: Mapped[str] = mapped_column(String(64), nullable=False)
    name: Mapped[str] = mapped_column(String(200), nullable=False)
    category_id: Mapped[int | None] = mapped_column(IdType, ForeignKey("product_categories.id"))
    quantity: Mapped[int] = mapped_column(Integer, nullable=False)
    list_price: Mapped[Decimal] = mapped_column(Money, nullable=False)
    deal_price: Mapped[Decimal] = mapped_column(Money, nullable=False)
    amount: Mapped[Decimal] = mapped_column(Money, nullable=False)  # deal_price × quantity
    paid_amount: Mapped[Decimal] = mapped_column(Money, nullable=False)
    refunded_quantity: Mapped[int] = mapped_column(Integer, default=0, nullable=False)
    refunded_amount: Mapped[Decimal] = mapped_column(Money, default=Decimal("0.00"), nullable=False)


class OrderDiscount(BrandOwned, Base):
    __tablename__ = "order_discounts"

    id: Mapped[int] = mapped_column(IdType, primary_key=True)
    order_id: Mapped[int] = mapped_column(IdType, ForeignKey("orders.id"), index=True, nullable=False)
    kind: Mapped[str] = mapped_column(String(16), nullable=False)
    code: Mapped[str | None] = mapped_column(String(64))
    amount: Mapped[Decimal] = mapped_column(Money, nullable=False)
    funded_by: Mapped[str] = mapped_column(String(16), default="brand", nullable=False)


class OrderPayment(BrandOwned, Base):
    __tablename__ = "order_payments"

    id: Mapped[int] = mapped_column(IdType, primary_key=True)
    order_id: Mapped[int] = mapped_column(IdType, ForeignKey("orders.id"), index=True, nullable=False)
    method: Mapped[str] = mapped_column(String(16), nullable=False)
    amount: Mapped[Decimal] = mapped_column(Money, nullable=False)
    reference: Mapped[str | None] = mapped_column(String(120))


class Refund(BrandOwned, Base):
    """A refund of some or all remaining units of an order; ``refund_number`` is its idempotency key."""

    __tablename__ = "refunds"
    __table_args__ = (UniqueConstraint("brand_id", "refund_number"),)

    id: Mapped[int] = mapped_column(IdType, primary_key=True)
    refund_number: Mapped[str] = mapped_column(String(64), nullable=False)
    order_id: Mapped[int] = mapped_column(IdType, ForeignKey("orders.id"), index=True, nullable=False)
    amount: Mapped[Decimal] = mapped_column(Money, nullable=False)
    reason: Mapped[str | None] = mapped_column(String(200))
    full: Mapped[bool] = mapped_column(Boolean, default=False, nullable=False)
    refunded_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)
    request_hash: Mapped[str] = mapped_column(String(64), nullable=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, nullable=False)


class RefundItem(BrandOwned, Base):
    __tablename__ = "refund_items"

    id: Mapped[int] = mapped_column(IdType, primary_key=True)
    refund_id: Mapped[int] = mapped_column(IdType, ForeignKey("refunds.id"), index=True, nullable=False)
    order_item_id: Mapped[int] = mapped_column(IdType, ForeignKey("order_items.id"), nullable=False)
    quantity: Mapped[int] = mapped_column(Integer, nullable=False)
    amount: Mapped[Decimal] = mapped_column(Money, nullable=False)
