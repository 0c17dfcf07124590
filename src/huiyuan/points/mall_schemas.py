"""Request and response shapes of the points mall API (gifts, stock, codes, redemptions).

Per-field rules live here (pydantic answers 422 with field errors); rules across fields and against
the database (sale window order, unknown point types, limits, stock) live in ``points.mall``. Money
is ``Decimal`` with at most 2 places.
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import ROUND_HALF_UP, Decimal
from typing import Annotated, Literal

from pydantic import AfterValidator, AwareDatetime, BaseModel, ConfigDict, Field, JsonValue

GiftKind = Literal["physical", "virtual", "third_party_code"]
GiftStatus = Literal["draft", "active", "paused", "retired"]
RedemptionStatus = Literal["awaiting_payment", "completed", "cancelled", "expired"]
PaymentMode = Literal["points", "points_cash"]


def _cents(value: Decimal) -> Decimal:
    return value.quantize(Decimal("0.01"), ROUND_HALF_UP)


def _utc(value: datetime) -> datetime:
    return value.astimezone(UTC)


CashPrice = Annotated[
    Decimal, Field(ge=0, max_digits=12, decimal_places=2, examples=["9.90"]), AfterValidator(_cents)
]
UTCTime = Annotated[AwareDatetime, AfterValidator(_utc)]
GiftCode = Annotated[str, Field(min_length=1, max_length=40, pattern=r"^[A-Za-z0-9_.-]+$")]
ClientKey = Annotated[
    str,
    Field(
        min_length=4,
        max_length=150,
        pattern=r"^[A-Za-z0-9_.:-]+$",
        description="Idempotency key (or send the Idempotency-Key header); a retry returns the first result",
    ),
]
Limit = Annotated[int, Field(ge=1, le=100_000)]

_GIFT_EXAMPLE: dict[str, JsonValue] = {
    "code": "MUG-2026",
    "name": "会员马克杯",
    "description": "限量款",
    "kind": "physical",
    "point_type": "points",
    "points_price": 1200,
    "cash_price": "9.90",
    "status": "active",
    "sale_from": "2026-03-01T00:00:00+08:00",
    "sale_to": "2026-04-01T00:00:00+08:00",
    "limit_per_member": 2,
    "limit_per_member_per_day": 1,
    "payment_minutes": 15,
    "stock": 500,
}


class GiftIn(BaseModel):
    model_config = ConfigDict(
        extra="forbid", str_strip_whitespace=True, json_schema_extra={"examples": [_GIFT_EXAMPLE]}
    )
    code: GiftCode
    name: str = Field(min_length=1, max_length=120)
    description: str | None = Field(default=None, max_length=2000)
    kind: GiftKind
    point_type: str = Field(min_length=1, max_length=32, description="Code of a spendable point type")
    points_price: int = Field(ge=1, le=100_000_000)
    cash_price: CashPrice = Field(default=Decimal("0.00"), description="0 = points only; else points + cash")
    status: GiftStatus = "active"
    sale_from: UTCTime | None = None
    sale_to: UTCTime | None = Field(default=None, description="Exclusive end of the sale window")
    limit_per_member: Limit | None = Field(default=None, description="Units one member may redeem in all")
    limit_per_member_per_day: Limit | None = Field(
        default=None, description="Units one member may redeem per brand-local day"
    )
    payment_minutes: int = Field(
        default=15, ge=1, le=1440, description="Time to pay a points + cash redemption"
    )
    stock: int = Field(
        default=0,
        ge=0,
        le=10_000_000,
        description="Opening stock; third-party-code gifts get stock by code import",
    )


class GiftUpdate(BaseModel):
    """Partial update: only the fields sent change. Open redemptions keep the price they were made at."""

    model_config = ConfigDict(
        extra="forbid",
        str_strip_whitespace=True,
        json_schema_extra={"examples": [{"points_price": 999, "status": "paused"}]},
    )
    name: str | None = Field(default=None, min_length=1, max_length=120)
    description: str | None = Field(default=None, max_length=2000)
    status: GiftStatus | None = None
    points_price: int | None = Field(default=None, ge=1, le=100_000_000)
    cash_price: CashPrice | None = None
    sale_from: UTCTime | None = None
    sale_to: UTCTime | None = None
    limit_per_member: Limit | None = None
    limit_per_member_per_day: Limit | None = None
    payment_minutes: int | None = Field(default=None, ge=1, le=1440)


class GiftOut(BaseModel):
    id: int
    code: str
    name: str
    description: str | None
    kind: GiftKind
    point_type: str
    points_price: int
    cash_price: Decimal
    payment_mode: PaymentMode
    status: GiftStatus
    sale_from: datetime | None
    sale_to: datetime | None
    limit_per_member: int | None
    limit_per_member_per_day: int | None
    payment_minutes: int
    stock_available: int
    created_at: datetime
    updated_at: datetime


class MemberGiftOut(BaseModel):
    """A gift as a member sees it in the mall."""

    id: int
    code: str
    name: str
    description: str | None
    kind: GiftKind
    point_type: str
    points_price: int
    cash_price: Decimal
    payment_mode: PaymentMode
    sale_to: datetime | None
    limit_per_member: int | None
    limit_per_member_per_day: int | None
    in_stock: bool


class RestockIn(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        str_strip_whitespace=True,
        json_schema_extra={
            "examples": [{"quantity": 200, "reason": "第二批到货"}, {"quantity": -3, "reason": "破损"}]
        },
    )
    quantity: int = Field(
        ge=-10_000_000, le=10_000_000, description="> 0 adds stock (restock); < 0 writes stock off (adjust)"
    )
    reason: str | None = Field(default=None, max_length=200)


class StockOut(BaseModel):
    gift_id: int
    kind: str = Field(description="restock or adjust")
    quantity: int
    stock_available: int


class CodeImportError(BaseModel):
    line: int
    message: str


class CodeImportOut(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "gift_id": 12,
                    "added": 498,
                    "duplicates": 2,
                    "invalid": 1,
                    "errors": [{"line": 17, "message": "a code has 1–200 visible characters, no spaces"}],
                    "stock_available": 498,
                }
            ]
        }
    )
    gift_id: int
    added: int
    duplicates: int = Field(description="Codes already on the gift, or repeated in the file")
    invalid: int
    errors: list[CodeImportError] = Field(description="The first 100 invalid lines")
    stock_available: int


class RedeemIn(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        str_strip_whitespace=True,
        json_schema_extra={"examples": [{"gift_id": 12, "quantity": 1, "idempotency_key": "mini-7f3a9c21"}]},
    )
    gift_id: int = Field(ge=1)
    quantity: int = Field(default=1, ge=1, le=99)
    idempotency_key: ClientKey | None = None


class PayIn(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        str_strip_whitespace=True,
        json_schema_extra={"examples": [{"payment_reference": "WX4200001234", "amount": "9.90"}]},
    )
    payment_reference: str = Field(min_length=1, max_length=64)
    amount: CashPrice | None = Field(default=None, description="When sent, must equal the cash amount due")


class CancelIn(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        str_strip_whitespace=True,
        json_schema_extra={"examples": [{"reason": "会员申请退货"}]},
    )
    reason: str = Field(min_length=1, max_length=200)


class RedemptionOut(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "id": 301,
                    "gift_id": 12,
                    "gift_code": "MUG-2026",
                    "gift_name": "会员马克杯",
                    "member_id": 88,
                    "quantity": 1,
                    "point_type": "points",
                    "points": 1200,
                    "cash_amount": "9.90",
                    "status": "awaiting_payment",
                    "codes": [],
                    "pay_by": "2026-03-02T08:15:00Z",
                    "payment_reference": None,
                    "paid_at": None,
                    "cancelled_at": None,
                    "cancel_reason": None,
                    "points_restored": 0,
                    "stock_returned": 0,
                    "channel": "staff",
                    "created_at": "2026-03-02T08:00:00Z",
                }
            ]
        }
    )
    id: int
    gift_id: int
    gift_code: str
    gift_name: str
    member_id: int
    quantity: int
    point_type: str
    points: int
    cash_amount: Decimal
    status: RedemptionStatus = Field(
        description="awaiting_payment (points reserved until pay_by), completed, cancelled or expired"
    )
    codes: list[str] = Field(description="Third-party codes, shown once the redemption is paid")
    pay_by: datetime | None
    payment_reference: str | None
    paid_at: datetime | None
    cancelled_at: datetime | None
    cancel_reason: str | None
    points_restored: int
    stock_returned: int
    channel: Literal["staff", "member"]
    created_at: datetime
