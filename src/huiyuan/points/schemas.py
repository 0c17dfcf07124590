"""Request and response shapes of the points API: point types, earn rules, member balances, lots and
entries, operator and system writes, checkout, liability and expiry outlooks.

Per-field rules live here (pydantic answers 422 with field errors). The JSON documents a brand stores
(``expiry_policy``, an earn rule's ``definition``) arrive as plain objects and are validated by the
service with ``points.expiry_policy`` and ``points.rules``, so their error paths read
``expiry_policy.months`` or ``definition.formula.per``. Point amounts are integers; money (fair value,
cart amounts, cash value, liability) is ``Decimal`` and leaves as strings.
"""

from __future__ import annotations

import datetime as dt
from datetime import UTC, datetime
from decimal import ROUND_HALF_UP, Decimal
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, AwareDatetime, BaseModel, ConfigDict, Field

PointKind = Literal["spendable", "growth", "annual"]
PointTypeStatus = Literal["active", "retired"]
RuleStatus = Literal["active", "paused", "retired"]
LotState = Literal["pending", "active", "frozen", "expired"]
EntryKind = Literal[
    "earn",
    "activate",
    "spend",
    "reserve",
    "confirm",
    "release",
    "expire",
    "carry",
    "freeze",
    "unfreeze",
    "adjust",
    "reverse",
    "restore",
    "transfer_out",
    "transfer_in",
]

MAX_POINTS = 1_000_000_000


def _utc(value: datetime) -> datetime:
    return value.astimezone(UTC)


def _cents(value: Decimal) -> Decimal:
    return value.quantize(Decimal("0.01"), ROUND_HALF_UP)


UTCTime = Annotated[AwareDatetime, AfterValidator(_utc)]
TypeCode = Annotated[
    str, Field(min_length=1, max_length=32, pattern=r"^[A-Za-z0-9_.-]+$", examples=["points"])
]
RuleCode = Annotated[str, Field(min_length=1, max_length=40, pattern=r"^[A-Za-z0-9_.-]+$")]
StoreCode = Annotated[str, Field(min_length=1, max_length=40, pattern=r"^[A-Za-z0-9_.-]+$")]
OrderRef = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.:/-]+$")]
Points = Annotated[int, Field(gt=0, le=MAX_POINTS)]
FairValue = Annotated[Decimal, Field(ge=0, max_digits=12, decimal_places=6, examples=["0.01"])]
PayRatio = Annotated[Decimal, Field(ge=0, le=1, max_digits=5, decimal_places=4, examples=["0.5"])]
FundedBy = Annotated[
    str,
    Field(
        pattern=r"^(platform|brand|store|merchant:[a-z0-9][a-z0-9_.-]{0,30})$",  # the lot column holds 40
        description="Who pays for the points: platform, brand, store or merchant:<code>",
    ),
]
# Also the name of a checkout reservation in URLs, hence no slash.
IdempotencyKeyField = Annotated[
    str,
    Field(
        min_length=4,
        max_length=180,
        pattern=r"^[A-Za-z0-9_.:-]+$",
        description="Send the same key when retrying to get the first result (or the Idempotency-Key header)",
    ),
]
Reason = Annotated[str, Field(min_length=1, max_length=200)]

_FORBID = ConfigDict(extra="forbid", str_strip_whitespace=True)


# -- point types -----------------------------------------------------------------------------------


class PointTypeIn(BaseModel):
    """A kind of points. ``expiry_policy`` is one of ``never``, ``relative`` (days, months or years,
    optionally rounded up) or ``yearly_clearing``; ``spendable`` defaults to false for growth value."""

    model_config = ConfigDict(
        extra="forbid",
        str_strip_whitespace=True,
        json_schema_extra={
            "examples": [
                {
                    "code": "points",
                    "name": "积分",
                    "kind": "spendable",
                    "fair_value": "0.01",
                    "expiry_policy": {"kind": "relative", "months": 12, "round_to": "end_of_month"},
                    "pending_days": 7,
                    "points_per_yuan": 100,
                    "max_pay_ratio": "0.5",
                },
                {
                    "code": "growth",
                    "name": "成长值",
                    "kind": "growth",
                    "fair_value": "0",
                    "expiry_policy": {"kind": "never"},
                },
            ]
        },
    )
    code: TypeCode
    name: str = Field(min_length=1, max_length=80)
    kind: PointKind
    fair_value: FairValue = Decimal("0.01")
    expiry_policy: dict[str, Any] = Field(default_factory=lambda: {"kind": "never"})
    pending_days: int = Field(default=0, ge=0, le=365, description="Return window of order points")
    spendable: bool | None = None
    transferable: bool = False
    points_per_yuan: int = Field(default=100, gt=0, le=1_000_000)
    max_pay_ratio: PayRatio = Decimal("1")
    reservation_minutes: int = Field(default=15, ge=1, le=1440)


class PointTypeUpdate(BaseModel):
    """Partial update: only the fields sent change. Lots already granted keep their expiry and value."""

    model_config = ConfigDict(
        extra="forbid",
        str_strip_whitespace=True,
        json_schema_extra={"examples": [{"max_pay_ratio": "0.3"}, {"status": "retired"}]},
    )
    name: str | None = Field(default=None, min_length=1, max_length=80)
    fair_value: FairValue | None = None
    expiry_policy: dict[str, Any] | None = None
    pending_days: int | None = Field(default=None, ge=0, le=365)
    spendable: bool | None = None
    transferable: bool | None = None
    points_per_yuan: int | None = Field(default=None, gt=0, le=1_000_000)
    max_pay_ratio: PayRatio | None = None
    reservation_minutes: int | None = Field(default=None, ge=1, le=1440)
    status: PointTypeStatus | None = None


class PointTypeOut(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "id": 1,
                    "code": "points",
                    "name": "积分",
                    "kind": "spendable",
                    "fair_value": "0.010000",
                    "expiry_policy": {"kind": "relative", "months": 12, "round_to": "end_of_month"},
                    "pending_days": 7,
                    "spendable": True,
                    "transferable": False,
                    "points_per_yuan": 100,
                    "max_pay_ratio": "0.5000",
                    "reservation_minutes": 15,
                    "status": "active",
                    "created_at": "2026-03-01T02:00:00Z",
                    "updated_at": "2026-03-01T02:00:00Z",
                }
            ]
        }
    )
    id: int
    code: str
    name: str
    kind: str
    fair_value: Decimal
    expiry_policy: dict[str, Any]
    pending_days: int
    spendable: bool
    transferable: bool
    points_per_yuan: int
    max_pay_ratio: Decimal
    reservation_minutes: int
    status: str
    created_at: datetime
    updated_at: datetime


# -- earn rules ------------------------------------------------------------------------------------

RULE_EXAMPLE: dict[str, Any] = {
    "code": "base-earn",
    "name": "消费积分 每10元1分",
    "definition": {
        "trigger": {"kind": "order"},
        "point_type": "points",
        "conditions": [{"kind": "amount", "min": "20.00"}],
        "formula": {"kind": "per_amount", "per": "10.00", "points": 1},
        "caps": {"per_order": 5000},
    },
    "valid_from": "2026-01-01T00:00:00+08:00",
}


class EarnRuleIn(BaseModel):
    """An earn rule; ``definition`` follows ``huiyuan.points.rule_schema.RuleDefinition``."""

    model_config = ConfigDict(
        extra="forbid",
        str_strip_whitespace=True,
        json_schema_extra={
            "examples": [
                RULE_EXAMPLE,
                {
                    "code": "daily-check-in",
                    "name": "每日签到",
                    "definition": {
                        "trigger": {"kind": "action", "action": "check_in"},
                        "point_type": "points",
                        "formula": {"kind": "fixed", "points": 5},
                        "caps": {"per_day": 5},
                    },
                },
            ]
        },
    )
    code: RuleCode
    name: str = Field(min_length=1, max_length=120)
    definition: dict[str, Any]
    valid_from: UTCTime | None = None
    valid_to: UTCTime | None = None


class EarnRuleUpdate(BaseModel):
    """Partial update; send ``valid_to: null`` to clear an end date. Retired rules cannot change."""

    model_config = ConfigDict(
        extra="forbid",
        str_strip_whitespace=True,
        json_schema_extra={
            "examples": [{"name": "消费积分（春季）", "valid_to": "2026-06-01T00:00:00+08:00"}]
        },
    )
    name: str | None = Field(default=None, min_length=1, max_length=120)
    definition: dict[str, Any] | None = None
    valid_from: UTCTime | None = None
    valid_to: UTCTime | None = None


class EarnRuleStatusIn(BaseModel):
    """Pause, resume or retire a rule. Retiring is final."""

    model_config = ConfigDict(
        extra="forbid",
        str_strip_whitespace=True,
        json_schema_extra={"examples": [{"status": "paused", "reason": "budget review"}]},
    )
    status: RuleStatus
    reason: str | None = Field(default=None, max_length=200)


class EarnRuleOut(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "id": 3,
                    "code": "base-earn",
                    "name": "消费积分 每10元1分",
                    "trigger": "order",
                    "point_type": "points",
                    "definition": RULE_EXAMPLE["definition"],
                    "priority": 0,
                    "status": "active",
                    "valid_from": "2025-12-31T16:00:00Z",
                    "valid_to": None,
                    "granted_total": 1250,
                    "created_at": "2026-03-01T02:00:00Z",
                    "updated_at": "2026-03-01T02:00:00Z",
                }
            ]
        }
    )
    id: int
    code: str
    name: str
    trigger: str = Field(description='"order" or the action name')
    point_type: str
    definition: dict[str, Any]
    priority: int
    status: str
    valid_from: datetime | None
    valid_to: datetime | None
    granted_total: int
    created_at: datetime
    updated_at: datetime


# -- balances, lots, entries -----------------------------------------------------------------------


class BalanceOut(BaseModel):
    available: int
    pending: int
    frozen: int
    reserved: int
    debt: int


class PointBalanceOut(BaseModel):
    point_type: str
    name: str
    kind: str
    available: int = Field(description="Spendable now (active lots not past their expiry)")
    pending: int = Field(description="In the return window")
    frozen: int
    reserved: int = Field(description="Held by open checkout reservations")
    debt: int = Field(description="Refunded points already spent; later earnings repay it")
    expiring_30d: int = Field(description="Available points whose last usable day is within 30 days")
    expiring_90d: int
    earned_total: int
    spent_total: int
    expired_total: int


class PointsSummaryOut(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "member_id": 42,
                    "as_of": "2026-03-15T06:30:00Z",
                    "balances": [
                        {
                            "point_type": "points",
                            "name": "积分",
                            "kind": "spendable",
                            "available": 1200,
                            "pending": 300,
                            "frozen": 0,
                            "reserved": 100,
                            "debt": 0,
                            "expiring_30d": 200,
                            "expiring_90d": 700,
                            "earned_total": 2000,
                            "spent_total": 500,
                            "expired_total": 0,
                        }
                    ],
                }
            ]
        }
    )
    member_id: int
    as_of: datetime
    balances: list[PointBalanceOut]


class EntryOut(BaseModel):
    """A ledger line as the member sees it."""

    id: int
    point_type: str
    kind: str
    amount: int = Field(description="Change of the balance (points in lots)")
    d_available: int
    d_pending: int
    d_frozen: int
    d_reserved: int
    d_debt: int
    reason: str | None
    source_type: str | None
    source_id: str | None
    store_id: int | None
    occurred_at: datetime


class StaffEntryOut(EntryOut):
    operation_id: int
    reservation_id: int | None
    reverses_entry_id: int | None
    actor: str


class LotOut(BaseModel):
    """A grant of points with what remains of it and until when it may be used."""

    id: int
    point_type: str
    amount: int
    remaining: int
    state: str
    earned_at: datetime
    activates_at: datetime | None
    expires_at: datetime | None = Field(description="Usable while now < expires_at (grace included)")
    nominal_expires_at: datetime | None
    source_type: str
    source_id: str | None
    store_id: int | None


class StaffLotOut(LotOut):
    funded_by: str
    unit_value: Decimal
    rule_id: int | None
    frozen_reason: str | None


# -- writes ----------------------------------------------------------------------------------------


class _Keyed(BaseModel):
    model_config = _FORBID
    idempotency_key: IdempotencyKeyField | None = None


class GrantIn(_Keyed):
    """A manual earn: a new lot, active at once (no return window)."""

    model_config = ConfigDict(
        extra="forbid",
        str_strip_whitespace=True,
        json_schema_extra={
            "examples": [
                {
                    "idempotency_key": "grant-20260315-0001",
                    "point_type": "points",
                    "amount": 500,
                    "reason": "开业活动补发",
                    "funded_by": "store",
                    "store": "sh-001",
                }
            ]
        },
    )
    point_type: TypeCode
    amount: Points
    reason: Reason
    funded_by: FundedBy = "brand"
    store: StoreCode | None = None


class AdjustIn(_Keyed):
    """An operator's correction: positive adds a lot, negative draws like a spend. A reason is required."""

    model_config = ConfigDict(
        extra="forbid",
        str_strip_whitespace=True,
        json_schema_extra={
            "examples": [
                {"idempotency_key": "adj-7781", "point_type": "points", "amount": -200, "reason": "重复发放"}
            ]
        },
    )
    point_type: TypeCode
    amount: int = Field(ge=-MAX_POINTS, le=MAX_POINTS, description="Non-zero; negative takes points away")
    reason: Reason


class FreezeIn(_Keyed):
    """Freeze (or unfreeze) the listed lots, or every lot of the point type when ``lot_ids`` is omitted."""

    model_config = ConfigDict(
        extra="forbid",
        str_strip_whitespace=True,
        json_schema_extra={
            "examples": [{"idempotency_key": "frz-0001", "point_type": "points", "reason": "风控复核"}]
        },
    )
    point_type: TypeCode
    reason: Reason
    lot_ids: list[int] | None = Field(default=None, min_length=1, max_length=500)


class TransferIn(_Keyed):
    """Move available points to another member of the brand; each lot keeps its expiry."""

    model_config = ConfigDict(
        extra="forbid",
        str_strip_whitespace=True,
        json_schema_extra={
            "examples": [
                {
                    "idempotency_key": "tr-0001",
                    "to_member_id": 43,
                    "point_type": "points",
                    "amount": 100,
                    "reason": "家庭共享",
                }
            ]
        },
    )
    to_member_id: int
    point_type: TypeCode
    amount: Points
    reason: str | None = Field(default=None, max_length=200)


class QuoteIn(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        str_strip_whitespace=True,
        json_schema_extra={
            "examples": [
                {"member_id": 42, "point_type": "points", "cart_amount": "259.00", "max_points": 5000}
            ]
        },
    )
    member_id: int
    point_type: TypeCode
    cart_amount: Annotated[
        Decimal, Field(ge=0, max_digits=14, decimal_places=2, examples=["259.00"]), AfterValidator(_cents)
    ]
    max_points: int | None = Field(default=None, ge=0, le=MAX_POINTS, description="Per-order cap in points")


class QuoteOut(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "member_id": 42,
                    "point_type": "points",
                    "available": 12000,
                    "ratio_limit": 12950,
                    "cap": 5000,
                    "usable_points": 5000,
                    "cash_value": "50.00",
                    "points_per_yuan": 100,
                    "max_pay_ratio": "0.5000",
                }
            ]
        }
    )
    member_id: int
    point_type: str
    available: int
    ratio_limit: int = Field(description="floor(cart × max_pay_ratio × points_per_yuan)")
    cap: int | None
    usable_points: int = Field(description="min(available, ratio_limit, cap)")
    cash_value: Decimal = Field(description="usable_points / points_per_yuan, rounded down to the fen")
    points_per_yuan: int
    max_pay_ratio: Decimal


class ReserveIn(_Keyed):
    """Hold points for a checkout. The idempotency key also names the reservation for confirm/release."""

    model_config = ConfigDict(
        extra="forbid",
        str_strip_whitespace=True,
        json_schema_extra={
            "examples": [
                {
                    "idempotency_key": "POS-20260315-0001",
                    "member_id": 42,
                    "point_type": "points",
                    "points": 5000,
                    "order_ref": "POS-20260315-0001",
                    "store": "sh-001",
                    "ttl_minutes": 15,
                }
            ]
        },
    )
    member_id: int
    point_type: TypeCode
    points: Points
    order_ref: OrderRef | None = None
    store: StoreCode | None = None
    ttl_minutes: int | None = Field(default=None, ge=1, le=1440, description="Defaults to the type's setting")


class LedgerOperationOut(BaseModel):
    """What a ledger operation did; a retry under the same key answers exactly this again (200)."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "operation_id": 981,
                    "kind": "earn",
                    "member_id": 42,
                    "point_type": "points",
                    "amount": 500,
                    "entries": [4410],
                    "lots": [1207],
                    "balance": {"available": 1700, "pending": 300, "frozen": 0, "reserved": 0, "debt": 0},
                    "extra": {"lot_id": 1207, "state": "active", "expires_at": "2027-04-01T00:00:00+08:00"},
                }
            ]
        }
    )
    operation_id: int
    kind: str
    member_id: int
    point_type: str
    amount: int
    entries: list[int]
    lots: list[int]
    balance: BalanceOut = Field(description="The member's account after the operation")
    extra: dict[str, Any]


class ReservationOut(LedgerOperationOut):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "operation_id": 990,
                    "kind": "reserve",
                    "member_id": 42,
                    "point_type": "points",
                    "amount": 5000,
                    "entries": [4431],
                    "lots": [],
                    "balance": {"available": 7000, "pending": 300, "frozen": 0, "reserved": 5000, "debt": 0},
                    "extra": {"reservation_id": 77, "expires_at": "2026-03-15T06:45:00+00:00"},
                    "reservation_key": "POS-20260315-0001",
                    "reservation_id": 77,
                    "status": "held",
                    "expires_at": "2026-03-15T06:45:00Z",
                }
            ]
        }
    )
    reservation_key: str
    reservation_id: int
    status: str
    expires_at: datetime | None = None


# -- brand totals ----------------------------------------------------------------------------------


class FunderLiabilityOut(BaseModel):
    funded_by: str
    points: int
    value: Decimal


class TypeLiabilityOut(BaseModel):
    point_type: str
    name: str
    kind: str
    points: int = Field(description="Outstanding points: unexpired lots plus open reservations")
    reserved_points: int
    value: Decimal = Field(description="Σ points × the fair value each lot was granted at, in yuan")
    members: int = Field(description="Members holding outstanding points of this type")
    by_funder: list[FunderLiabilityOut]


class LiabilityOut(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "as_of": "2026-03-15T06:30:00Z",
                    "points": 1250000,
                    "value": "12500.00",
                    "members": 812,
                    "point_types": [
                        {
                            "point_type": "points",
                            "name": "积分",
                            "kind": "spendable",
                            "points": 1250000,
                            "reserved_points": 5000,
                            "value": "12500.00",
                            "members": 812,
                            "by_funder": [
                                {"funded_by": "brand", "points": 1200000, "value": "12000.00"},
                                {"funded_by": "store", "points": 50000, "value": "500.00"},
                            ],
                        }
                    ],
                }
            ]
        }
    )
    as_of: datetime
    points: int
    value: Decimal
    members: int = Field(description="Members holding any outstanding points")
    point_types: list[TypeLiabilityOut]


class ExpiringDayOut(BaseModel):
    date: dt.date = Field(description="Last local day the points can be used")
    points: int
    by_type: dict[str, int]


class ExpiringOut(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "as_of": "2026-03-15T06:30:00Z",
                    "days": 30,
                    "timezone": "Asia/Shanghai",
                    "points": 3400,
                    "by_type": {"points": 3400},
                    "per_day": [{"date": "2026-03-31", "points": 3400, "by_type": {"points": 3400}}],
                }
            ]
        }
    )
    as_of: datetime
    days: int
    timezone: str
    points: int
    by_type: dict[str, int]
    per_day: list[ExpiringDayOut] = Field(description="Days with expiring points only, in date order")
