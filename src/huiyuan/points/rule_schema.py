"""The declarative definition of an earn rule (``RuleDefinition``): the validated JSON a brand stores
in ``EarnRule.definition`` — trigger, conditions, formula, multipliers, stacking, caps — with
``parse_definition`` and ``dump_definition``. Rules are data: a condition is a tagged record and
nothing in a definition is ever run as code. How a definition is applied to an order or an action is
``points.rules``' business.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date
from decimal import Decimal
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictBool,
    StrictInt,
    StrictStr,
    ValidationInfo,
    field_validator,
    model_validator,
)

from huiyuan.kit.definitions import DEFINITION_MODEL, no_float, to_cent

if TYPE_CHECKING:
    from huiyuan.points.rules import ItemFacts

ZERO = Decimal("0.00")
ONE = Decimal("1")
# A rule never grants more than this multiple of its formula, however many multipliers stack.
MAX_FACTOR = Decimal("100")


Money = Annotated[
    Decimal,
    BeforeValidator(no_float),
    Field(ge=0, max_digits=14, decimal_places=2),
    AfterValidator(to_cent),
]
PositiveMoney = Annotated[
    Decimal,
    BeforeValidator(no_float),
    Field(gt=0, max_digits=14, decimal_places=2),
    AfterValidator(to_cent),
]
Factor = Annotated[Decimal, BeforeValidator(no_float), Field(ge=1, le=100, decimal_places=4)]
Points = Annotated[StrictInt, Field(gt=0, le=1_000_000_000)]
Weekday = Annotated[StrictInt, Field(ge=1, le=7)]
Code = Annotated[StrictStr, Field(min_length=1, max_length=64)]
ActionName = Annotated[StrictStr, Field(pattern=r"^[a-z][a-z0-9_.]{1,63}$")]
# "merchant:" + up to 31 characters fits the lots' 40-character ``funded_by`` column.
FundedBy = Annotated[StrictStr, Field(pattern=r"^(platform|brand|store|merchant:[a-z0-9][a-z0-9_.-]{0,30})$")]


def _unique(values: list[Any] | None) -> list[Any] | None:
    if values is not None and len(set(values)) != len(values):
        raise ValueError("values must not repeat")
    return values


def _in_or_not_in(in_: list[Any] | None, not_in: list[Any] | None) -> None:
    if (in_ is None) == (not_in is None):
        raise ValueError("give exactly one of 'in' or 'not_in'")


# --- the definition ------------------------------------------------------------------------------


class OrderTrigger(BaseModel):
    """A paid order (the ``order.paid`` event)."""

    model_config = DEFINITION_MODEL
    kind: Literal["order"]


class ActionTrigger(BaseModel):
    """A member action: check_in, review, game, task, referral, birthday or a brand's own event name."""

    model_config = DEFINITION_MODEL
    kind: Literal["action"]
    action: ActionName


Trigger = Annotated[OrderTrigger | ActionTrigger, Field(discriminator="kind")]


class DateRange(BaseModel):
    """Local dates, both ends inclusive; an open end is unbounded."""

    model_config = DEFINITION_MODEL
    from_: date | None = Field(None, alias="from")
    to: date | None = None

    @model_validator(mode="after")
    def _ordered(self) -> DateRange:
        if self.from_ is None and self.to is None:
            raise ValueError("give 'from', 'to' or both")
        if self.from_ is not None and self.to is not None and self.from_ > self.to:
            raise ValueError("'from' must not be after 'to'")
        return self

    def contains(self, day: date) -> bool:
        return (self.from_ is None or self.from_ <= day) and (self.to is None or day <= self.to)


class AmountCondition(BaseModel):
    """Paid amount of the order (``of="order"``) or the base left by the filters (``of="base"``)."""

    model_config = DEFINITION_MODEL
    kind: Literal["amount"]
    min: Money | None = None
    max: Money | None = None
    of: Literal["order", "base"] = "order"

    @model_validator(mode="after")
    def _bounds(self) -> AmountCondition:
        if self.min is None and self.max is None:
            raise ValueError("give 'min', 'max' or both")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError("'min' must not exceed 'max'")
        return self


class StoresCondition(BaseModel):
    model_config = DEFINITION_MODEL
    kind: Literal["stores"]
    in_: Annotated[list[StrictInt], Field(min_length=1), AfterValidator(_unique)] | None = Field(
        None, alias="in"
    )
    not_in: Annotated[list[StrictInt], Field(min_length=1), AfterValidator(_unique)] | None = None

    @model_validator(mode="after")
    def _one(self) -> StoresCondition:
        _in_or_not_in(self.in_, self.not_in)
        return self


class ChannelsCondition(BaseModel):
    model_config = DEFINITION_MODEL
    kind: Literal["channels"]
    in_: Annotated[list[Code], Field(min_length=1), AfterValidator(_unique)] | None = Field(None, alias="in")
    not_in: Annotated[list[Code], Field(min_length=1), AfterValidator(_unique)] | None = None

    @model_validator(mode="after")
    def _one(self) -> ChannelsCondition:
        _in_or_not_in(self.in_, self.not_in)
        return self


def _paths(values: list[str] | None) -> list[str] | None:
    if values is None:
        return None
    cleaned = [v.strip("/") for v in values]
    if not all(cleaned):
        raise ValueError("a category path must name at least one category code")
    return cleaned


class ItemsCondition(BaseModel):
    """Which order lines count. Each selector given must hold for a line, any value of a selector
    matches; ``category_paths`` also match the descendants (``food/dairy`` matches ``food/dairy/milk``).
    With ``exclude`` the matching lines are the ones taken out."""

    model_config = DEFINITION_MODEL
    kind: Literal["items"]
    skus: Annotated[list[Code], Field(min_length=1)] | None = None
    category_ids: Annotated[list[StrictInt], Field(min_length=1)] | None = None
    category_paths: Annotated[list[StrictStr], Field(min_length=1), AfterValidator(_paths)] | None = None
    product_brands: Annotated[list[Code], Field(min_length=1)] | None = None
    exclude: StrictBool = False

    @model_validator(mode="after")
    def _some(self) -> ItemsCondition:
        if not (self.skus or self.category_ids or self.category_paths or self.product_brands):
            raise ValueError("give at least one of skus, category_ids, category_paths, product_brands")
        return self

    def matches(self, line: ItemFacts) -> bool:
        if self.skus is not None and line.sku not in self.skus:
            return False
        if self.category_ids is not None and line.category_id not in self.category_ids:
            return False
        if self.category_paths is not None:
            path = (line.category_path or "").strip("/")
            if not any(path == p or path.startswith(p + "/") for p in self.category_paths):
                return False
        return self.product_brands is None or line.product_brand in self.product_brands


class PaymentsCondition(BaseModel):
    """Only the part of the order paid with these methods counts towards the base."""

    model_config = DEFINITION_MODEL
    kind: Literal["payments"]
    methods: Annotated[list[Code], Field(min_length=1), AfterValidator(_unique)]


class TiersCondition(BaseModel):
    model_config = DEFINITION_MODEL
    kind: Literal["tiers"]
    in_: Annotated[list[Code], Field(min_length=1), AfterValidator(_unique)] = Field(alias="in")


class PaidPlansCondition(BaseModel):
    model_config = DEFINITION_MODEL
    kind: Literal["paid_plans"]
    in_: Annotated[list[Code], Field(min_length=1), AfterValidator(_unique)] = Field(alias="in")


class DatesCondition(DateRange):
    kind: Literal["dates"]


class WeekdaysCondition(BaseModel):
    """ISO weekdays of the local date: 1 = Monday … 7 = Sunday."""

    model_config = DEFINITION_MODEL
    kind: Literal["weekdays"]
    days: Annotated[list[Weekday], Field(min_length=1), AfterValidator(_unique)]


class MemberDayCondition(BaseModel):
    """The brand's member day: a day of the month (a month without that day has none) or a weekday."""

    model_config = DEFINITION_MODEL
    kind: Literal["member_day"]
    day_of_month: Annotated[StrictInt, Field(ge=1, le=31)] | None = None
    weekday: Weekday | None = None

    @model_validator(mode="after")
    def _one(self) -> MemberDayCondition:
        if (self.day_of_month is None) == (self.weekday is None):
            raise ValueError("give exactly one of 'day_of_month' or 'weekday'")
        return self


class BirthdayCondition(BaseModel):
    """The member's birthday (``day``; 29 February counts on the 28th in other years) or the whole
    birthday month (``month``). A member without a birthday never matches."""

    model_config = DEFINITION_MODEL
    kind: Literal["birthday"]
    within: Literal["day", "month"] = "day"


class PropertyCondition(BaseModel):
    """A property of the action equals a value, type included: ``"5"`` is not ``5``, ``true`` is not ``1``."""

    model_config = DEFINITION_MODEL
    kind: Literal["property"]
    name: Code
    equals: StrictBool | StrictInt | StrictStr


Condition = Annotated[
    AmountCondition
    | StoresCondition
    | ChannelsCondition
    | ItemsCondition
    | PaymentsCondition
    | TiersCondition
    | PaidPlansCondition
    | DatesCondition
    | WeekdaysCondition
    | MemberDayCondition
    | BirthdayCondition
    | PropertyCondition,
    Field(discriminator="kind"),
]

ORDER_ONLY = frozenset({"amount", "stores", "channels", "items", "payments"})
ACTION_ONLY = frozenset({"property"})


class PerAmountFormula(BaseModel):
    """``points`` for every full ``per`` yuan of the base (``floor``), or the nearest count (``half_up``)."""

    model_config = DEFINITION_MODEL
    kind: Literal["per_amount"]
    per: PositiveMoney
    points: Points
    rounding: Literal["floor", "half_up"] = "floor"


class FixedFormula(BaseModel):
    model_config = DEFINITION_MODEL
    kind: Literal["fixed"]
    points: Points


class PercentFormula(BaseModel):
    """floor(base × percent / 100 × points_per_yuan)."""

    model_config = DEFINITION_MODEL
    kind: Literal["percent"]
    percent: Annotated[Decimal, BeforeValidator(no_float), Field(gt=0, le=100, decimal_places=4)]
    points_per_yuan: Annotated[
        Decimal, BeforeValidator(no_float), Field(gt=0, le=10_000, decimal_places=4)
    ] = ONE


Formula = Annotated[PerAmountFormula | FixedFormula | PercentFormula, Field(discriminator="kind")]


class Multiplier(BaseModel):
    """A promotional factor, on the given local dates and/or weekdays (always when neither is given)."""

    model_config = DEFINITION_MODEL
    name: Annotated[StrictStr, Field(min_length=1, max_length=64)]
    factor: Factor
    dates: DateRange | None = None
    weekdays: Annotated[list[Weekday], Field(min_length=1), AfterValidator(_unique)] | None = None

    def applies(self, day: date) -> bool:
        return (self.dates is None or self.dates.contains(day)) and (
            self.weekdays is None or day.isoweekday() in self.weekdays
        )


class Caps(BaseModel):
    model_config = DEFINITION_MODEL
    per_order: Points | None = None
    per_day: Points | None = None
    per_member: Points | None = None
    budget: Points | None = None


class RuleDefinition(BaseModel):
    """An earn rule as a brand stores it (see the module docstring for the semantics)."""

    model_config = ConfigDict(
        extra="forbid",
        frozen=True,
        populate_by_name=True,
        str_strip_whitespace=True,
        json_schema_extra={
            "examples": [
                {
                    "trigger": {"kind": "order"},
                    "point_type": "points",
                    "conditions": [{"kind": "amount", "min": "20.00"}],
                    "formula": {"kind": "per_amount", "per": "10.00", "points": 1},
                    "multipliers": [
                        {
                            "name": "圣诞双倍",
                            "factor": "2",
                            "dates": {"from": "2026-12-24", "to": "2026-12-26"},
                        }
                    ],
                    "stacking": "max",
                    "caps": {"per_order": 5000},
                    "funded_by": "brand",
                }
            ]
        },
    )

    trigger: Trigger
    point_type: Code
    conditions: list[Condition] = Field(default_factory=list, max_length=50)
    formula: Formula
    multipliers: list[Multiplier] = Field(default_factory=list, max_length=20)
    stacking: Literal["max", "multiply", "add"] = "max"
    apply_member_multipliers: StrictBool = True
    caps: Caps = Field(default_factory=Caps)
    funded_by: FundedBy = "brand"
    pending_days: Annotated[StrictInt, Field(ge=0, le=365)] | None = None
    exclusive: StrictBool = False
    priority: Annotated[StrictInt, Field(ge=-1000, le=1000)] = 0

    # Field validators see the trigger (declared first), so a mismatch is reported on the field at fault.
    @field_validator("conditions")
    @classmethod
    def _conditions_fit_trigger(cls, value: list[Any], info: ValidationInfo) -> list[Any]:
        kind = _trigger_kind(info)
        wrong = ORDER_ONLY if kind == "action" else ACTION_ONLY if kind == "order" else frozenset()
        for i, condition in enumerate(value):
            if condition.kind in wrong:
                other = "order" if kind == "action" else "action"
                raise ValueError(f"conditions[{i}]: '{condition.kind}' applies to {other} rules only")
        return value

    @field_validator("formula")
    @classmethod
    def _formula_fits_trigger(cls, value: Any, info: ValidationInfo) -> Any:
        if _trigger_kind(info) == "action" and value.kind != "fixed":
            raise ValueError(
                f"an action carries no amount: action rules grant 'fixed' points, not '{value.kind}'"
            )
        return value

    @field_validator("pending_days")
    @classmethod
    def _pending_for_orders(cls, value: int | None, info: ValidationInfo) -> int | None:
        if value is not None and _trigger_kind(info) == "action":
            raise ValueError("pending_days (the return window) applies to order rules only")
        return value


def _trigger_kind(info: ValidationInfo) -> str | None:
    trigger = info.data.get("trigger")
    return None if trigger is None else str(trigger.kind)


def parse_definition(data: Mapping[str, Any]) -> RuleDefinition:
    """Validate a stored or submitted definition; raises ``pydantic.ValidationError``."""
    return RuleDefinition.model_validate(data)


def dump_definition(definition: RuleDefinition) -> dict[str, Any]:
    """The JSON form to store: decimals as strings, aliases (``in``, ``from``) as written."""
    return definition.model_dump(mode="json", by_alias=True, exclude_none=True)
