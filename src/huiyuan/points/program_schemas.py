"""Request and response shapes of shared point programmes (``points.programs_api``)."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from huiyuan.points.schemas import (
    MAX_POINTS,
    BalanceOut,
    IdempotencyKeyField,
    OrderRef,
    PointBalanceOut,
    Points,
    QuoteOut,
    Reason,
    StoreCode,
    TypeCode,
)

ProgramCode = Annotated[str, Field(min_length=2, max_length=40, pattern=r"^[a-z0-9][a-z0-9_-]*$")]
BrandCode = Annotated[str, Field(min_length=2, max_length=40, pattern=r"^[a-z0-9][a-z0-9-]*$")]
EarnRate = Annotated[
    Decimal,
    Field(
        ge=0,
        le=10_000,
        max_digits=12,
        decimal_places=4,
        description="Points per yuan paid that the brand's paid orders earn (0: no automatic earning)",
        examples=["1"],
    ),
]
PaidAmount = Annotated[Decimal, Field(gt=0, max_digits=14, decimal_places=2, examples=["88.00"])]

_FORBID = ConfigDict(extra="forbid", str_strip_whitespace=True)


# -- programmes and participations (platform) ------------------------------------------------------


class ProgramIn(BaseModel):
    """A programme hosted by ``host_brand`` on one of its spendable point types."""

    model_config = ConfigDict(
        extra="forbid",
        str_strip_whitespace=True,
        json_schema_extra={
            "examples": [
                {
                    "code": "mall-alliance",
                    "name": "商圈联盟积分",
                    "host_brand": "lanxi",
                    "point_type": "alliance",
                    "host_earn_rate": "1",
                }
            ]
        },
    )
    code: ProgramCode
    name: str = Field(min_length=1, max_length=120)
    host_brand: BrandCode
    point_type: TypeCode
    host_earn_rate: EarnRate = Decimal("0")


class ProgramUpdate(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        str_strip_whitespace=True,
        json_schema_extra={"examples": [{"status": "paused"}, {"name": "商圈联盟积分（新）"}]},
    )
    name: str | None = Field(default=None, min_length=1, max_length=120)
    status: Literal["active", "paused", "closed"] | None = None


class ParticipationIn(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        str_strip_whitespace=True,
        json_schema_extra={"examples": [{"brand": "beta-tea", "earn_rate": "2"}]},
    )
    brand: BrandCode
    earn_rate: EarnRate = Decimal("0")


class ParticipationUpdate(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"earn_rate": "1.5"}, {"status": "left"}]},
    )
    earn_rate: EarnRate | None = None
    status: Literal["active", "left"] | None = None


class ParticipationOut(BaseModel):
    brand_id: int
    brand: str
    role: str
    status: str
    earn_rate: Decimal
    joined_at: datetime
    left_at: datetime | None


class ProgramOut(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "id": 3,
                    "code": "mall-alliance",
                    "name": "商圈联盟积分",
                    "host_brand_id": 1,
                    "host_brand": "lanxi",
                    "point_type": "alliance",
                    "status": "active",
                    "created_at": "2026-03-01T02:00:00Z",
                    "brands": [
                        {
                            "brand_id": 1,
                            "brand": "lanxi",
                            "role": "host",
                            "status": "active",
                            "earn_rate": "1.0000",
                            "joined_at": "2026-03-01T02:00:00Z",
                            "left_at": None,
                        },
                        {
                            "brand_id": 2,
                            "brand": "beta-tea",
                            "role": "participant",
                            "status": "active",
                            "earn_rate": "2.0000",
                            "joined_at": "2026-03-02T02:00:00Z",
                            "left_at": None,
                        },
                    ],
                }
            ]
        }
    )
    id: int
    code: str
    name: str
    host_brand_id: int
    host_brand: str
    point_type: str
    status: str
    created_at: datetime
    brands: list[ParticipationOut] = Field(
        description="Every brand for the platform; a brand sees its own participation only"
    )


# -- links and operations (brands) -----------------------------------------------------------------


class LinkIn(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"member_id": 42}]})
    member_id: int = Field(gt=0, description="The member of the calling brand")


class LinkOut(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "id": 7,
                    "program": "mall-alliance",
                    "member_id": 42,
                    "matched_by": "phone",
                    "created_at": "2026-03-02T03:00:00Z",
                }
            ]
        }
    )
    id: int
    program: str
    member_id: int
    matched_by: str = Field(description="phone (same phone as a host member), created, or self (host)")
    created_at: datetime


class _Keyed(BaseModel):
    model_config = _FORBID
    idempotency_key: IdempotencyKeyField | None = None


class ProgramEarnIn(_Keyed):
    """Grant programme points funded by the calling brand: ``points``, or ``paid_amount`` at the
    brand's earn rate (rounded down)."""

    model_config = ConfigDict(
        extra="forbid",
        str_strip_whitespace=True,
        json_schema_extra={
            "examples": [
                {"idempotency_key": "b-ord-20260315-0042", "paid_amount": "88.00", "order_ref": "B-0042"},
                {"idempotency_key": "b-gift-0001", "points": 200, "reason": "开卡礼"},
            ]
        },
    )
    points: Points | None = None
    paid_amount: PaidAmount | None = None
    order_ref: OrderRef | None = None
    store: StoreCode | None = None
    reason: Reason | None = None

    @model_validator(mode="after")
    def _one_amount(self) -> ProgramEarnIn:
        if (self.points is None) == (self.paid_amount is None):
            raise ValueError("send exactly one of points and paid_amount")
        return self


class ProgramSpendIn(_Keyed):
    model_config = ConfigDict(
        extra="forbid",
        str_strip_whitespace=True,
        json_schema_extra={
            "examples": [{"idempotency_key": "c-pay-20260316-0007", "points": 500, "order_ref": "C-0007"}]
        },
    )
    points: Points
    order_ref: OrderRef | None = None
    store: StoreCode | None = None
    reason: Reason | None = None


class ProgramRefundIn(_Keyed):
    model_config = ConfigDict(
        extra="forbid",
        str_strip_whitespace=True,
        json_schema_extra={
            "examples": [
                {"idempotency_key": "c-ref-0007-1", "spend_key": "c-pay-20260316-0007", "points": 200}
            ]
        },
    )
    spend_key: IdempotencyKeyField = Field(
        description="The idempotency key of the spend, or of the confirmed reservation, to refund"
    )
    points: Points
    reason: Reason | None = None


class ProgramOperationOut(BaseModel):
    """What a programme operation did; a retry under the same key answers this again (200)."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "id": 55,
                    "program": "mall-alliance",
                    "kind": "earn",
                    "key": "b-ord-20260315-0042",
                    "member_id": 42,
                    "points": 176,
                    "paid_amount": "88.00",
                    "order_ref": "B-0042",
                    "entries": [4410],
                    "balance": {"available": 676, "pending": 0, "frozen": 0, "reserved": 0, "debt": 0},
                    "created_at": "2026-03-15T06:30:00Z",
                }
            ]
        }
    )
    id: int
    program: str
    kind: str
    key: str
    member_id: int = Field(description="The member of the calling brand")
    points: int
    paid_amount: Decimal | None
    order_ref: str | None
    entries: list[int] = Field(description="Ledger entries the operation wrote")
    balance: BalanceOut = Field(description="The programme account after the operation")
    created_at: datetime


class ProgramEntryOut(BaseModel):
    """A programme ledger line written by the calling brand (other brands' lines are not shown)."""

    id: int
    kind: str
    amount: int
    d_available: int
    d_pending: int
    d_reserved: int
    key: str = Field(description="The idempotency key of the calling brand's operation")
    order_ref: str | None
    reason: str | None
    occurred_at: datetime


class ProgramPointsOut(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "program": "mall-alliance",
                    "member_id": 42,
                    "as_of": "2026-03-15T06:30:00Z",
                    "balance": {
                        "point_type": "alliance",
                        "name": "联盟积分",
                        "kind": "spendable",
                        "available": 676,
                        "pending": 0,
                        "frozen": 0,
                        "reserved": 0,
                        "debt": 0,
                        "expiring_30d": 0,
                        "expiring_90d": 176,
                        "earned_total": 876,
                        "spent_total": 200,
                        "expired_total": 0,
                    },
                    "entries": [],
                }
            ]
        }
    )
    program: str
    member_id: int
    as_of: datetime
    balance: PointBalanceOut = Field(description="The whole programme account, every brand's share")
    entries: list[ProgramEntryOut] = Field(description="The calling brand's own lines, newest first")


# -- checkout holds (brands) -----------------------------------------------------------------------


class ProgramQuoteIn(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"member_id": 42, "cart_amount": "259.00", "max_points": 5000}]},
    )
    member_id: int = Field(gt=0, description="The member of the calling brand")
    cart_amount: Annotated[Decimal, Field(ge=0, max_digits=14, decimal_places=2, examples=["259.00"])]
    max_points: int | None = Field(default=None, ge=0, le=MAX_POINTS, description="Per-order cap in points")


class ProgramQuoteOut(QuoteOut):
    """What the linked member may pay the cart with (the host point type's ratio and value)."""

    program: str


class ProgramReserveIn(_Keyed):
    """Hold programme points for a checkout at the calling brand. The idempotency key also names
    the reservation for confirm and release (per brand: another brand's key is another reservation)."""

    model_config = ConfigDict(
        extra="forbid",
        str_strip_whitespace=True,
        json_schema_extra={
            "examples": [
                {
                    "idempotency_key": "C-POS-20260316-0007",
                    "member_id": 42,
                    "points": 500,
                    "order_ref": "C-0007",
                    "ttl_minutes": 15,
                }
            ]
        },
    )
    member_id: int = Field(gt=0, description="The member of the calling brand")
    points: Points
    order_ref: OrderRef | None = None
    store: StoreCode | None = None
    ttl_minutes: int | None = Field(
        default=None, ge=1, le=1440, description="Defaults to the programme point type's setting"
    )


class ProgramReservationOut(ProgramOperationOut):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "id": 61,
                    "program": "mall-alliance",
                    "kind": "reserve",
                    "key": "C-POS-20260316-0007",
                    "member_id": 42,
                    "points": 500,
                    "paid_amount": None,
                    "order_ref": "C-0007",
                    "entries": [4431],
                    "balance": {"available": 176, "pending": 0, "frozen": 0, "reserved": 500, "debt": 0},
                    "created_at": "2026-03-16T06:30:00Z",
                    "reservation_key": "C-POS-20260316-0007",
                    "reservation_id": 77,
                    "status": "held",
                    "expires_at": "2026-03-16T06:45:00Z",
                }
            ]
        }
    )
    reservation_key: str
    reservation_id: int
    status: str = Field(description="held, confirmed or released")
    expires_at: datetime | None = None


class LinkedHoldingsOut(BaseModel):
    """How many of the calling brand's members are linked to the programme and what they hold."""

    program: str
    linked_members: int
    holders: int = Field(description="Linked members whose programme account holds available points")
    available_points: int = Field(description="Σ available points of those accounts (every brand's share)")
