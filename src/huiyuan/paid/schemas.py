"""Request and response shapes of paid membership: plan categories, plan levels, subscriptions.

Per-field rules live here (pydantic answers 422 with field errors); benefit specs are checked by
their grantor (``benefits.registry.validate_benefit``) in the service. Money is ``Decimal`` with at
most 2 places; responses carry it as strings.
"""

from __future__ import annotations

from datetime import datetime
from decimal import ROUND_HALF_UP, Decimal
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

PlanStatus = Literal["active", "retired"]
ValidityUnit = Literal["month", "day"]
BenefitPeriod = Literal["month", "week"]


def _cents(value: Decimal) -> Decimal:
    # One spelling per amount ("20" → "20.00") so equal requests fingerprint alike.
    return value.quantize(Decimal("0.01"), ROUND_HALF_UP)


Price = Annotated[
    Decimal, Field(ge=0, max_digits=12, decimal_places=2, examples=["199.00"]), AfterValidator(_cents)
]
Multiplier = Annotated[
    Decimal,
    Field(ge=1, le=100, decimal_places=4, examples=["1.5"], description="≥ 1; read by earn rules"),
]
Code = Annotated[str, Field(min_length=1, max_length=40, pattern=r"^[A-Za-z0-9_.-]+$")]
Reference = Annotated[
    str,
    Field(
        min_length=1,
        max_length=64,
        pattern=r"^[A-Za-z0-9_.:/-]+$",
        description="The payment's own reference; unique within the brand, it makes the request idempotent",
    ),
]
BenefitSpec = Annotated[
    dict[str, Any],
    Field(examples=[{"kind": "points", "point_type": "points", "amount": 500}]),
]

_FORBID = ConfigDict(extra="forbid", str_strip_whitespace=True)


# -- plan categories -------------------------------------------------------------------------------


class CategoryIn(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        str_strip_whitespace=True,
        json_schema_extra={
            "examples": [{"code": "family", "name": "家庭会员", "customer_group": "family"}],
        },
    )
    code: Code
    name: str = Field(min_length=1, max_length=120)
    customer_group: str = Field(
        min_length=1,
        max_length=40,
        description="Who the plans are for: working, family, young, drivers, or any group of the brand",
    )
    description: str | None = Field(default=None, max_length=500)


class CategoryUpdate(BaseModel):
    """Partial update: only the fields sent change. A retired category sells nothing new."""

    model_config = ConfigDict(
        extra="forbid", str_strip_whitespace=True, json_schema_extra={"examples": [{"status": "retired"}]}
    )
    name: str | None = Field(default=None, min_length=1, max_length=120)
    customer_group: str | None = Field(default=None, min_length=1, max_length=40)
    description: str | None = Field(default=None, max_length=500)
    status: PlanStatus | None = None


class CategoryOut(BaseModel):
    id: int
    code: str
    name: str
    customer_group: str
    description: str | None
    status: str
    created_at: datetime
    updated_at: datetime


# -- plan levels -----------------------------------------------------------------------------------


class Validity(BaseModel):
    model_config = _FORBID
    unit: ValidityUnit
    count: int = Field(gt=0, le=3660)


class PeriodicBenefits(BaseModel):
    model_config = _FORBID
    period: BenefitPeriod
    benefits: list[BenefitSpec] = Field(min_length=1, max_length=20)


class LevelBenefits(BaseModel):
    model_config = _FORBID
    one_time: list[BenefitSpec] = Field(
        default_factory=list, max_length=20, description="Granted once, when the subscription starts"
    )
    periodic: PeriodicBenefits | None = Field(
        default=None, description="Granted at the start of every month or week of the subscription"
    )
    points_multiplier: Multiplier = Decimal("1")


LEVEL_EXAMPLE: dict[str, Any] = {
    "category_id": 1,
    "code": "family-gold",
    "name": "家庭金卡",
    "rank": 2,
    "price": "199.00",
    "validity": {"unit": "month", "count": 12},
    "cooling_off_days": 7,
    "benefits": {
        "one_time": [{"kind": "points", "point_type": "points", "amount": 500}],
        "periodic": {
            "period": "month",
            "benefits": [{"kind": "points", "point_type": "points", "amount": 50}],
        },
        "points_multiplier": "1.5",
    },
}


class LevelIn(BaseModel):
    model_config = ConfigDict(
        extra="forbid", str_strip_whitespace=True, json_schema_extra={"examples": [LEVEL_EXAMPLE]}
    )
    category_id: int
    code: Code
    name: str = Field(min_length=1, max_length=120)
    rank: int = Field(ge=1, le=1000, description="Higher ranks are upgrades of lower ones")
    price: Price
    validity: Validity
    cooling_off_days: int = Field(default=7, ge=0, le=365)
    benefits: LevelBenefits = Field(default_factory=LevelBenefits)


class LevelUpdate(BaseModel):
    """Partial update: only the fields sent change. Subscriptions already sold keep what was paid;
    a new price or validity applies to later purchases and renewals."""

    model_config = ConfigDict(
        extra="forbid",
        str_strip_whitespace=True,
        json_schema_extra={"examples": [{"price": "219.00"}, {"status": "retired"}]},
    )
    name: str | None = Field(default=None, min_length=1, max_length=120)
    rank: int | None = Field(default=None, ge=1, le=1000)
    price: Price | None = None
    validity: Validity | None = None
    cooling_off_days: int | None = Field(default=None, ge=0, le=365)
    benefits: LevelBenefits | None = None
    status: PlanStatus | None = None


class LevelOut(BaseModel):
    id: int
    category_id: int
    code: str
    name: str
    rank: int
    price: Decimal
    validity: Validity
    cooling_off_days: int
    benefits: LevelBenefits
    status: str
    created_at: datetime
    updated_at: datetime


# -- subscriptions ---------------------------------------------------------------------------------


class BuyIn(BaseModel):
    """Buy a level. Buying the level the member already holds renews it; buying another level while
    one is active is refused (409) — use upgrade."""

    model_config = ConfigDict(
        extra="forbid",
        str_strip_whitespace=True,
        json_schema_extra={
            "examples": [{"level_id": 1, "payment_reference": "WX-4200001234", "amount": "199.00"}]
        },
    )
    level_id: int
    payment_reference: Reference
    amount: Price | None = Field(default=None, description="If sent, must equal the level's price")


class RenewIn(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        str_strip_whitespace=True,
        json_schema_extra={"examples": [{"payment_reference": "WX-4200005678"}]},
    )
    payment_reference: Reference
    amount: Price | None = Field(default=None, description="If sent, must equal the level's price")


class UpgradeIn(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        str_strip_whitespace=True,
        json_schema_extra={"examples": [{"level_id": 2, "payment_reference": "WX-4200009012"}]},
    )
    level_id: int = Field(description="A higher-ranked active level of the same category")
    payment_reference: Reference


class CancelIn(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        str_strip_whitespace=True,
        json_schema_extra={"examples": [{"refund_reference": "RF-20260315-01", "reason": "moved away"}]},
    )
    refund_reference: Reference
    reason: str | None = Field(default=None, max_length=200)


class SubscriptionOut(BaseModel):
    id: int
    member_id: int
    category_id: int
    category_code: str
    level_id: int
    level_code: str
    level_name: str
    status: str = Field(examples=["active"])
    starts_at: datetime
    ends_at: datetime = Field(description="Paid through (exclusive)")
    ended_at: datetime | None = Field(description="When it stopped early or expired")
    amount_paid: Decimal
    credit_applied: Decimal
    refunded_amount: Decimal
    points_multiplier: Decimal
    periods_granted: int
    upgraded_from_id: int | None
    created_at: datetime


class SubscriptionEventOut(BaseModel):
    id: int
    subscription_id: int
    kind: str = Field(examples=["bought"])
    level_id: int
    amount: Decimal | None
    reference: str | None
    reason: str | None
    detail: dict[str, Any]
    occurred_at: datetime


class SubscriptionChangeOut(BaseModel):
    """The subscription after the change, and the history entry that records it."""

    subscription: SubscriptionOut
    event: SubscriptionEventOut


class UpgradeQuoteOut(BaseModel):
    subscription_id: int
    level_id: int
    credit: Decimal = Field(description="floor(value × remaining / term, fen) of the current subscription")
    due: Decimal = Field(description="max(0, new price − credit)")
    starts_at: datetime
    ends_at: datetime


class MemberPaidOut(BaseModel):
    current: SubscriptionOut | None
    subscriptions: list[SubscriptionOut] = Field(description="Newest first")
    events: list[SubscriptionEventOut] = Field(description="Newest first, at most 500")
