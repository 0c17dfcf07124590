"""Request and response shapes of the coupons API.

Per-field rules live here and in ``coupons.rules`` (pydantic answers 422 with field errors); rules
across fields and against the database (claim window order, unknown point types, stock, limits)
live in the services. Money is ``Decimal`` yuan with at most 2 places.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, JsonValue

from huiyuan.coupons.codes import CodeFormat
from huiyuan.coupons.rules import TemplateRules
from huiyuan.points.mall_schemas import CashPrice, ClientKey, UTCTime

TemplateStatus = Literal["draft", "active", "paused", "retired"]
CouponStatus = Literal["available", "locked", "redeemed", "expired", "voided"]
IssueChannel = Literal["claim", "grab", "exchange", "activity", "push", "purchase", "benefit", "manual"]
TemplateCode = Annotated[str, Field(min_length=1, max_length=40, pattern=r"^[A-Za-z0-9_.-]+$")]
Count = Annotated[int, Field(ge=1, le=100_000_000)]

_TEMPLATE_EXAMPLE: dict[str, JsonValue] = {
    "code": "SPRING-50",
    "name": "满300减50",
    "status": "active",
    "rules": {
        "discount": {"kind": "threshold", "threshold": "300.00", "amount": "50.00"},
        "conditions": {"scenes": ["online", "in_store"], "exclude_categories": ["tobacco"]},
        "stacking": "stackable",
        "per_order_limit": 1,
        "cost_sharing": [{"party": "brand", "percent": "70"}, {"party": "store", "percent": "30"}],
        "validity": {"kind": "relative", "days": 30, "round_to": "end_of_day"},
    },
    "stock_total": 10000,
    "budget_total": "500000.00",
    "limit_per_member": 2,
    "limit_per_member_per_day": 1,
    "claimable": True,
    "claim_from": "2026-03-01T10:00:00+08:00",
    "claim_to": "2026-03-08T00:00:00+08:00",
}


class TemplateIn(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [_TEMPLATE_EXAMPLE]})

    code: TemplateCode
    name: str = Field(min_length=1, max_length=120)
    description: str | None = Field(default=None, max_length=2000)
    status: Literal["draft", "active"] = "draft"
    rules: TemplateRules
    code_source: Literal["generated", "imported"] = "generated"
    code_format: CodeFormat | None = None
    stock_total: Count | None = Field(default=None, description="Coupons that may be issued; none = no cap")
    budget_total: CashPrice | None = Field(
        default=None, description="Yuan the template may cost; each issue reserves its face value"
    )
    limit_per_member: Count | None = None
    limit_per_member_per_day: Count | None = None
    limit_per_day: Count | None = Field(
        default=None, description="Coupons issued per brand-local day, all members"
    )
    claimable: bool = Field(default=False, description="Members may claim it themselves (claim centre, grab)")
    claim_from: UTCTime | None = None
    claim_to: UTCTime | None = None
    point_type: str | None = Field(default=None, description="Point type of the points price")
    points_price: Count | None = Field(default=None, description="Points for one coupon (points exchange)")
    cash_price: CashPrice | None = Field(default=None, description="Yuan for one coupon (purchase)")
    return_on_refund: bool = True


class TemplateUpdate(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "name": "满300减50（春季焕新）",
                    "limit_per_member": 3,
                    "claimable": True,
                    "claim_from": "2026-03-08T10:00:00+08:00",
                    "claim_to": "2026-03-15T00:00:00+08:00",
                },
                {"status": "paused"},
            ]
        },
    )

    name: str | None = Field(default=None, min_length=1, max_length=120)
    description: str | None = Field(default=None, max_length=2000)
    status: TemplateStatus | None = None
    limit_per_member: Count | None = None
    limit_per_member_per_day: Count | None = None
    limit_per_day: Count | None = None
    claimable: bool | None = None
    claim_from: UTCTime | None = None
    claim_to: UTCTime | None = None
    points_price: Count | None = None
    cash_price: CashPrice | None = None
    return_on_refund: bool | None = None


class TemplateOut(BaseModel):
    id: int
    code: str
    name: str
    description: str | None
    status: str
    rules: dict[str, Any]
    face_value: Decimal
    code_source: str
    code_format: dict[str, Any]
    stock_total: int | None
    stock_available: int | None
    budget_total: Decimal | None
    budget_available: Decimal | None
    limit_per_member: int | None
    limit_per_member_per_day: int | None
    limit_per_day: int | None
    claimable: bool
    claim_from: datetime | None
    claim_to: datetime | None
    point_type: str | None
    points_price: int | None
    cash_price: Decimal | None
    return_on_refund: bool
    created_at: datetime
    updated_at: datetime


class RestockIn(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"quantity": 5000, "budget": "250000.00", "reason": "三八节追加库存"},
                {"quantity": -200, "reason": "门店活动取消，回收库存"},
            ]
        },
    )

    quantity: int = Field(ge=-100_000_000, le=100_000_000, description="Signed: negative takes stock away")
    budget: Decimal = Field(default=Decimal("0"), max_digits=14, decimal_places=2)
    reason: str = Field(min_length=1, max_length=200)


class CodeImportOut(BaseModel):
    imported: int
    duplicates: list[dict[str, Any]]
    invalid: list[dict[str, Any]]
    already_stored: list[str]
    stock_available: int | None


class IssueIn(BaseModel):
    """Issue one coupon to one member (activity issue by a campaign system, or an operator)."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "template_id": 12,
                    "member_id": 42,
                    "idempotency_key": "spring-2026:member-42",
                    "channel": "activity",
                    "reference": "campaign:spring-2026",
                }
            ]
        },
    )

    template_id: int
    member_id: int
    idempotency_key: ClientKey | None = None
    channel: Literal["activity", "manual", "benefit"] = "activity"
    reference: str | None = Field(default=None, max_length=120, description="Campaign or activity id")


class ClaimIn(BaseModel):
    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"idempotency_key": "claim-7d1f2c9a-42"}]}
    )

    idempotency_key: ClientKey | None = None


class PurchaseIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    idempotency_key: ClientKey | None = None
    payment_reference: str = Field(min_length=1, max_length=64)
    amount: CashPrice


class RefundPurchaseIn(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"reason": "会员申请退券（客服工单 CS-20260318-0042）"}]},
    )

    reason: str = Field(min_length=1, max_length=200)


class CouponOut(BaseModel):
    id: int
    template_id: int
    template_code: str
    name: str
    member_id: int
    code: str
    status: str
    valid_from: datetime
    valid_to: datetime
    issued_at: datetime
    channel: str
    issue_ref: str | None
    discount: Decimal | None
    redeemed_at: datetime | None
    store_id: int | None
    rules: dict[str, Any]


class CouponEventOut(BaseModel):
    id: int
    kind: str
    lock_id: int | None
    amount: Decimal | None
    detail: dict[str, Any] | None
    actor: str
    occurred_at: datetime


class ClaimableOut(BaseModel):
    template: TemplateOut
    claimed: int
    claimed_today: int
    can_claim: bool
    reason: str | None


class CartLineIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    line_id: str = Field(min_length=1, max_length=64)
    sku: str = Field(min_length=1, max_length=64)
    quantity: int = Field(ge=1, le=100_000)
    unit_price: CashPrice
    category_path: str | None = Field(default=None, max_length=200)
    product_brand: str | None = Field(default=None, max_length=80)
    discount: CashPrice = Field(default=Decimal("0"), description="What promotions already took off the line")


_CART_EXAMPLE: dict[str, JsonValue] = {
    "lines": [
        {
            "line_id": "1",
            "sku": "LX-TOP-0001",
            "quantity": 1,
            "unit_price": "399.00",
            "category_path": "apparel/tops",
            "product_brand": "Huiyuan Basics",
        },
        {
            "line_id": "2",
            "sku": "LX-ACC-0107",
            "quantity": 2,
            "unit_price": "59.00",
            "category_path": "accessories/socks",
            "discount": "10.00",
        },
    ],
    "shipping_fee": "0.00",
    "scene": "online",
    "channel": "mini_program",
}


class CartIn(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [_CART_EXAMPLE]})

    lines: list[CartLineIn] = Field(min_length=1, max_length=500)
    shipping_fee: CashPrice = Decimal("0")
    store_id: int | None = None
    scene: Literal["online", "in_store"] = "online"
    channel: str | None = Field(default=None, max_length=32)
    member_discount: bool = Field(
        default=True,
        description="Take the member's benefit-card discount off the lines before coupons "
        "(false when the till already priced it in)",
    )


class EvaluateIn(BaseModel):
    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"member_id": 42, "cart": _CART_EXAMPLE}]}
    )

    member_id: int
    cart: CartIn


class LockIn(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "member_id": 42,
                    "order_ref": "MP-20260315-0001",
                    "cart": _CART_EXAMPLE,
                    "coupon_ids": [1001],
                    "ttl_minutes": 15,
                    "idempotency_key": "lock:MP-20260315-0001",
                }
            ]
        },
    )

    member_id: int
    order_ref: str = Field(min_length=1, max_length=64)
    cart: CartIn
    coupon_ids: list[int] | None = Field(
        default=None, max_length=50, description="The coupons to use; none = the best allowed combination"
    )
    ttl_minutes: int = Field(default=15, ge=1, le=24 * 60)
    idempotency_key: ClientKey | None = None


class RedeemIn(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"payment_reference": "4200001234202603151234567890"}]},
    )

    payment_reference: str | None = Field(default=None, max_length=64)


class ReleaseIn(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"reason": "顾客取消订单"}, {"reason": "整单退货退款"}]},
    )

    reason: str = Field(default="cancelled", min_length=1, max_length=200)


class LockOut(BaseModel):
    id: int
    key: str
    member_id: int
    order_ref: str
    store_id: int | None
    state: str
    expires_at: datetime
    discount: Decimal
    order_amount: Decimal
    allocation: dict[str, Any]
    coupon_ids: list[int]
    redeemed_at: datetime | None
    closed_at: datetime | None
    close_reason: str | None


class PushIn(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"member_ids": [42, 43, 57], "reference": "campaign:spring-2026"},
                {
                    "member_filter": {"tier": "gold", "enrolled_from": "2025-01-01T00:00:00+08:00"},
                    "reference": "campaign:gold-day",
                },
            ]
        },
    )

    member_ids: list[int] | None = Field(default=None, max_length=1_000_000)
    member_filter: dict[str, Any] | None = Field(
        default=None,
        description="Members to issue to, as in the member search: status, tier, tag, enrolled_from/to",
    )
    reference: str | None = Field(default=None, max_length=120)


class IssueRunOut(BaseModel):
    id: int
    template_id: int
    job_id: int | None
    status: str
    requested: int
    issued: int
    skipped: int
    report: list[dict[str, Any]]
    created_at: datetime
    updated_at: datetime
