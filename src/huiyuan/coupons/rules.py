"""Coupon template rules: the declarative, validated parts of a coupon template.

Owns ``TemplateRules`` (the JSON a template stores in ``rules``) and its parts — ``Discount``,
``Conditions``, the stacking fields, ``CostShare`` and ``Validity`` — plus three pure helpers:
``split_cost`` (who funds a realised discount, to the fen), ``valid_window`` (a coupon's validity
from the moment it was received) and ``face_value`` (the most one coupon can be worth). Must not touch
the database, the clock or any other I/O; ``coupons.cart`` evaluates the rules against a cart.

Rules are data, compared with ``==``, ``in`` and ``<=``; nothing in them is ever run as code. Money is
``Decimal`` yuan with at most 2 places, given as strings or integers in JSON, never floats.

Discount (``kind``):

- ``amount_off {amount}``: take ``amount`` off the eligible lines.
- ``percent_off {percent, cap?}``: take ``percent`` % (0 < p < 100: 15 means 15 % off, 85折) off the
  eligible lines' remaining amount, at most ``cap`` yuan.
- ``threshold {threshold, amount, repeat=false, max_times?}``: spend ``threshold`` on the eligible
  lines, save ``amount`` (满X减Y); with ``repeat`` once per full ``threshold`` (每满X减Y), at most
  ``max_times`` times when given.
- ``gift_item {sku, quantity=1, value}``: ``quantity`` units of ``sku`` added to the order for free;
  ``value`` is the price of one unit, used for ranking and cost accounting.
- ``free_shipping {cap?}``: take the shipping fee off, at most ``cap`` yuan.

Conditions, all of which must hold (an empty list means "any"):

- ``scenes`` (``online``, ``in_store``, ``shipping``), ``store_ids`` / ``exclude_store_ids``,
  ``channels``, ``tiers`` (tier codes), ``paid_plans`` (plan codes);
- ``weekdays`` (ISO, Monday = 1) and ``hours`` (``{"from": "HH:MM", "to": "HH:MM"}``, local time,
  ``from`` inclusive, ``to`` exclusive, ``to`` may be ``24:00``; ranges do not cross midnight);
- which lines are eligible: ``skus``, ``product_brands`` and ``categories`` include — each selector
  given must match, any value of it matches — and ``exclude_skus``, ``exclude_product_brands``,
  ``exclude_categories`` take a line out when any of them matches. A category is a path prefix on
  whole segments: ``apparel/shoes`` matches ``apparel/shoes/running`` but not ``apparel/shoes-kids``;
- ``min_spend``: the eligible lines' amount must reach it (see ``coupons.cart`` for "amount").

Stacking: ``exclusive`` coupons (the default, because combining coupons compounds their cost and must
be chosen on purpose) are used alone on an order; ``stackable`` ones combine with other stackable
coupons. ``per_order_limit`` caps coupons of the same template on one order; an exclusive template
has 1.

Cost sharing: every share is either a ``percent`` (they add up to exactly 100) or a fixed ``amount``
(they add up to the discount's fixed value, which only ``amount_off``, ``threshold`` without
``repeat`` and ``gift_item`` (value × quantity) have). Without shares the brand funds everything.

Validity: ``fixed {start, end}`` (aware instants) or ``relative {days, round_to, starts_after_days}``:
from receipt — or from local midnight ``starts_after_days`` days after it — plus ``days`` local
calendar days, then rounded up to the end of the local day, month, quarter or year of the last valid
moment (with ``points.expiry_policy``'s arithmetic). Bounds: from inclusive, to exclusive.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictBool,
    StrictInt,
    StrictStr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from huiyuan.kit.definitions import CENT, DEFINITION_MODEL, no_float, to_cent
from huiyuan.kit.errors import ValidationFailed, field_error
from huiyuan.points.expiry_policy import RelativeExpiry, RoundTo, expiry_for

HUNDRED = Decimal("100")


PositiveMoney = Annotated[
    Decimal,
    BeforeValidator(no_float),
    Field(gt=0, max_digits=12, decimal_places=2),
    AfterValidator(to_cent),
]
Percent = Annotated[Decimal, BeforeValidator(no_float), Field(gt=0, le=100, decimal_places=2)]
Code = Annotated[StrictStr, Field(min_length=1, max_length=64)]
Weekday = Annotated[StrictInt, Field(ge=1, le=7)]
Scene = Literal["online", "in_store", "shipping"]
Stacking = Literal["exclusive", "stackable"]
Party = Literal["platform", "brand", "store", "third_party"]


def _unique(values: list[Any]) -> list[Any]:
    if len(set(values)) != len(values):
        raise ValueError("values must not repeat")
    return values


def _paths(values: list[str]) -> list[str]:
    cleaned = [v.strip().strip("/") for v in values]
    for path in cleaned:
        if not path or any(not segment.strip() for segment in path.split("/")):
            raise ValueError(f"'{path}' is not a category path such as 'apparel/shoes/running'")
    return _unique(cleaned)


Codes = Annotated[list[Code], Field(max_length=500), AfterValidator(_unique)]
Paths = Annotated[list[StrictStr], Field(max_length=500), AfterValidator(_paths)]
StoreIds = Annotated[list[StrictInt], Field(max_length=5000), AfterValidator(_unique)]


# --- discount ------------------------------------------------------------------------------------


class AmountOff(BaseModel):
    model_config = DEFINITION_MODEL
    kind: Literal["amount_off"]
    amount: PositiveMoney


class PercentOff(BaseModel):
    model_config = DEFINITION_MODEL
    kind: Literal["percent_off"]
    percent: Annotated[Decimal, BeforeValidator(no_float), Field(gt=0, lt=100, decimal_places=2)]
    cap: PositiveMoney | None = None


class Threshold(BaseModel):
    model_config = DEFINITION_MODEL
    kind: Literal["threshold"]
    threshold: PositiveMoney
    amount: PositiveMoney
    repeat: StrictBool = False
    max_times: Annotated[StrictInt, Field(ge=1, le=1000)] | None = None

    @model_validator(mode="after")
    def _consistent(self) -> Threshold:
        if self.amount > self.threshold:
            raise ValueError("the amount saved must not exceed the threshold")
        if self.max_times is not None and not self.repeat:
            raise ValueError("max_times applies to a repeating threshold only (repeat: true)")
        return self


class GiftItem(BaseModel):
    model_config = DEFINITION_MODEL
    kind: Literal["gift_item"]
    sku: Code
    quantity: Annotated[StrictInt, Field(ge=1, le=99)] = 1
    value: PositiveMoney


class FreeShipping(BaseModel):
    model_config = DEFINITION_MODEL
    kind: Literal["free_shipping"]
    cap: PositiveMoney | None = None


Discount = Annotated[
    AmountOff | PercentOff | Threshold | GiftItem | FreeShipping, Field(discriminator="kind")
]


def fixed_value(discount: AmountOff | PercentOff | Threshold | GiftItem | FreeShipping) -> Decimal | None:
    """What the discount is worth when it is worth a fixed sum (the base of fixed cost shares)."""
    if isinstance(discount, AmountOff):
        return discount.amount
    if isinstance(discount, Threshold) and not discount.repeat:
        return discount.amount
    if isinstance(discount, GiftItem):
        return discount.value * discount.quantity
    return None


def face_value(
    rules: TemplateRules | AmountOff | PercentOff | Threshold | GiftItem | FreeShipping,
) -> Decimal | None:
    """The most one coupon can be worth (what a budget reserves per issue); ``None`` when unbounded."""
    discount = rules.discount if isinstance(rules, TemplateRules) else rules
    if isinstance(discount, PercentOff | FreeShipping):
        return discount.cap
    if isinstance(discount, Threshold) and discount.repeat:
        return None if discount.max_times is None else discount.amount * discount.max_times
    return fixed_value(discount)


# --- conditions ----------------------------------------------------------------------------------

_HHMM = r"^([01][0-9]|2[0-3]):[0-5][0-9]$"
_HHMM_OR_24 = r"^(([01][0-9]|2[0-3]):[0-5][0-9]|24:00)$"


def _minutes(hhmm: str) -> int:
    hours, minutes = hhmm.split(":")
    return int(hours) * 60 + int(minutes)


class Hours(BaseModel):
    """Local time of day, ``from`` inclusive, ``to`` exclusive."""

    model_config = ConfigDict(**DEFINITION_MODEL, serialize_by_alias=True)
    from_: Annotated[StrictStr, Field(pattern=_HHMM)] = Field(alias="from")
    to: Annotated[StrictStr, Field(pattern=_HHMM_OR_24)]

    @model_validator(mode="after")
    def _ordered(self) -> Hours:
        if _minutes(self.to) <= _minutes(self.from_):
            raise ValueError(
                f"'to' ({self.to}) must be after 'from' ({self.from_}); split a range across midnight in two"
            )
        return self

    def contains(self, minute_of_day: int) -> bool:
        return _minutes(self.from_) <= minute_of_day < _minutes(self.to)


def _prefix_of(prefix: str, path: str) -> bool:
    return path == prefix or path.startswith(prefix + "/")


class Conditions(BaseModel):
    """Where, when, for whom and on which lines the coupon applies (see the module docstring)."""

    model_config = DEFINITION_MODEL
    scenes: Annotated[list[Scene], AfterValidator(_unique)] = []
    store_ids: StoreIds = []
    exclude_store_ids: StoreIds = []
    channels: Codes = []
    tiers: Codes = []
    paid_plans: Codes = []
    weekdays: Annotated[list[Weekday], AfterValidator(_unique)] = []
    hours: Annotated[list[Hours], Field(max_length=24)] = []
    skus: Codes = []
    exclude_skus: Codes = []
    product_brands: Codes = []
    exclude_product_brands: Codes = []
    categories: Paths = []
    exclude_categories: Paths = []
    min_spend: PositiveMoney | None = None

    @model_validator(mode="after")
    def _no_contradictions(self) -> Conditions:
        for included, excluded in (
            ("store_ids", "exclude_store_ids"),
            ("skus", "exclude_skus"),
            ("product_brands", "exclude_product_brands"),
            ("categories", "exclude_categories"),
        ):
            both = set(getattr(self, included)) & set(getattr(self, excluded))
            if both:
                listed = ", ".join(sorted(str(v) for v in both))
                raise ValueError(f"{listed}: both in {included} and {excluded}")
        return self

    def matches_line(self, sku: str, product_brand: str | None, category_path: str | None) -> bool:
        """Whether a cart line is eligible for the coupon."""
        path = (category_path or "").strip("/")
        if sku in self.exclude_skus or (
            product_brand is not None and product_brand in self.exclude_product_brands
        ):
            return False
        if path and any(_prefix_of(p, path) for p in self.exclude_categories):
            return False
        if self.skus and sku not in self.skus:
            return False
        if self.product_brands and product_brand not in self.product_brands:
            return False
        return not self.categories or (bool(path) and any(_prefix_of(p, path) for p in self.categories))

    def at_hour(self, minute_of_day: int) -> bool:
        return not self.hours or any(h.contains(minute_of_day) for h in self.hours)


# --- cost sharing --------------------------------------------------------------------------------


class CostShare(BaseModel):
    """One party's part of a coupon's cost: a percent of the realised discount or a fixed amount."""

    model_config = DEFINITION_MODEL
    party: Party
    party_id: Annotated[StrictStr, Field(min_length=1, max_length=64)] | None = None
    percent: Percent | None = None
    amount: PositiveMoney | None = None

    @model_validator(mode="after")
    def _one_mode(self) -> CostShare:
        if (self.percent is None) == (self.amount is None):
            raise ValueError("give exactly one of 'percent' or 'amount'")
        return self


def _brand_pays_all() -> list[CostShare]:
    return [CostShare(party="brand", percent=HUNDRED)]


def largest_remainder(total: int, weights: Sequence[int]) -> list[int]:
    """``total`` (fen) split in proportion to ``weights``: each part the floor of its exact share, the
    fen left over going one each to the largest remainders, ties to the earlier weight. The parts add up
    to ``total`` and none exceeds its weight while ``total`` does not exceed their sum."""
    weight = sum(weights)
    if weight <= 0:
        raise ValueError("weights must add up to more than 0")
    parts: list[int] = []
    remainders: list[tuple[int, int]] = []
    for i, w in enumerate(weights):
        q, r = divmod(total * w, weight)
        parts.append(q)
        remainders.append((-r, i))
    for _, i in sorted(remainders)[: total - sum(parts)]:
        parts[i] += 1
    return parts


def _fen(value: Decimal) -> int:
    if value != value.quantize(CENT):
        raise ValueError(f"{value} has more than 2 decimal places")
    return int(value * 100)


def split_cost(shares: Sequence[CostShare], discount: Decimal) -> list[tuple[Party, str | None, Decimal]]:
    """Who funds ``discount`` (the realised discount of one coupon, gift value and shipping included):
    (party, party_id, yuan) per share, in order, adding up exactly to ``discount``.

    Percent shares split it by largest remainder to the fen; fixed amounts are paid as written when
    the discount is their sum (the face value) and scaled down the same way when it is lower."""
    if not shares:
        raise ValueError("give at least one cost share")
    fen = _fen(discount)
    if fen < 0:
        raise ValueError("the discount must not be negative")
    if all(s.amount is not None for s in shares):
        weights = [_fen(s.amount) for s in shares if s.amount is not None]
        if fen > sum(weights):
            raise ValueError(f"the discount {discount} exceeds the shares' face value")
    elif all(s.percent is not None for s in shares):
        weights = [_fen(s.percent) for s in shares if s.percent is not None]
    else:
        raise ValueError("shares mix percents and amounts")
    parts = largest_remainder(fen, weights)
    return [
        (s.party, s.party_id, (Decimal(p) / 100).quantize(CENT)) for s, p in zip(shares, parts, strict=True)
    ]


# --- validity ------------------------------------------------------------------------------------


class FixedValidity(BaseModel):
    """The same window for every coupon of the template."""

    model_config = DEFINITION_MODEL
    kind: Literal["fixed"]
    start: AwareDatetime
    end: AwareDatetime

    @model_validator(mode="after")
    def _ordered(self) -> FixedValidity:
        if self.end <= self.start:
            raise ValueError("'end' must be after 'start'")
        return self


class RelativeValidity(BaseModel):
    """A window that starts when the member receives the coupon (or some local days later)."""

    model_config = DEFINITION_MODEL
    kind: Literal["relative"]
    days: Annotated[StrictInt, Field(ge=1, le=3660)]
    round_to: RoundTo = "none"
    starts_after_days: Annotated[StrictInt, Field(ge=0, le=365)] = 0


Validity = Annotated[FixedValidity | RelativeValidity, Field(discriminator="kind")]


def valid_window(
    validity: FixedValidity | RelativeValidity, received_at: datetime, tz: ZoneInfo
) -> tuple[datetime, datetime]:
    """(valid_from, valid_to) in UTC of a coupon received at ``received_at``; ``tz`` is the brand's zone."""
    if received_at.tzinfo is None or received_at.utcoffset() is None:
        raise ValueError("received_at must be timezone-aware")
    if isinstance(validity, FixedValidity):
        return validity.start.astimezone(UTC), validity.end.astimezone(UTC)
    start = received_at.astimezone(UTC)
    if validity.starts_after_days:
        day: date = received_at.astimezone(tz).date() + timedelta(days=validity.starts_after_days)
        start = datetime.combine(day, time(), tzinfo=tz).astimezone(UTC)
    policy = RelativeExpiry(days=validity.days, round_to=validity.round_to)
    # Rounding extends the day (month, …) of the last valid moment; an end already on local midnight
    # closes the day before, so it must not earn a whole extra day.
    last = start - timedelta(microseconds=1) if validity.round_to != "none" else start
    end = expiry_for(policy, last, tz.key).nominal
    assert end is not None
    return start, end


# --- the template's rules ------------------------------------------------------------------------


class TemplateRules(BaseModel):
    """A coupon template's declarative parts, validated in one call (see the module docstring)."""

    model_config = ConfigDict(
        extra="forbid",
        frozen=True,
        populate_by_name=True,
        str_strip_whitespace=True,
        json_schema_extra={
            "examples": [
                {
                    "discount": {"kind": "threshold", "threshold": "300.00", "amount": "50.00"},
                    "conditions": {"scenes": ["online", "in_store"], "exclude_categories": ["tobacco"]},
                    "stacking": "stackable",
                    "per_order_limit": 1,
                    "cost_sharing": [
                        {"party": "brand", "percent": "70"},
                        {"party": "store", "percent": "30"},
                    ],
                    "validity": {"kind": "relative", "days": 30, "round_to": "end_of_day"},
                }
            ]
        },
    )

    discount: Discount
    conditions: Conditions = Field(default_factory=Conditions)
    stacking: Stacking = "exclusive"
    per_order_limit: Annotated[StrictInt, Field(ge=1, le=20)] = 1
    cost_sharing: Annotated[list[CostShare], Field(min_length=1, max_length=10)] = Field(
        default_factory=_brand_pays_all
    )
    validity: Validity

    # Field validators see the fields declared before them, so an error lands on the field at fault.
    @field_validator("per_order_limit")
    @classmethod
    def _exclusive_alone(cls, value: int, info: ValidationInfo) -> int:
        if value > 1 and info.data.get("stacking") == "exclusive":
            raise ValueError("an exclusive coupon is used alone on an order: per_order_limit must be 1")
        return value

    @field_validator("cost_sharing")
    @classmethod
    def _shares_add_up(cls, shares: list[CostShare], info: ValidationInfo) -> list[CostShare]:
        parties = [(s.party, s.party_id) for s in shares]
        if len(set(parties)) != len(parties):
            raise ValueError("a party must not have two shares")
        percents = [s.percent for s in shares if s.percent is not None]
        amounts = [s.amount for s in shares if s.amount is not None]
        if percents and amounts:
            raise ValueError("give every share as a percent or every share as an amount, not both")
        if percents:
            total = sum(percents, Decimal(0))
            if total != HUNDRED:
                raise ValueError(f"the percents add up to {total.normalize():f}, not 100")
            return shares
        discount = info.data.get("discount")
        if discount is None:
            return shares  # The discount is invalid itself; its own error says so.
        fixed = fixed_value(discount)
        if fixed is None:
            raise ValueError(
                f"a {discount.kind} discount has no fixed value: give the shares as percents adding up to 100"
            )
        total = sum(amounts, Decimal(0))
        if total != fixed:
            raise ValueError(f"the amounts add up to {total}, not the discount's face value {fixed}")
        return shares


def parse_template_rules(data: Mapping[str, Any]) -> TemplateRules:
    """Validate stored or submitted rules; raises ``pydantic.ValidationError``."""
    return TemplateRules.model_validate(data)


def dump_template_rules(rules: TemplateRules) -> dict[str, Any]:
    """The JSON form to store: decimals as strings, ``hours`` with ``from``."""
    return rules.model_dump(mode="json", by_alias=True)


def field_errors(exc: ValidationError, data: Any, *, prefix: str = "rules") -> list[dict[str, Any]]:
    """Pydantic errors as our field errors: ``rules.discount.amount``, ``rules.conditions.hours.0``,
    without the tags pydantic inserts for tagged unions and without its "Value error, " prefix."""
    errors = []
    for e in exc.errors():
        message = e["msg"]
        if e["type"] == "value_error" and message.startswith("Value error, "):
            message = message.removeprefix("Value error, ")
        errors.append(field_error(_field_path(prefix, e["loc"], data, e["type"]), message, e["type"]))
    return errors


def validated_template_rules(data: Mapping[str, Any], *, prefix: str = "rules") -> TemplateRules:
    """The rules, or ``ValidationFailed`` with one field error per problem (``rules.*`` fields)."""
    try:
        return parse_template_rules(data)
    except ValidationError as exc:
        raise ValidationFailed(
            "The coupon rules are not valid.", errors=field_errors(exc, data, prefix=prefix)
        )


def _field_path(prefix: str, loc: Sequence[int | str], data: Any, error_type: str) -> str:
    parts: list[str] = [prefix] if prefix else []
    node, tagged = data, None
    for item in loc:
        if isinstance(node, Mapping) and node is not tagged and node.get("kind") == item:
            # The tag pydantic inserts for a tagged union — ('amount_off', 'amount') on
            # {"kind": "amount_off"} — even when a field has the same name (a threshold's "threshold").
            tagged = node
            continue
        parts.append(str(item))
        if isinstance(node, Mapping):
            node = node.get(item) if isinstance(item, str) else None
        elif isinstance(node, list) and isinstance(item, int) and 0 <= item < len(node):
            node = node[item]
        else:
            node = None
    if error_type.startswith("union_tag"):
        parts.append("kind")
    return ".".join(parts)
