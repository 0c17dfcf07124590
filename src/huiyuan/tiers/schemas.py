"""Request and response shapes of the tier API, and the JSON documents stored on levels.

A *condition* is a threshold on one basis or a combination::

    {"basis": "growth", "min": 1000}
    {"any": [{"basis": "spend", "min": "5000.00"}, {"basis": "single_order", "min": "2000.00"}]}

Per-field rules live here (422 with field errors); rules across levels (unique ranks, one base
level, downgrade targets below the level) live in ``service``.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, AwareDatetime, BaseModel, ConfigDict, Field, model_validator

Basis = Literal["growth", "spend", "single_order", "rfm_score"]
ChangeReason = Literal["initial", "upgrade", "retain", "downgrade", "override", "reactivation"]
Code = Annotated[str, Field(min_length=1, max_length=40, pattern=r"^[A-Za-z0-9_.-]+$", examples=["gold"])]

_FORBID = ConfigDict(extra="forbid", str_strip_whitespace=True)


def _utc(value: datetime) -> datetime:
    return value.astimezone(UTC)


UTCTime = Annotated[AwareDatetime, AfterValidator(_utc)]


# -- conditions ------------------------------------------------------------------------------------


class Threshold(BaseModel):
    """Met when the member's value of ``basis`` in the qualification window is at least ``min``."""

    model_config = _FORBID
    basis: Basis
    min: Decimal = Field(ge=0, max_digits=14, decimal_places=3)

    @model_validator(mode="after")
    def _whole_growth(self) -> Threshold:
        if self.basis == "growth" and self.min != self.min.to_integral_value():
            raise ValueError("growth thresholds are whole points")
        if self.basis in ("spend", "single_order") and self.min != self.min.quantize(Decimal("0.01")):
            raise ValueError("money thresholds have at most 2 decimal places")
        return self


class AllOf(BaseModel):
    model_config = _FORBID
    all: list[Condition] = Field(min_length=1, max_length=10)


class AnyOf(BaseModel):
    model_config = _FORBID
    any: list[Condition] = Field(min_length=1, max_length=10)


Condition = Threshold | AllOf | AnyOf
AllOf.model_rebuild()
AnyOf.model_rebuild()


def condition_document(condition: Condition | None) -> dict[str, Any] | None:
    """The stored form of a condition (numbers as strings, so no float ever appears)."""
    if condition is None:
        return None
    if isinstance(condition, Threshold):
        value = condition.min
        if condition.basis == "growth":
            text = str(int(value))
        elif condition.basis == "rfm_score":
            text = format(value.normalize(), "f")
        else:
            text = str(value.quantize(Decimal("0.01")))
        return {"basis": condition.basis, "min": text}
    if isinstance(condition, AllOf):
        return {"all": [condition_document(c) for c in condition.all]}
    return {"any": [condition_document(c) for c in condition.any]}


# -- windows, validity, settlement -----------------------------------------------------------------


class RollingWindow(BaseModel):
    model_config = _FORBID
    kind: Literal["rolling_months"]
    months: int = Field(ge=1, le=60)


class CalendarYearWindow(BaseModel):
    model_config = _FORBID
    kind: Literal["calendar_year"]


class _MonthDay(BaseModel):
    model_config = _FORBID
    month: int = Field(ge=1, le=12)
    day: int = Field(ge=1, le=31)

    @model_validator(mode="after")
    def _real_day(self) -> _MonthDay:
        try:
            date(2024, self.month, self.day)  # a leap year: 02-29 is allowed (and moves to 02-28)
        except ValueError:
            raise ValueError(f"{self.month:02d}-{self.day:02d} is not a day of the year")
        return self


class MonthsValidity(BaseModel):
    """Valid for ``months`` from the upgrade (a retained level: from the previous end)."""

    model_config = _FORBID
    kind: Literal["months"]
    months: int = Field(ge=1, le=120)


class AnniversaryValidity(BaseModel):
    """Valid until the next anniversary of the member's enrolment (brand time zone)."""

    model_config = _FORBID
    kind: Literal["anniversary"]


class FixedDateValidity(_MonthDay):
    """Valid to the end of the next ``month``-``day`` (brand time zone)."""

    kind: Literal["fixed_date"]


class RealtimeSettlement(BaseModel):
    """An end of validity is settled as soon as it (plus the grace period) has passed."""

    model_config = _FORBID
    mode: Literal["realtime"]


class FixedDateSettlement(_MonthDay):
    """Ends of validity are settled together on the next ``month``-``day`` (brand time zone)."""

    mode: Literal["fixed_date"]


Window = Annotated[RollingWindow | CalendarYearWindow, Field(discriminator="kind")]
Validity = Annotated[MonthsValidity | AnniversaryValidity | FixedDateValidity, Field(discriminator="kind")]
Settlement = Annotated[RealtimeSettlement | FixedDateSettlement, Field(discriminator="mode")]

# -- program and levels ----------------------------------------------------------------------------

PROGRAM_EXAMPLE: dict[str, Any] = {
    "window": {"kind": "rolling_months", "months": 12},
    "settlement": {"mode": "realtime"},
    "grace_days": 30,
}


class ProgramIn(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [PROGRAM_EXAMPLE]})
    window: Window
    settlement: Settlement
    grace_days: int = Field(default=0, ge=0, le=366, description="Days after the end of validity")


LEVEL_EXAMPLE: dict[str, Any] = {
    "code": "gold",
    "name_zh": "金卡",
    "name_en": "Gold",
    "rank": 2,
    "upgrade": {"any": [{"basis": "growth", "min": 5000}, {"basis": "single_order", "min": "3000.00"}]},
    "retention": {"basis": "growth", "min": 3000},
    "validity": {"kind": "months", "months": 12},
    "downgrade_to": "silver",
    "points_multiplier": "1.5",
    "upgrade_gifts": [{"kind": "points", "point_type": "points", "amount": 500}],
    "benefits": [],
}

Multiplier = Annotated[Decimal, Field(ge=1, le=100, max_digits=6, decimal_places=3, examples=["1.5"])]
BenefitList = Annotated[list[dict[str, Any]], Field(max_length=20)]


class LevelIn(BaseModel):
    """A level. Rank 0 is the base level: no upgrade condition, no validity."""

    model_config = ConfigDict(
        extra="forbid", str_strip_whitespace=True, json_schema_extra={"examples": [LEVEL_EXAMPLE]}
    )
    code: Code
    name_zh: str = Field(min_length=1, max_length=80)
    name_en: str = Field(min_length=1, max_length=80)
    rank: int = Field(ge=0, le=100)
    upgrade: Condition | None = Field(default=None, description="Null: reachable only by an operator")
    retention: Condition | None = Field(
        default=None, description="Null: the upgrade condition must be met again"
    )
    validity: Validity | None = Field(default=None, description="Null: the level does not expire")
    downgrade_to: Code | None = Field(default=None, description="Level code; null: one level down")
    points_multiplier: Multiplier = Decimal("1")
    upgrade_gifts: BenefitList = Field(default_factory=list)
    benefits: BenefitList = Field(default_factory=list)


class LevelUpdate(BaseModel):
    """Partial update: only the fields sent change (send null to clear a condition or validity)."""

    model_config = ConfigDict(
        extra="forbid",
        str_strip_whitespace=True,
        json_schema_extra={"examples": [{"points_multiplier": "2", "retention": None}]},
    )
    name_zh: str | None = Field(default=None, min_length=1, max_length=80)
    name_en: str | None = Field(default=None, min_length=1, max_length=80)
    rank: int | None = Field(default=None, ge=0, le=100)
    upgrade: Condition | None = None
    retention: Condition | None = None
    validity: Validity | None = None
    downgrade_to: Code | None = None
    points_multiplier: Multiplier | None = None
    upgrade_gifts: BenefitList | None = None
    benefits: BenefitList | None = None


class LevelOut(BaseModel):
    id: int
    code: str
    name_zh: str
    name_en: str
    rank: int
    upgrade: dict[str, Any] | None
    retention: dict[str, Any] | None
    validity: dict[str, Any] | None
    downgrade_to: str | None
    points_multiplier: Decimal
    upgrade_gifts: list[dict[str, Any]]
    benefits: list[dict[str, Any]]


class LevelBrief(BaseModel):
    id: int
    code: str
    name_zh: str
    name_en: str
    rank: int
    points_multiplier: Decimal


class ProgramOut(BaseModel):
    id: int
    window: dict[str, Any]
    settlement: dict[str, Any]
    grace_days: int
    levels: list[LevelOut]


# -- members ---------------------------------------------------------------------------------------


class BasisOut(BaseModel):
    growth: int
    spend: Decimal
    single_order: Decimal
    rfm_score: Decimal | None
    window: dict[str, str]


class ProgressOut(BaseModel):
    """A condition tree with the member's values: leaves ``{basis, min, value, met}``."""

    level: LevelBrief
    met: bool
    condition: dict[str, Any] | None


class OverrideOut(BaseModel):
    level: LevelBrief
    until: datetime | None
    reason: str | None


class MemberTierOut(BaseModel):
    member_id: int
    level: LevelBrief
    since: datetime | None
    valid_until: datetime | None
    review_at: datetime | None = Field(description="When the end of validity is settled (grace included)")
    lapsed: bool
    rfm_score: Decimal | None
    override: OverrideOut | None
    basis: BasisOut
    next_level: ProgressOut | None
    retention: ProgressOut | None


class TierChangeOut(BaseModel):
    id: int
    member_id: int
    reason: str
    from_level: str | None
    to_level: str
    from_rank: int | None
    to_rank: int
    valid_until: datetime | None
    basis: dict[str, Any]
    note: str | None
    actor: str
    occurred_at: datetime


OVERRIDE_EXAMPLE: dict[str, Any] = {
    "level_code": "gold",
    "reason": "VIP customer complaint settled",
    "until": "2026-12-31T16:00:00Z",
}


class OverrideIn(BaseModel):
    """Set a level by hand. It is a floor until ``until`` (or until lifted): automatic evaluation
    may raise the member above it but never below it."""

    model_config = ConfigDict(
        extra="forbid", str_strip_whitespace=True, json_schema_extra={"examples": [OVERRIDE_EXAMPLE]}
    )
    level_code: Code
    reason: str = Field(min_length=1, max_length=200)
    until: UTCTime | None = Field(default=None, description="Null: until lifted")


class RfmScoreIn(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"rfm_score": "4.2"}]})
    rfm_score: Decimal | None = Field(ge=0, le=10_000, max_digits=8, decimal_places=3)


class DistributionLevel(BaseModel):
    code: str
    name_zh: str
    name_en: str
    rank: int
    counts: list[int]


class DistributionOut(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "days": ["2026-03-01", "2026-03-02"],
                    "levels": [
                        {
                            "code": "base",
                            "name_zh": "普卡",
                            "name_en": "Classic",
                            "rank": 0,
                            "counts": [900, 905],
                        },
                        {
                            "code": "gold",
                            "name_zh": "金卡",
                            "name_en": "Gold",
                            "rank": 1,
                            "counts": [100, 102],
                        },
                    ],
                }
            ]
        }
    )
    days: list[date]
    levels: list[DistributionLevel]
