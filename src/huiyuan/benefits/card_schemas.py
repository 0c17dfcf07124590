"""Request and response shapes of benefit cards (权益卡): products, purchases, refunds, perks.

Per-field rules live here; each line's benefit spec is checked by its grantor
(``benefits.registry.validate_benefit``) and its worth resolved in the service.
"""

from __future__ import annotations

from datetime import datetime
from decimal import ROUND_HALF_UP, Decimal
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, AwareDatetime, BaseModel, ConfigDict, Field, model_validator

from huiyuan.benefits.schemas import Code

Schedule = Literal["once", "week", "month"]
Activation = Literal["immediate", "first_use"]
ProductStatus = Literal["draft", "active", "retired"]
CardStatus = Literal["pending", "active", "expired", "refunded"]


def _cents(value: Decimal) -> Decimal:
    return value.quantize(Decimal("0.01"), ROUND_HALF_UP)


Price = Annotated[
    Decimal, Field(ge=0, max_digits=12, decimal_places=2, examples=["299.00"]), AfterValidator(_cents)
]
Reference = Annotated[
    str,
    Field(
        min_length=1,
        max_length=64,
        pattern=r"^[A-Za-z0-9_.:/-]+$",
        description="The payment's reference; unique within the brand, it makes the request idempotent",
    ),
]
_FORBID = ConfigDict(extra="forbid", str_strip_whitespace=True)


class CardLine(BaseModel):
    model_config = _FORBID
    benefit: dict[str, Any] = Field(
        examples=[{"kind": "benefit", "benefit": "PARK-2H", "quantity": 2, "valid_days": 31}],
        description="A benefit spec of any registered kind (benefit, coupon, points …)",
    )
    every: Schedule = Field(description="once: at activation; week / month: at the start of each period")
    value: Price | None = Field(
        default=None,
        description="What one issue is worth (refunds). Derived for catalogue benefits with a finite "
        "number of uses (unit cost × uses); required otherwise",
    )


class CardPerks(BaseModel):
    """Perks stated as data for the checkout and earning code to read (``cards.card_perks``)."""

    model_config = _FORBID
    discount_percent: Decimal | None = Field(default=None, gt=0, le=100, decimal_places=2, examples=["5"])
    points_multiplier: Decimal | None = Field(default=None, ge=1, le=100, decimal_places=4, examples=["1.5"])
    free_shipping: bool = False


class PurchaseRules(BaseModel):
    model_config = _FORBID
    eligible_tiers: list[Code] = Field(
        default_factory=list, max_length=20, description="Tier level codes that may buy; empty: everyone"
    )
    limit_per_member: int | None = Field(default=None, ge=1, le=1000, description="Cards not refunded")
    sale_from: AwareDatetime | None = None
    sale_to: AwareDatetime | None = None

    @model_validator(mode="after")
    def _window(self) -> PurchaseRules:
        if self.sale_from is not None and self.sale_to is not None and self.sale_to <= self.sale_from:
            raise ValueError("sale_to must be after sale_from")
        return self


PRODUCT_EXAMPLE: dict[str, Any] = {
    "code": "PARK-YEAR",
    "name": "停车年卡",
    "price": "299.00",
    "validity_months": 12,
    "activation": "immediate",
    "lines": [
        {
            "benefit": {"kind": "benefit", "benefit": "PARK-2H", "quantity": 2, "valid_days": 31},
            "every": "month",
        },
        {"benefit": {"kind": "coupon", "template": "WELCOME-60"}, "every": "once", "value": "60.00"},
    ],
    "perks": {"discount_percent": "5", "points_multiplier": "1.5"},
    "rules": {"eligible_tiers": ["silver", "gold"], "limit_per_member": 1},
}


class CardProductIn(BaseModel):
    model_config = ConfigDict(
        extra="forbid", str_strip_whitespace=True, json_schema_extra={"examples": [PRODUCT_EXAMPLE]}
    )
    code: Code
    name: str = Field(min_length=1, max_length=120)
    description: str | None = Field(default=None, max_length=2000)
    price: Price
    validity_months: int = Field(ge=1, le=120)
    activation: Activation = Field(
        default="immediate", description="first_use: the term starts when activated"
    )
    lines: list[CardLine] = Field(min_length=1, max_length=20)
    perks: CardPerks = Field(default_factory=CardPerks)
    rules: PurchaseRules = Field(default_factory=PurchaseRules)
    status: Literal["draft", "active"] = "active"


class CardProductUpdate(BaseModel):
    """Partial update: only the fields sent change. Cards already sold keep what they were sold with."""

    model_config = ConfigDict(
        extra="forbid",
        str_strip_whitespace=True,
        json_schema_extra={"examples": [{"price": "329.00"}, {"status": "retired"}]},
    )
    name: str | None = Field(default=None, min_length=1, max_length=120)
    description: str | None = Field(default=None, max_length=2000)
    price: Price | None = None
    validity_months: int | None = Field(default=None, ge=1, le=120)
    activation: Activation | None = None
    lines: list[CardLine] | None = Field(default=None, min_length=1, max_length=20)
    perks: CardPerks | None = None
    rules: PurchaseRules | None = None
    status: ProductStatus | None = None


class CardProductOut(BaseModel):
    id: int
    code: str
    name: str
    description: str | None
    price: Decimal
    validity_months: int
    activation: str
    lines: list[dict[str, Any]]
    perks: dict[str, Any]
    rules: PurchaseRules
    status: str
    scheduled_value: Decimal = Field(description="What every issue over a full term is worth (refund basis)")
    created_at: datetime
    updated_at: datetime


class BuyCardIn(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        str_strip_whitespace=True,
        json_schema_extra={
            "examples": [{"product_id": 1, "payment_reference": "WX-4200001234", "amount": "299.00"}]
        },
    )
    product_id: int
    payment_reference: Reference
    amount: Price | None = Field(default=None, description="If sent, must equal the price")


class RefundCardIn(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        str_strip_whitespace=True,
        json_schema_extra={"examples": [{"refund_reference": "RF-20260315-01", "reason": "moved away"}]},
    )
    refund_reference: Reference
    reason: str | None = Field(default=None, max_length=200)


class CardIssueOut(BaseModel):
    line: int
    period: int
    due_at: datetime
    issued_at: datetime
    value: Decimal
    member_benefit_id: int | None
    result: dict[str, Any]


class MemberCardOut(BaseModel):
    id: int
    member_id: int
    product_id: int
    product_code: str
    status: str = Field(examples=["active"])
    price_paid: Decimal
    validity_months: int
    lines: list[dict[str, Any]]
    perks: dict[str, Any]
    payment_reference: str
    bought_at: datetime
    activated_at: datetime | None
    expires_at: datetime | None
    refund_reference: str | None
    refunded_at: datetime | None
    refunded_amount: Decimal | None
    refund_detail: dict[str, Any] | None


class MemberCardDetailOut(MemberCardOut):
    issues: list[CardIssueOut]


class RefundQuoteOut(BaseModel):
    card_id: int
    rule: str = Field(description="not_activated (everything back), value (see docs) or time (no values)")
    price_paid: Decimal
    scheduled_value: Decimal
    future_value: Decimal = Field(description="Scheduled issues not made yet")
    returned_value: Decimal = Field(description="Issued but unused uses that the refund voids")
    delivered_value: Decimal = Field(description="What the member received and keeps or used")
    amount: Decimal = Field(description="floor_fen(price × (future + returned) ÷ scheduled)")
    voids: list[int] = Field(description="Entitlements the refund voids")


class CardPerkOut(BaseModel):
    card_id: int
    product_code: str
    expires_at: datetime
    discount_percent: Decimal | None
    points_multiplier: Decimal | None
    free_shipping: bool


class MemberPerksOut(BaseModel):
    """The member's active card perks, and the best of each (cards do not add up)."""

    member_id: int
    cards: list[CardPerkOut]
    discount_percent: Decimal | None
    points_multiplier: Decimal | None
    free_shipping: bool
