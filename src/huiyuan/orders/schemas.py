"""Request and response shapes of the catalogue, orders, refunds and bulk-import APIs.

Per-field rules live here (pydantic answers 422 with field errors); rules across fields (deal price
above list price, payments that do not add up, unknown stores or members) live in ``planning`` so the
bulk path reports them per order too. Money is ``Decimal`` with at most 2 places; responses carry it
as strings.
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import ROUND_HALF_UP, Decimal
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, AwareDatetime, BaseModel, ConfigDict, Field

from huiyuan.members.schemas import IdentifierType

Channel = Literal["store", "mini_program", "app", "web", "douyin", "tmall", "jd", "other"]
OrderStatus = Literal["paid", "partially_refunded", "refunded"]
DiscountKind = Literal["coupon", "promotion", "points", "member_price", "other"]
PaymentMethod = Literal["wechat_pay", "alipay", "card", "cash", "points", "stored_value", "coupon", "other"]
FundedBy = Literal["brand", "store", "platform", "partner"]
ProductStatus = Literal["active", "retired"]


def _cents(value: Decimal) -> Decimal:
    # One spelling per amount ("20" → "20.00") so equal requests fingerprint alike.
    return value.quantize(Decimal("0.01"), ROUND_HALF_UP)


def _utc(value: datetime) -> datetime:
    return value.astimezone(UTC)


Price = Annotated[
    Decimal, Field(ge=0, max_digits=14, decimal_places=2, examples=["199.00"]), AfterValidator(_cents)
]
PositiveMoney = Annotated[
    Decimal, Field(gt=0, max_digits=14, decimal_places=2, examples=["20.00"]), AfterValidator(_cents)
]
UTCTime = Annotated[AwareDatetime, AfterValidator(_utc)]
Code = Annotated[str, Field(min_length=1, max_length=40, pattern=r"^[A-Za-z0-9_.-]+$")]
Number = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.:/-]+$")]

_FORBID = ConfigDict(extra="forbid", str_strip_whitespace=True)


# -- catalogue -------------------------------------------------------------------------------------


class CategoryIn(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        str_strip_whitespace=True,
        json_schema_extra={"examples": [{"code": "tops", "name": "上装", "parent_code": "apparel"}]},
    )
    code: Code
    name: str = Field(min_length=1, max_length=120)
    parent_code: Code | None = Field(default=None, description="Code of the parent; omit for a root")


class CategoryOut(BaseModel):
    id: int
    parent_id: int | None
    code: str
    name: str
    path: str = Field(examples=["apparel/tops"])
    level: int


class ProductIn(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        str_strip_whitespace=True,
        json_schema_extra={
            "examples": [
                {
                    "sku": "TS-001-M",
                    "name": "纯棉T恤 M",
                    "product_brand": "Huiyuan Basics",
                    "category_code": "tops",
                    "list_price": "199.00",
                }
            ]
        },
    )
    sku: Number
    name: str = Field(min_length=1, max_length=200)
    product_brand: str | None = Field(default=None, max_length=120)
    category_code: Code | None = None
    list_price: Price


class ProductUpdate(BaseModel):
    """Partial update: only the fields sent change."""

    model_config = ConfigDict(
        extra="forbid", str_strip_whitespace=True, json_schema_extra={"examples": [{"list_price": "179.00"}]}
    )
    name: str | None = Field(default=None, min_length=1, max_length=200)
    product_brand: str | None = Field(default=None, max_length=120)
    category_code: Code | None = None
    list_price: Price | None = None
    status: ProductStatus | None = None


class ProductOut(BaseModel):
    id: int
    sku: str
    name: str
    product_brand: str | None
    category_id: int | None
    list_price: Decimal
    status: str
    created_at: datetime
    updated_at: datetime


# -- orders ----------------------------------------------------------------------------------------


class AnonymousIdentifierIn(BaseModel):
    model_config = _FORBID
    type: IdentifierType
    value: str = Field(min_length=1, max_length=200)


class OrderItemIn(BaseModel):
    model_config = _FORBID
    sku: Number
    name: str | None = Field(
        default=None, max_length=200, description="Required when the SKU is not in the catalogue"
    )
    quantity: int = Field(gt=0, le=100_000)
    list_price: Price | None = Field(default=None, description="Defaults to the catalogue's list price")
    deal_price: Price


class DiscountIn(BaseModel):
    model_config = _FORBID
    kind: DiscountKind
    code: str | None = Field(default=None, max_length=64, description="Coupon code or promotion reference")
    amount: PositiveMoney
    funded_by: FundedBy = "brand"


class PaymentIn(BaseModel):
    model_config = _FORBID
    method: PaymentMethod
    amount: PositiveMoney
    reference: str | None = Field(default=None, max_length=120)


ORDER_EXAMPLE: dict[str, Any] = {
    "order_number": "POS-20260315-0001",
    "store_code": "sh-001",
    "channel": "store",
    "member_number": "LX00000042",
    "paid_at": "2026-03-15T06:30:00Z",
    "items": [
        {"sku": "TS-001-M", "quantity": 2, "list_price": "199.00", "deal_price": "159.00"},
        {"sku": "GIFT-BAG", "name": "礼品袋", "quantity": 1, "list_price": "5.00", "deal_price": "5.00"},
    ],
    "discounts": [{"kind": "coupon", "code": "SPRING20", "amount": "20.00"}],
    "payments": [{"method": "wechat_pay", "amount": "303.00", "reference": "4200001234"}],
}


class OrderIn(BaseModel):
    """A paid order. Give ``member_id`` or ``member_number`` for a member, or neither (optionally with
    ``identifiers``) for an anonymous buyer. Payments must add up to Σ deal_price × quantity − Σ
    discounts. ``order_number`` is the idempotency key: a replay returns the first order."""

    model_config = ConfigDict(
        extra="forbid", str_strip_whitespace=True, json_schema_extra={"examples": [ORDER_EXAMPLE]}
    )
    order_number: Number
    store_code: Code | None = Field(default=None, description="Omit for orders without a store (online)")
    channel: Channel
    member_id: int | None = None
    member_number: str | None = Field(default=None, max_length=32)
    identifiers: list[AnonymousIdentifierIn] = Field(default_factory=list, max_length=10)
    currency: Literal["CNY"] = "CNY"
    paid_at: UTCTime | None = Field(default=None, description="Defaults to now")
    items: list[OrderItemIn] = Field(min_length=1, max_length=500)
    discounts: list[DiscountIn] = Field(default_factory=list, max_length=50)
    payments: list[PaymentIn] = Field(default_factory=list, max_length=20)


class OrderItemOut(BaseModel):
    id: int
    line_no: int
    product_id: int | None
    sku: str
    name: str
    category_id: int | None
    quantity: int
    list_price: Decimal
    deal_price: Decimal
    amount: Decimal
    paid_amount: Decimal
    refunded_quantity: int
    refunded_amount: Decimal


class DiscountOut(BaseModel):
    kind: str
    code: str | None
    amount: Decimal
    funded_by: str


class PaymentOut(BaseModel):
    method: str
    amount: Decimal
    reference: str | None


class AnonymousIdentifierOut(BaseModel):
    type: str
    masked: str


class RefundItemOut(BaseModel):
    order_item_id: int
    line_no: int
    sku: str
    quantity: int
    amount: Decimal


class RefundOut(BaseModel):
    id: int
    refund_number: str
    order_id: int
    amount: Decimal
    reason: str | None
    full: bool
    refunded_at: datetime
    items: list[RefundItemOut]


class OrderSummary(BaseModel):
    id: int
    order_number: str
    member_id: int | None
    store_id: int | None
    channel: str
    status: str
    currency: str
    list_amount: Decimal
    deal_amount: Decimal
    discount_amount: Decimal
    paid_amount: Decimal
    refunded_amount: Decimal
    units: int
    discount_rate: Decimal = Field(description="1 − deal/list, 4 places (0 when the list amount is 0)")
    paid_at: datetime
    created_at: datetime


class OrderOut(OrderSummary):
    anonymous_identifiers: list[AnonymousIdentifierOut]
    items: list[OrderItemOut]
    discounts: list[DiscountOut]
    payments: list[PaymentOut]
    refunds: list[RefundOut]


# -- refunds ---------------------------------------------------------------------------------------


class RefundItemIn(BaseModel):
    model_config = _FORBID
    line_no: int = Field(ge=1, description="The order line (1-based, as in the order's items)")
    quantity: int = Field(gt=0)


class RefundIn(BaseModel):
    """Refund some lines (``items``) or everything still refundable (``full: true``)."""

    model_config = ConfigDict(
        extra="forbid",
        str_strip_whitespace=True,
        json_schema_extra={
            "examples": [
                {"refund_number": "RF-0001", "items": [{"line_no": 1, "quantity": 1}], "reason": "size"},
                {"refund_number": "RF-0002", "full": True, "reason": "cancelled"},
            ]
        },
    )
    refund_number: Number
    items: list[RefundItemIn] = Field(default_factory=list, max_length=500)
    full: bool = False
    reason: str | None = Field(default=None, max_length=200)
    refunded_at: UTCTime | None = Field(default=None, description="Defaults to now")


# -- bulk ------------------------------------------------------------------------------------------


class OrderBatchIn(BaseModel):
    """Up to 1,000 orders; each is checked and stored on its own (one bad order spoils no other)."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"orders": [ORDER_EXAMPLE]}]})
    orders: list[dict[str, Any]] = Field(
        min_length=1, max_length=1000, description="Orders, each shaped like the body of POST /api/v1/orders"
    )
    earn: bool = Field(
        False,
        description=(
            "Earn the created orders' points (and evaluate their buyers' tiers) in the same transaction, "
            "instead of leaving it to the outbox worker; the order.paid events are still written and "
            "earn nothing twice"
        ),
    )


class BatchResult(BaseModel):
    order_number: str | None
    status: Literal["created", "duplicate", "error"]
    id: int | None = None
    problem: dict[str, Any] | None = Field(default=None, description="Problem details of a failed order")


class OrderBatchOut(BaseModel):
    created: int
    duplicates: int
    errors: int
    results: list[BatchResult]
