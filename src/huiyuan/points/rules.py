"""Earn rules: the pure evaluator that turns a paid order or a member action into point grants, under
the declarative definitions brands store (``points.rule_schema.RuleDefinition``).

Owns the facts the evaluator reads (``OrderFacts``, ``ActionFacts``, ``MemberFacts``, ``RuleUsage``)
and ``evaluate``. Must not touch the database, the clock or any other I/O: what only the database
knows (what a rule already granted today, to this member, in total) comes in as ``RuleUsage``, and
the ledger writes the grants.

Rules are data. A condition is a tagged record compared with ``==``, ``in`` and ``<=``; nothing in a
definition is ever run as code, so whatever an operator types stays a string.

One rule, step by step:

1. Trigger: an order rule answers a paid order, an action rule an action of its name. The event time
   must lie in ``valid_from <= t < valid_to`` of the rule row.
2. Conditions: all must hold. Dates, weekdays, member day and birthday use the local date of the event
   in the brand's time zone. ``items`` conditions narrow the lines that count (several narrow further),
   ``payments`` conditions the share of the order paid with the listed methods:
   base = Σ paid amount of the counted lines × paid with the listed methods / paid in total, rounded
   down to the fen. Without ``items`` conditions the lines are the whole order (its paid amount). An
   ``items`` or ``payments`` condition holds only when it leaves money to count.
3. Formula on the base (action rules grant fixed points): per N yuan M points, fixed, or percent.
4. Multipliers: the rule's promotions that apply on the local date, plus the member's external ones
   (tier, paid plan) unless ``apply_member_multipliers`` is off, combined by ``stacking``: ``max`` (the
   default) keeps only the largest, ``multiply`` takes their product, ``add`` gives 1 + Σ(factor − 1).
   points = floor(points × factor), the factor never above ``MAX_FACTOR``. ``max`` is the default
   because multipliers are set up by different people at different times (a tier benefit, a holiday
   campaign); compounding them unasked turns 1.5× and 2× into 3× and blows the campaign's cost
   estimate, so a rule has to choose it.
5. Caps clip in turn: ``per_order`` (per event for action rules), ``per_day`` (per member and local
   day), ``per_member`` (per member over the rule's life) and ``budget`` (the rule's total).

Exclusivity, per point type: when any exclusive rule grants (more than 0 points after its caps), the
one with the highest priority (then the lowest id) is the only grant of that point type for the event;
otherwise every matching non-exclusive rule grants and their points add up. An exclusive campaign whose
caps are exhausted therefore does not win, and the everyday rules apply again.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import ROUND_FLOOR, ROUND_HALF_UP, Decimal
from functools import lru_cache
from typing import Any, NamedTuple
from zoneinfo import ZoneInfo

from huiyuan.kit.definitions import CENT
from huiyuan.points.rule_schema import (
    MAX_FACTOR,
    ONE,
    ZERO,
    AmountCondition,
    BirthdayCondition,
    Caps,
    ChannelsCondition,
    DatesCondition,
    FixedFormula,
    ItemsCondition,
    MemberDayCondition,
    OrderTrigger,
    PaidPlansCondition,
    PaymentsCondition,
    PerAmountFormula,
    PropertyCondition,
    RuleDefinition,
    StoresCondition,
    TiersCondition,
    WeekdaysCondition,
)

# --- the facts -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class ItemFacts:
    """An order line; ``paid_amount`` is its share of the order's paid amount (after order discounts)."""

    sku: str
    category_id: int | None
    category_path: str | None
    product_brand: str | None
    quantity: int
    amount: Decimal
    paid_amount: Decimal


class PaymentFacts(NamedTuple):
    method: str
    amount: Decimal


@dataclass(frozen=True)
class OrderFacts:
    order_id: int
    order_number: str
    member_id: int | None
    store_id: int | None
    channel: str
    paid_at: datetime
    paid_amount: Decimal
    deal_amount: Decimal
    items: Sequence[ItemFacts] = ()
    payments: Sequence[tuple[str, Decimal]] = ()


@dataclass(frozen=True)
class ActionFacts:
    action: str
    occurred_at: datetime
    properties: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ExternalMultiplier:
    """A factor the member brings to every rule that accepts it (tier benefit, paid plan)."""

    source: str
    factor: Decimal

    def __post_init__(self) -> None:
        if not isinstance(self.factor, Decimal) or not self.factor.is_finite() or self.factor < ONE:
            raise ValueError(f"multiplier {self.source!r}: factor must be a finite Decimal of at least 1")


@dataclass(frozen=True)
class MemberFacts:
    member_id: int
    tier_code: str | None = None
    paid_plan_code: str | None = None
    birthday: date | None = None
    multipliers: Sequence[ExternalMultiplier] = ()


@dataclass(frozen=True)
class RuleUsage:
    """What the rule already granted: to this member on the event's local day, to this member, in total."""

    granted_today: int = 0
    granted_to_member: int = 0
    granted_total: int = 0


@dataclass(frozen=True)
class RuleInput:
    rule_id: int
    code: str
    definition: RuleDefinition
    valid_from: datetime | None = None
    valid_to: datetime | None = None
    usage: RuleUsage = RuleUsage()


@dataclass(frozen=True)
class Grant:
    """Points one rule grants for one event; ``explanation`` is JSON-able and kept with the ledger entry."""

    rule_id: int
    rule_code: str
    point_type: str
    points: int
    funded_by: str
    pending_days: int | None
    base_amount: Decimal | None
    factor: Decimal
    explanation: dict[str, Any]


# --- the evaluator -------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Event:
    order: OrderFacts | None
    action: ActionFacts | None
    member: MemberFacts
    at: datetime
    day: date


@lru_cache(maxsize=64)
def _zone(tz: str) -> ZoneInfo:
    return ZoneInfo(tz)


def _aware(name: str, value: datetime) -> None:
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{name} must be timezone-aware (UTC)")


def evaluate(
    rules: Sequence[RuleInput],
    *,
    order: OrderFacts | None,
    action: ActionFacts | None,
    member: MemberFacts,
    tz: str,
) -> list[Grant]:
    """The grants of one event (exactly one of ``order`` or ``action``), by priority desc then rule id."""
    if (order is None) == (action is None):
        raise ValueError("give exactly one of order or action")
    if order is not None:
        at, label = order.paid_at, "paid_at"
    else:
        assert action is not None
        at, label = action.occurred_at, "occurred_at"
    _aware(label, at)
    event = _Event(order, action, member, at, at.astimezone(_zone(tz)).date())

    ordered = sorted(rules, key=lambda r: (-r.definition.priority, r.rule_id))
    grants = [g for g in (_evaluate_rule(rule, event) for rule in ordered) if g is not None]
    exclusive = {r.rule_id for r in ordered if r.definition.exclusive}

    winners: dict[str, Grant] = {}
    for grant in grants:
        if grant.rule_id in exclusive:
            winners.setdefault(grant.point_type, grant)
    result: list[Grant] = []
    for grant in grants:
        winner = winners.get(grant.point_type)
        if winner is None:
            result.append(grant)
        elif grant is winner:
            skipped = [g.rule_code for g in grants if g.point_type == grant.point_type and g is not winner]
            result.append(dataclasses.replace(grant, explanation={**grant.explanation, "excluded": skipped}))
    return result


def _evaluate_rule(rule: RuleInput, event: _Event) -> Grant | None:
    d = rule.definition
    if isinstance(d.trigger, OrderTrigger):
        if event.order is None:
            return None
        trigger: dict[str, Any] = {"kind": "order", "order_id": event.order.order_id}
    else:
        if event.action is None or event.action.action != d.trigger.action:
            return None
        trigger = {"kind": "action", "action": d.trigger.action}
    for name, bound in (("valid_from", rule.valid_from), ("valid_to", rule.valid_to)):
        if bound is not None:
            _aware(name, bound)
    if (rule.valid_from is not None and event.at < rule.valid_from) or (
        rule.valid_to is not None and event.at >= rule.valid_to
    ):
        return None

    base, filters = _base(d, event.order) if event.order is not None else (None, {})
    matched: list[dict[str, Any]] = []
    for condition in d.conditions:
        detail = _check(condition, event, base, filters)
        if detail is None:
            return None
        matched.append(detail)

    points, formula = _apply_formula(d.formula, base)
    factor, multipliers = _factor(d, event)
    multiplied = int((points * factor).to_integral_value(ROUND_FLOOR))
    granted, clipped = _clip(multiplied, d.caps, rule.usage)
    if granted <= 0:
        return None
    return Grant(
        rule_id=rule.rule_id,
        rule_code=rule.code,
        point_type=d.point_type,
        points=granted,
        funded_by=d.funded_by,
        pending_days=d.pending_days,
        base_amount=base,
        factor=factor,
        explanation={
            "rule": rule.code,
            "trigger": trigger,
            "at": event.at.isoformat(),
            "local_date": event.day.isoformat(),
            "conditions": matched,
            "base_amount": None if base is None else str(base),
            "formula": formula,
            "multipliers": multipliers,
            "points_before_caps": multiplied,
            "caps": clipped,
            "points": granted,
        },
    )


def _floor_cent(value: Decimal) -> Decimal:
    return max(value, ZERO).quantize(CENT, ROUND_FLOOR)


def _base(d: RuleDefinition, order: OrderFacts) -> tuple[Decimal, dict[str, Any]]:
    """The money the formula counts, and what the item and payment filters left (for their conditions)."""
    filters: dict[str, Any] = {}
    item_conditions = [c for c in d.conditions if isinstance(c, ItemsCondition)]
    if item_conditions:
        lines = [line for line in order.items if all(c.matches(line) != c.exclude for c in item_conditions)]
        amount = sum((line.paid_amount for line in lines), ZERO)
        filters["items"] = {"skus": [line.sku for line in lines], "amount": str(_floor_cent(amount))}
    else:
        amount = order.paid_amount
    method_sets = [set(c.methods) for c in d.conditions if isinstance(c, PaymentsCondition)]
    if method_sets:
        methods = set.intersection(*method_sets)
        total = sum((Decimal(a) for _, a in order.payments), ZERO)
        paid_with = sum((Decimal(a) for m, a in order.payments if m in methods), ZERO)
        amount = amount * paid_with / total if total > 0 else ZERO
        filters["payments"] = {"methods": sorted(methods), "paid_with": str(paid_with), "paid": str(total)}
    return _floor_cent(amount), filters


def _same(value: Any, expected: Any) -> bool:
    # Typed equality: JSON's true must not match 1, nor "5" match 5.
    return type(value) is type(expected) and value == expected


def _birthday(birthday: date | None, day: date, within: str) -> bool:
    if birthday is None:
        return False
    if within == "month":
        return birthday.month == day.month
    if (birthday.month, birthday.day) == (2, 29) and not _leap(day.year):
        return (day.month, day.day) == (2, 28)
    return (birthday.month, birthday.day) == (day.month, day.day)


def _leap(year: int) -> bool:
    return year % 4 == 0 and (year % 100 != 0 or year % 400 == 0)


def _check(
    condition: Any, event: _Event, base: Decimal | None, filters: dict[str, Any]
) -> dict[str, Any] | None:
    """The record of a condition that holds, ``None`` when it does not."""
    order, member, day = event.order, event.member, event.day
    ok: bool
    detail: dict[str, Any] = {"kind": condition.kind}
    match condition:
        case AmountCondition() if order is not None:
            value = order.paid_amount if condition.of == "order" else base
            assert value is not None
            ok = (condition.min is None or value >= condition.min) and (
                condition.max is None or value <= condition.max
            )
            detail |= {"of": condition.of, "value": str(value)}
        case StoresCondition() if order is not None:
            ok = (
                order.store_id in condition.in_
                if condition.in_ is not None
                else order.store_id not in (condition.not_in or [])
            )
            detail["store_id"] = order.store_id
        case ChannelsCondition() if order is not None:
            ok = (
                order.channel in condition.in_
                if condition.in_ is not None
                else order.channel not in (condition.not_in or [])
            )
            detail["channel"] = order.channel
        case ItemsCondition():
            ok = bool(filters.get("items")) and Decimal(filters["items"]["amount"]) > 0
            detail |= filters.get("items", {})
        case PaymentsCondition():
            ok = bool(filters.get("payments")) and Decimal(filters["payments"]["paid_with"]) > 0
            detail |= filters.get("payments", {})
        case TiersCondition():
            ok = member.tier_code in condition.in_
            detail["tier"] = member.tier_code
        case PaidPlansCondition():
            ok = member.paid_plan_code in condition.in_
            detail["paid_plan"] = member.paid_plan_code
        case DatesCondition():
            ok = condition.contains(day)
            detail["date"] = day.isoformat()
        case WeekdaysCondition():
            ok = day.isoweekday() in condition.days
            detail["weekday"] = day.isoweekday()
        case MemberDayCondition():
            ok = (
                day.day == condition.day_of_month
                if condition.day_of_month is not None
                else day.isoweekday() == condition.weekday
            )
            detail["date"] = day.isoformat()
        case BirthdayCondition():
            ok = _birthday(member.birthday, day, condition.within)
            detail["within"] = condition.within
        case PropertyCondition() if event.action is not None:
            ok = _same(event.action.properties.get(condition.name), condition.equals)
            detail |= {"name": condition.name, "equals": condition.equals}
        case _:
            ok = False
    return detail if ok else None


def _apply_formula(formula: Any, base: Decimal | None) -> tuple[int, dict[str, Any]]:
    record: dict[str, Any] = {"kind": formula.kind}
    if isinstance(formula, FixedFormula):
        points = formula.points
    elif isinstance(formula, PerAmountFormula):
        rounding = ROUND_FLOOR if formula.rounding == "floor" else ROUND_HALF_UP
        units = int(((base or ZERO) / formula.per).to_integral_value(rounding))
        points = units * formula.points
        record |= {"per": str(formula.per), "points_per": formula.points, "rounding": formula.rounding}
        record["units"] = units
    else:
        raw = (base or ZERO) * formula.percent / 100 * formula.points_per_yuan
        points = int(raw.to_integral_value(ROUND_FLOOR))
        record |= {"percent": str(formula.percent), "points_per_yuan": str(formula.points_per_yuan)}
    record["points"] = points
    return max(points, 0), record


def _factor(d: RuleDefinition, event: _Event) -> tuple[Decimal, dict[str, Any]]:
    applied: list[tuple[str, str, Decimal]] = [
        ("rule", m.name, m.factor) for m in d.multipliers if m.applies(event.day)
    ]
    if d.apply_member_multipliers:
        applied += [("member", m.source, m.factor) for m in event.member.multipliers]
    factors = [f for _, _, f in applied]
    if not factors:
        factor = ONE
    elif d.stacking == "max":
        factor = max(factors)
        top = next(i for i, (_, _, f) in enumerate(applied) if f == factor)
        applied = [applied[top]]
    elif d.stacking == "multiply":
        factor = ONE
        for f in factors:
            factor *= f
    else:
        factor = ONE + sum((f - ONE for f in factors), Decimal(0))
    record: dict[str, Any] = {
        "stacking": d.stacking,
        "applied": [{"source": s, "name": n, "factor": str(f)} for s, n, f in applied],
    }
    if factor > MAX_FACTOR:
        record["limited_from"] = str(factor)
        factor = MAX_FACTOR
    record["factor"] = str(factor)
    return factor, record


def _clip(points: int, caps: Caps, usage: RuleUsage) -> tuple[int, list[dict[str, Any]]]:
    clipped: list[dict[str, Any]] = []
    for name, limit, used in (
        ("per_order", caps.per_order, 0),
        ("per_day", caps.per_day, usage.granted_today),
        ("per_member", caps.per_member, usage.granted_to_member),
        ("budget", caps.budget, usage.granted_total),
    ):
        if limit is None:
            continue
        remaining = max(limit - max(used, 0), 0)
        if points > remaining:
            clipped.append({"cap": name, "limit": limit, "used": used, "before": points, "after": remaining})
            points = remaining
    return max(points, 0), clipped
