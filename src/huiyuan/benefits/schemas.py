"""Request and response shapes of the benefit catalogue, entitlements, verification and bookings.

A definition is one of five shapes chosen by ``kind`` (a discriminated union), so pydantic itself
answers a malformed one with field errors: a ``coupon`` names a template, ``points`` / ``growth`` a
point type and an amount, ``service`` / ``custom`` / ``third_party`` a verification method and usage
limits (``third_party`` also its partner). Money is ``Decimal`` with at most 2 places; responses
carry it as strings. Times of day in limits are the brand's local time.
"""

from __future__ import annotations

from datetime import datetime, time
from decimal import ROUND_HALF_UP, Decimal
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    field_validator,
    model_validator,
)

Kind = Literal["coupon", "points", "growth", "service", "custom", "third_party"]
Method = Literal["scan", "appointment", "manual", "identity_check"]
DefinitionStatus = Literal["draft", "active", "paused", "retired"]
EntitlementStatus = Literal["active", "used_up", "expired", "voided"]
AppointmentStatus = Literal["booked", "cancelled", "verified"]
ServiceType = Literal[
    "parking", "lounge", "free_shipping", "priority_service", "gift_wrap", "wifi", "nursing_room", "other"
]
Offer = Literal["points_swap", "coupon", "code", "service"]


def _cents(value: Decimal) -> Decimal:
    return value.quantize(Decimal("0.01"), ROUND_HALF_UP)


Code = Annotated[str, Field(min_length=1, max_length=40, pattern=r"^[A-Za-z0-9_.-]+$")]
Cost = Annotated[
    Decimal, Field(ge=0, max_digits=12, decimal_places=2, examples=["10.00"]), AfterValidator(_cents)
]
Party = Annotated[
    str,
    Field(
        min_length=1,
        max_length=40,
        pattern=r"^[A-Za-z0-9_.:-]+$",
        examples=["brand"],
        description="A party code: brand, platform, store:<code>, partner:<id> …",
    ),
]
_FORBID = ConfigDict(extra="forbid", str_strip_whitespace=True)


# -- limits ---------------------------------------------------------------------------------------


class PeriodLimit(BaseModel):
    model_config = _FORBID
    period: Literal["day", "week", "month"] = Field(description="Brand-local day, ISO week, month")
    count: int = Field(ge=1, le=10_000, description="Uses per member of this benefit in one period")


class TimeWindow(BaseModel):
    """When the benefit may be used: ISO weekdays (1 = Monday) and local times, end excluded."""

    model_config = _FORBID
    days: list[Annotated[int, Field(ge=1, le=7)]] = Field(
        default_factory=lambda: [1, 2, 3, 4, 5, 6, 7], min_length=1, max_length=7
    )
    start: time = Field(examples=["09:00"])
    end: time = Field(examples=["18:00"])

    @field_validator("days")
    @classmethod
    def _distinct_days(cls, days: list[int]) -> list[int]:
        if len(set(days)) != len(days):
            raise ValueError("each weekday once")
        return sorted(days)

    @model_validator(mode="after")
    def _ordered(self) -> TimeWindow:
        if self.start.tzinfo is not None or self.end.tzinfo is not None:
            raise ValueError("times are brand-local: give them without a time zone")
        if self.end <= self.start:
            raise ValueError("end must be after start (split a window that crosses midnight in two)")
        return self


class UsageLimits(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "uses_per_entitlement": 1,
                    "per_period": [{"period": "day", "count": 1}],
                    "time_windows": [{"days": [1, 2, 3, 4, 5], "start": "09:00", "end": "22:00"}],
                    "duration_minutes": 120,
                }
            ]
        },
    )
    uses_per_entitlement: int | None = Field(
        default=1, ge=1, le=10_000, description="Uses one granted unit gives; null: unlimited while valid"
    )
    per_period: list[PeriodLimit] = Field(default_factory=list, max_length=3)
    time_windows: list[TimeWindow] = Field(default_factory=list, max_length=14)
    duration_minutes: int | None = Field(
        default=None, ge=1, le=10_080, description="What one use covers (free parking hours …)"
    )

    @field_validator("per_period")
    @classmethod
    def _distinct_periods(cls, limits: list[PeriodLimit]) -> list[PeriodLimit]:
        if len({lim.period for lim in limits}) != len(limits):
            raise ValueError("one limit per period")
        return limits


class AppointmentRules(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"slot_minutes": 30, "capacity": 4, "min_notice_minutes": 60, "change_until_minutes": 120}
            ]
        },
    )
    slot_minutes: int = Field(default=60, ge=5, le=1440, description="Slots start on multiples of it")
    capacity: int | None = Field(default=None, ge=1, le=10_000, description="Bookings per slot; null: any")
    min_notice_minutes: int = Field(default=0, ge=0, le=43_200)
    change_until_minutes: int = Field(
        default=0, ge=0, le=43_200, description="A member may change or cancel until this long before"
    )
    horizon_days: int = Field(default=60, ge=1, le=366, description="How far ahead slots can be booked")

    @field_validator("slot_minutes")
    @classmethod
    def _divides_day(cls, minutes: int) -> int:
        if 1440 % minutes:
            raise ValueError("must divide a day (5, 10, 15, 20, 30, 60, 120 … minutes)")
        return minutes


# -- definitions ----------------------------------------------------------------------------------


class _Definition(BaseModel):
    model_config = _FORBID
    code: Code
    name: str = Field(min_length=1, max_length=120)
    description: str | None = Field(default=None, max_length=2000)
    valid_days: int | None = Field(
        default=None, ge=1, le=3660, description="Default validity of a grant; null: until used or voided"
    )
    unit_cost: Cost = Field(default=Decimal("0.00"), description="What one verified use costs (settlement)")
    funded_by: Party = "brand"
    served_by: Party = "brand"
    claimable: bool = Field(default=False, description="Members may claim it themselves")
    claim_limit: int = Field(default=1, ge=1, le=100, description="Claims per member")
    status: Literal["draft", "active"] = "active"


COUPON_EXAMPLE: dict[str, Any] = {
    "code": "MONTHLY-10",
    "name": "每月 10 元券",
    "kind": "coupon",
    "template": "OFF10",
}


class CouponDefinitionIn(_Definition):
    """Granting it issues coupons of a template through the coupons domain."""

    model_config = ConfigDict(
        extra="forbid", str_strip_whitespace=True, json_schema_extra={"examples": [COUPON_EXAMPLE]}
    )
    kind: Literal["coupon"]
    template: Code = Field(description="The code of a coupon template of the brand")


POINTS_EXAMPLE: dict[str, Any] = {
    "code": "BONUS-200",
    "name": "200 积分",
    "kind": "points",
    "point_type": "points",
    "amount": 200,
}


class PointsDefinitionIn(_Definition):
    """Granting it earns points (or growth value) through the points ledger."""

    model_config = ConfigDict(
        extra="forbid", str_strip_whitespace=True, json_schema_extra={"examples": [POINTS_EXAMPLE]}
    )
    kind: Literal["points", "growth"]
    point_type: Code
    amount: int = Field(ge=1, le=10_000_000, description="Points per granted unit")


class _VerifiedDefinition(_Definition):
    verification: Method
    limits: UsageLimits = Field(default_factory=UsageLimits)
    appointment: AppointmentRules | None = Field(
        default=None, description="For the appointment method (defaults apply when left out)"
    )

    @model_validator(mode="after")
    def _appointment_rules(self) -> _VerifiedDefinition:
        if self.verification == "appointment" and self.appointment is None:
            self.appointment = AppointmentRules()
        if self.verification != "appointment" and self.appointment is not None:
            raise ValueError("appointment rules apply only to the appointment method")
        return self


SERVICE_EXAMPLE: dict[str, Any] = {
    "code": "PARK-2H",
    "name": "免费停车 2 小时",
    "kind": "service",
    "service_type": "parking",
    "verification": "scan",
    "limits": {
        "uses_per_entitlement": 1,
        "per_period": [{"period": "day", "count": 1}],
        "time_windows": [{"days": [1, 2, 3, 4, 5, 6, 7], "start": "08:00", "end": "23:00"}],
        "duration_minutes": 120,
    },
    "valid_days": 30,
    "unit_cost": "10.00",
    "funded_by": "brand",
    "served_by": "store:mall-car-park",
}


class ServiceDefinitionIn(_VerifiedDefinition):
    """A member service: parking, lounge, free shipping, priority service …"""

    model_config = ConfigDict(
        extra="forbid", str_strip_whitespace=True, json_schema_extra={"examples": [SERVICE_EXAMPLE]}
    )
    kind: Literal["service"]
    service_type: ServiceType


CUSTOM_EXAMPLE: dict[str, Any] = {
    "code": "SPA-60",
    "name": "贵宾护理 60 分钟",
    "kind": "custom",
    "verification": "appointment",
    "appointment": {"slot_minutes": 60, "capacity": 2, "change_until_minutes": 120},
    "unit_cost": "80.00",
}


class CustomDefinitionIn(_VerifiedDefinition):
    """Anything else the brand offers, verified by scan, appointment, by hand or against an ID."""

    model_config = ConfigDict(
        extra="forbid", str_strip_whitespace=True, json_schema_extra={"examples": [CUSTOM_EXAMPLE]}
    )
    kind: Literal["custom"]


THIRD_PARTY_EXAMPLE: dict[str, Any] = {
    "code": "AIRLINE-SWAP",
    "name": "航空里程兑换",
    "kind": "third_party",
    "partner_id": "airline-x",
    "offer": "points_swap",
    "verification": "manual",
    "unit_cost": "5.00",
    "funded_by": "brand",
    "served_by": "partner:airline-x",
}


class ThirdPartyDefinitionIn(_VerifiedDefinition):
    """A partner's benefit (points swap, its coupons or codes, its service), served by the partner."""

    model_config = ConfigDict(
        extra="forbid", str_strip_whitespace=True, json_schema_extra={"examples": [THIRD_PARTY_EXAMPLE]}
    )
    kind: Literal["third_party"]
    partner_id: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.:-]+$")
    offer: Offer
    reference: str | None = Field(default=None, max_length=120, description="The partner's product id")


DefinitionIn = Annotated[
    CouponDefinitionIn
    | PointsDefinitionIn
    | ServiceDefinitionIn
    | CustomDefinitionIn
    | ThirdPartyDefinitionIn,
    Field(discriminator="kind"),
]


class DefinitionUpdate(BaseModel):
    """Partial update: only the fields sent change. Code, kind, method and what a delegated kind
    grants are fixed (define a new benefit instead). Entitlements already granted keep their uses
    and validity; new limits and costs apply to uses from now on."""

    model_config = ConfigDict(
        extra="forbid",
        str_strip_whitespace=True,
        json_schema_extra={"examples": [{"unit_cost": "12.00"}, {"status": "paused"}]},
    )
    name: str | None = Field(default=None, min_length=1, max_length=120)
    description: str | None = Field(default=None, max_length=2000)
    valid_days: int | None = Field(default=None, ge=1, le=3660)
    unit_cost: Cost | None = None
    funded_by: Party | None = None
    served_by: Party | None = None
    claimable: bool | None = None
    claim_limit: int | None = Field(default=None, ge=1, le=100)
    status: DefinitionStatus | None = None
    limits: UsageLimits | None = None
    appointment: AppointmentRules | None = None


class DefinitionOut(BaseModel):
    id: int
    code: str
    name: str
    description: str | None
    kind: str
    service_type: str | None
    verification: str | None
    params: dict[str, Any]
    limits: dict[str, Any]
    appointment: dict[str, Any] | None
    valid_days: int | None
    unit_cost: Decimal
    funded_by: str
    served_by: str
    partner_id: str | None
    claimable: bool
    claim_limit: int
    status: str
    created_at: datetime
    updated_at: datetime


# -- entitlements ---------------------------------------------------------------------------------

IdempotencyKeyField = Annotated[
    str | None,
    Field(default=None, description="Or the Idempotency-Key header; a retry returns the first result"),
]


class GrantIn(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        str_strip_whitespace=True,
        json_schema_extra={
            "examples": [
                {"benefit": "PARK-2H", "quantity": 2, "valid_days": 30, "idempotency_key": "grant-0001"}
            ]
        },
    )
    benefit: Code = Field(description="The code of a catalogue benefit")
    quantity: int = Field(default=1, ge=1, le=1000)
    valid_days: int | None = Field(default=None, ge=1, le=3660)
    source_type: Literal["operator", "campaign"] = "operator"
    source_id: str | None = Field(default=None, max_length=64)
    idempotency_key: IdempotencyKeyField = None


class ClaimIn(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        str_strip_whitespace=True,
        json_schema_extra={"examples": [{"benefit": "WIFI-DAY", "idempotency_key": "claim-0001"}]},
    )
    benefit: Code
    idempotency_key: IdempotencyKeyField = None


class MemberBenefitOut(BaseModel):
    id: int
    member_id: int
    definition_id: int
    benefit: str = Field(description="The definition's code")
    name: str
    kind: str
    verification: str | None
    quantity: int | None = Field(description="Uses granted; null: unlimited while valid")
    remaining: int | None
    reserved: int = Field(description="Uses held by open appointments")
    available: int | None = Field(description="remaining − reserved")
    used: int
    valid_from: datetime
    valid_to: datetime | None
    source_type: str
    source_id: str
    status: str = Field(examples=["active"], description="expired as soon as valid_to has passed")
    limits: dict[str, Any]
    created_at: datetime


class GrantOut(BaseModel):
    """A catalogue grant: an entitlement, or what the delegated ledger answered (coupons, points)."""

    benefit: str
    kind: str
    member_id: int
    entitlement: MemberBenefitOut | None
    delegated: dict[str, Any] | None


class BenefitEventOut(BaseModel):
    id: int
    definition_id: int
    member_benefit_id: int | None
    member_id: int | None
    kind: str = Field(examples=["verified"])
    quantity: int | None
    detail: dict[str, Any]
    actor: str
    occurred_at: datetime


class VoidIn(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        str_strip_whitespace=True,
        json_schema_extra={"examples": [{"reason": "granted twice"}]},
    )
    reason: str = Field(min_length=1, max_length=200)


# -- verification ---------------------------------------------------------------------------------


class ScanCodeOut(BaseModel):
    member_benefit_id: int
    token: str = Field(description="Show it as a QR code; it works once, until expires_at")
    expires_at: datetime


class ScanVerifyIn(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        str_strip_whitespace=True,
        json_schema_extra={"examples": [{"code": "eyJiIjoxLCJjIjo0Miwibi…", "store_id": 1, "minutes": 90}]},
    )
    code: str = Field(min_length=8, max_length=500, description="The scanned token")
    store_id: int | None = None
    minutes: int | None = Field(default=None, ge=1, le=10_080, description="Time used (parking …)")
    note: str | None = Field(default=None, max_length=200)


class DeskVerifyIn(BaseModel):
    """Manual verification needs a ``note``; identity check an ``id_reference`` (only its last four
    characters are kept); a partner may send its confirmation as ``reference``."""

    model_config = ConfigDict(
        extra="forbid",
        str_strip_whitespace=True,
        json_schema_extra={
            "examples": [
                {"note": "lounge, 2 guests", "store_id": 1},
                {"id_reference": "310101200001011234", "note": "student card checked"},
            ]
        },
    )
    note: str | None = Field(default=None, max_length=200)
    id_reference: str | None = Field(default=None, min_length=4, max_length=40)
    reference: str | None = Field(default=None, max_length=120)
    store_id: int | None = None
    minutes: int | None = Field(default=None, ge=1, le=10_080)


class UsageOut(BaseModel):
    id: int
    member_benefit_id: int
    definition_id: int
    member_id: int
    method: str
    used_at: datetime
    minutes: int | None
    store_id: int | None
    reference: str | None
    note: str | None
    appointment_id: int | None
    unit_cost: Decimal
    funded_by: str
    served_by: str
    verified_by: str


class VerifyOut(BaseModel):
    usage: UsageOut
    entitlement: MemberBenefitOut


# -- appointments ---------------------------------------------------------------------------------


class BookIn(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        str_strip_whitespace=True,
        json_schema_extra={
            "examples": [{"starts_at": "2026-03-10T14:00:00+08:00", "store_id": 1, "idempotency_key": "bk-1"}]
        },
    )
    starts_at: AwareDatetime = Field(description="The start of a slot, with a time zone")
    store_id: int | None = None
    note: str | None = Field(default=None, max_length=200)
    idempotency_key: IdempotencyKeyField = None


class RebookIn(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        str_strip_whitespace=True,
        json_schema_extra={"examples": [{"starts_at": "2026-03-11T10:00:00+08:00"}]},
    )
    starts_at: AwareDatetime
    store_id: int | None = None


class CancelBookingIn(BaseModel):
    model_config = ConfigDict(
        extra="forbid", str_strip_whitespace=True, json_schema_extra={"examples": [{"reason": "travelling"}]}
    )
    reason: str | None = Field(default=None, max_length=200)


class AppointmentVerifyIn(BaseModel):
    model_config = ConfigDict(
        extra="forbid", str_strip_whitespace=True, json_schema_extra={"examples": [{"store_id": 1}]}
    )
    store_id: int | None = None
    note: str | None = Field(default=None, max_length=200)


class AppointmentOut(BaseModel):
    id: int
    member_benefit_id: int
    definition_id: int
    member_id: int
    store_id: int | None
    starts_at: datetime
    ends_at: datetime
    status: str = Field(examples=["booked"])
    note: str | None
    changes: int
    booked_at: datetime
    closed_at: datetime | None
