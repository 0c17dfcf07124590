"""Earn rules: the definition's validation and the pure evaluator (no database)."""

from __future__ import annotations

import builtins
import json
import sys
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from huiyuan.points.rule_schema import MAX_FACTOR, dump_definition, parse_definition
from huiyuan.points.rules import (
    ActionFacts,
    ExternalMultiplier,
    Grant,
    ItemFacts,
    MemberFacts,
    OrderFacts,
    PaymentFacts,
    RuleInput,
    RuleUsage,
    evaluate,
)

TZ = "Asia/Shanghai"
# 2026-03-04 12:00 in Shanghai, a Wednesday.
NOON = datetime(2026, 3, 4, 4, 0, tzinfo=UTC)
MEMBER = MemberFacts(member_id=7, tier_code="gold", paid_plan_code="plus", birthday=date(1990, 3, 4))
LINES = [
    ItemFacts("milk-1l", 11, "food/dairy/milk", "mengniu", 2, Decimal("30.00"), Decimal("30.00")),
    ItemFacts("yogurt", 10, "food/dairy", "yili", 1, Decimal("20.00"), Decimal("20.00")),
    ItemFacts("oat-drink", 12, "food/dairy-free", "oatly", 1, Decimal("10.00"), Decimal("10.00")),
    ItemFacts("bread", 20, "food/bakery", None, 1, Decimal("15.00"), Decimal("15.00")),
    ItemFacts("kettle", 30, "electronics", "midea", 1, Decimal("24.99"), Decimal("24.99")),
]


def order_def(**overrides: Any) -> dict[str, Any]:
    return {
        "trigger": {"kind": "order"},
        "point_type": "points",
        "formula": {"kind": "per_amount", "per": "10.00", "points": 1},
        **overrides,
    }


def action_def(action: str = "check_in", **overrides: Any) -> dict[str, Any]:
    return {
        "trigger": {"kind": "action", "action": action},
        "point_type": "points",
        "formula": {"kind": "fixed", "points": 5},
        **overrides,
    }


def rule(definition: dict[str, Any], rule_id: int = 1, **kwargs: Any) -> RuleInput:
    return RuleInput(rule_id=rule_id, code=f"r{rule_id}", definition=parse_definition(definition), **kwargs)


def an_order(
    paid: str = "99.99",
    *,
    at: datetime = NOON,
    items: list[ItemFacts] | None = None,
    payments: list[tuple[str, Decimal]] | None = None,
) -> OrderFacts:
    amount = Decimal(paid)
    return OrderFacts(
        order_id=1,
        order_number="NO-1",
        member_id=MEMBER.member_id,
        store_id=1,
        channel="pos",
        paid_at=at,
        paid_amount=amount,
        deal_amount=amount,
        items=LINES if items is None else items,
        payments=[PaymentFacts("wechat", amount)] if payments is None else payments,
    )


def grants_for(
    *definitions: dict[str, Any],
    order: OrderFacts | None = None,
    action: ActionFacts | None = None,
    member: MemberFacts = MEMBER,
    usage: RuleUsage | None = None,
) -> list[Grant]:
    rules = [rule(d, i + 1, usage=usage or RuleUsage()) for i, d in enumerate(definitions)]
    if action is None and order is None:
        order = an_order()
    return evaluate(rules, order=order, action=action, member=member, tz=TZ)


def points(*definitions: dict[str, Any], **kwargs: Any) -> int:
    return sum(g.points for g in grants_for(*definitions, **kwargs))


# --- conditions ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("condition", "holds"),
    [
        ({"kind": "amount", "min": "99.99"}, True),
        ({"kind": "amount", "min": "100.00"}, False),
        ({"kind": "amount", "max": "99.99"}, True),
        ({"kind": "amount", "min": "10", "max": "50.00"}, False),
        ({"kind": "stores", "in": [1, 2]}, True),
        ({"kind": "stores", "in": [2]}, False),
        ({"kind": "stores", "not_in": [2]}, True),
        ({"kind": "stores", "not_in": [1]}, False),
        ({"kind": "channels", "in": ["pos"]}, True),
        ({"kind": "channels", "in": ["mini_program"]}, False),
        ({"kind": "channels", "not_in": ["mini_program"]}, True),
        ({"kind": "channels", "not_in": ["pos"]}, False),
        ({"kind": "items", "skus": ["bread"]}, True),
        ({"kind": "items", "skus": ["caviar"]}, False),
        ({"kind": "payments", "methods": ["wechat", "alipay"]}, True),
        ({"kind": "payments", "methods": ["cash"]}, False),
        ({"kind": "tiers", "in": ["gold", "platinum"]}, True),
        ({"kind": "tiers", "in": ["silver"]}, False),
        ({"kind": "paid_plans", "in": ["plus"]}, True),
        ({"kind": "paid_plans", "in": ["vip"]}, False),
        ({"kind": "dates", "from": "2026-03-01", "to": "2026-03-04"}, True),
        ({"kind": "dates", "from": "2026-03-04"}, True),
        ({"kind": "dates", "from": "2026-03-05", "to": "2026-03-31"}, False),
        ({"kind": "dates", "to": "2026-03-03"}, False),
        ({"kind": "weekdays", "days": [3]}, True),
        ({"kind": "weekdays", "days": [6, 7]}, False),
        ({"kind": "member_day", "day_of_month": 4}, True),
        ({"kind": "member_day", "day_of_month": 8}, False),
        ({"kind": "member_day", "weekday": 3}, True),
        ({"kind": "member_day", "weekday": 2}, False),
        ({"kind": "birthday"}, True),
        ({"kind": "birthday", "within": "month"}, True),
    ],
)
def test_order_condition(condition: dict[str, Any], holds: bool) -> None:
    assert (points(order_def(conditions=[condition])) > 0) is holds


@pytest.mark.parametrize(
    ("birthday", "within", "holds"),
    [
        (date(1990, 3, 4), "day", True),
        (date(1990, 3, 5), "day", False),
        (date(1990, 3, 31), "month", True),
        (date(1990, 4, 4), "month", False),
        (None, "day", False),
        (None, "month", False),
    ],
)
def test_birthday(birthday: date | None, within: str, holds: bool) -> None:
    member = MemberFacts(member_id=7, birthday=birthday)
    assert points(order_def(conditions=[{"kind": "birthday", "within": within}]), member=member) == (
        9 if holds else 0
    )


def test_birthday_of_29_february_counts_on_the_28th_in_other_years() -> None:
    member = MemberFacts(member_id=7, birthday=date(2000, 2, 29))
    definition = order_def(conditions=[{"kind": "birthday"}])
    on_28th = an_order(at=datetime(2026, 2, 28, 4, tzinfo=UTC))
    assert points(definition, order=on_28th, member=member) == 9
    leap_28th = an_order(at=datetime(2028, 2, 28, 4, tzinfo=UTC))
    assert points(definition, order=leap_28th, member=member) == 0
    assert points(definition, order=an_order(at=datetime(2028, 2, 29, 4, tzinfo=UTC)), member=member) == 9


def test_members_without_tier_or_plan_do_not_match() -> None:
    bare = MemberFacts(member_id=7)
    assert points(order_def(conditions=[{"kind": "tiers", "in": ["gold"]}]), member=bare) == 0
    assert points(order_def(conditions=[{"kind": "paid_plans", "in": ["plus"]}]), member=bare) == 0


def test_amount_of_base_reads_what_the_filters_leave() -> None:
    dairy = {"kind": "items", "category_paths": ["food/dairy"]}
    assert points(order_def(conditions=[dairy, {"kind": "amount", "min": "50.00", "of": "base"}])) == 5
    assert points(order_def(conditions=[dairy, {"kind": "amount", "min": "50.01", "of": "base"}])) == 0


def test_property_condition_on_actions() -> None:
    review = action_def("review", conditions=[{"kind": "property", "name": "stars", "equals": 5}])
    at = NOON
    assert points(review, action=ActionFacts("review", at, {"stars": 5})) == 5
    assert points(review, action=ActionFacts("review", at, {"stars": 4})) == 0
    assert points(review, action=ActionFacts("review", at, {})) == 0
    # typed equality: a string or a boolean is not the number
    assert points(review, action=ActionFacts("review", at, {"stars": "5"})) == 0
    flag = action_def("task", conditions=[{"kind": "property", "name": "done", "equals": True}])
    assert points(flag, action=ActionFacts("task", at, {"done": 1})) == 0
    assert points(flag, action=ActionFacts("task", at, {"done": True})) == 5


def test_triggers() -> None:
    check_in = action_def("check_in")
    assert points(check_in, action=ActionFacts("check_in", NOON)) == 5
    assert points(check_in, action=ActionFacts("review", NOON)) == 0
    assert points(check_in, order=an_order()) == 0
    assert points(order_def(), action=ActionFacts("check_in", NOON)) == 0
    custom = action_def("app.share_poster")
    assert points(custom, action=ActionFacts("app.share_poster", NOON)) == 5


def test_action_rules_use_local_dates() -> None:
    weekend = action_def(conditions=[{"kind": "weekdays", "days": [6]}])
    # Friday 2026-03-06 16:30Z is Saturday 00:30 in Shanghai.
    assert points(weekend, action=ActionFacts("check_in", datetime(2026, 3, 6, 16, 30, tzinfo=UTC))) == 5
    assert points(weekend, action=ActionFacts("check_in", datetime(2026, 3, 6, 15, 30, tzinfo=UTC))) == 0


def test_validity_window_is_half_open() -> None:
    definition = parse_definition(order_def())

    def run(valid_from: datetime | None, valid_to: datetime | None) -> int:
        r = RuleInput(1, "r1", definition, valid_from=valid_from, valid_to=valid_to)
        return sum(g.points for g in evaluate([r], order=an_order(), action=None, member=MEMBER, tz=TZ))

    assert run(NOON, None) == 9
    assert run(NOON + timedelta(seconds=1), None) == 0
    assert run(None, NOON) == 0
    assert run(None, NOON + timedelta(seconds=1)) == 9


# --- formulas ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("formula", "paid", "expected"),
    [
        ({"kind": "per_amount", "per": "10.00", "points": 1}, "99.99", 9),
        ({"kind": "per_amount", "per": "10", "points": 3}, "99.99", 27),
        ({"kind": "per_amount", "per": "10.00", "points": 1}, "9.99", 0),
        ({"kind": "per_amount", "per": "10.00", "points": 1, "rounding": "half_up"}, "95.00", 10),
        ({"kind": "per_amount", "per": "10.00", "points": 1, "rounding": "half_up"}, "94.99", 9),
        ({"kind": "per_amount", "per": "0.01", "points": 1}, "1.23", 123),
        ({"kind": "fixed", "points": 50}, "99.99", 50),
        ({"kind": "percent", "percent": "5"}, "99.99", 4),
        ({"kind": "percent", "percent": "5"}, "100.00", 5),
        ({"kind": "percent", "percent": "5", "points_per_yuan": "100"}, "99.99", 499),
        ({"kind": "percent", "percent": "0.5"}, "1000.00", 5),
    ],
)
def test_formula(formula: dict[str, Any], paid: str, expected: int) -> None:
    assert points(order_def(formula=formula), order=an_order(paid, items=[])) == expected


def test_grant_fields_and_explanation() -> None:
    definition = order_def(funded_by="merchant:acme-coffee", pending_days=7)
    [grant] = grants_for(definition)
    assert grant.rule_id == 1 and grant.rule_code == "r1" and grant.point_type == "points"
    assert grant.points == 9 and grant.funded_by == "merchant:acme-coffee" and grant.pending_days == 7
    assert grant.base_amount == Decimal("99.99") and grant.factor == Decimal(1)
    explanation = json.loads(json.dumps(grant.explanation))
    assert explanation["local_date"] == "2026-03-04"
    assert explanation["formula"] == {
        "kind": "per_amount",
        "per": "10.00",
        "points_per": 1,
        "rounding": "floor",
        "units": 9,
        "points": 9,
    }
    assert explanation["base_amount"] == "99.99" and explanation["caps"] == []


# --- item and payment filters --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("condition", "base"),
    [
        ({"kind": "items", "category_paths": ["food/dairy"]}, "50.00"),  # milk (descendant) + yogurt
        ({"kind": "items", "category_paths": ["/food/dairy/"]}, "50.00"),
        ({"kind": "items", "category_paths": ["food"]}, "75.00"),
        ({"kind": "items", "category_ids": [10]}, "20.00"),  # ids match exactly, no descendants
        ({"kind": "items", "skus": ["bread", "kettle"]}, "39.99"),
        ({"kind": "items", "product_brands": ["mengniu", "yili"]}, "50.00"),
        ({"kind": "items", "category_paths": ["food"], "product_brands": ["oatly"]}, "10.00"),
        ({"kind": "items", "category_paths": ["electronics"], "exclude": True}, "75.00"),
    ],
)
def test_items_filter_counts_only_matching_lines(condition: dict[str, Any], base: str) -> None:
    [grant] = grants_for(order_def(conditions=[condition]))
    assert grant.base_amount == Decimal(base)
    assert grant.points == int(Decimal(base) // 10)


def test_items_conditions_narrow_each_other() -> None:
    food = {"kind": "items", "category_paths": ["food"]}
    no_bakery = {"kind": "items", "category_paths": ["food/bakery"], "exclude": True}
    [grant] = grants_for(order_def(conditions=[food, no_bakery]))
    assert grant.base_amount == Decimal("60.00")
    assert grant.explanation["conditions"][0]["skus"] == ["milk-1l", "yogurt", "oat-drink"]


def test_items_filter_uses_the_paid_share_of_lines() -> None:
    discounted = [ItemFacts("bread", 20, "food/bakery", None, 1, Decimal("30.00"), Decimal("24.50"))]
    [grant] = grants_for(
        order_def(conditions=[{"kind": "items", "skus": ["bread"]}]),
        order=an_order("24.50", items=discounted),
    )
    assert grant.base_amount == Decimal("24.50")


def test_payment_filter_counts_the_share_paid_with_listed_methods() -> None:
    pays = [("wechat", Decimal("60.00")), ("cash", Decimal("39.99"))]
    order = an_order(payments=pays)
    wechat = {"kind": "payments", "methods": ["wechat"]}
    [grant] = grants_for(order_def(conditions=[wechat]), order=order)
    assert grant.base_amount == Decimal("60.00") and grant.points == 6
    # with an items filter: 50.00 of dairy × 60.00 / 99.99 paid by WeChat = 30.003 → 30.00
    dairy = {"kind": "items", "category_paths": ["food/dairy"]}
    [grant] = grants_for(order_def(conditions=[dairy, wechat]), order=order)
    assert grant.base_amount == Decimal("30.00") and grant.points == 3
    # two payment conditions intersect
    both = [wechat, {"kind": "payments", "methods": ["cash"]}]
    assert grants_for(order_def(conditions=both), order=order) == []


# --- multipliers ---------------------------------------------------------------------------------

CHRISTMAS = {"factor": "2", "name": "圣诞双倍", "dates": {"from": "2026-12-24", "to": "2026-12-26"}}


@pytest.mark.parametrize(
    ("paid_at", "expected"),
    [
        (datetime(2026, 12, 23, 15, 30, tzinfo=UTC), 9),  # 23:30 on the 23rd in Shanghai
        (datetime(2026, 12, 23, 16, 30, tzinfo=UTC), 18),  # 00:30 on the 24th in Shanghai
        (datetime(2026, 12, 26, 15, 59, tzinfo=UTC), 18),
        (datetime(2026, 12, 26, 16, 0, tzinfo=UTC), 9),  # the 27th has begun
    ],
)
def test_christmas_double_points_on_local_dates(paid_at: datetime, expected: int) -> None:
    assert points(order_def(multipliers=[CHRISTMAS]), order=an_order(at=paid_at)) == expected


@pytest.mark.parametrize(
    ("stacking", "factor", "expected"),
    [("max", "2", 20), ("multiply", "3.0", 30), ("add", "2.5", 25)],
)
def test_stacking_with_a_tier_multiplier(stacking: str, factor: str, expected: int) -> None:
    member = MemberFacts(member_id=7, multipliers=[ExternalMultiplier("tier:gold", Decimal("1.5"))])
    order = an_order("100.00", at=datetime(2026, 12, 24, 4, tzinfo=UTC))
    [grant] = grants_for(order_def(multipliers=[CHRISTMAS], stacking=stacking), order=order, member=member)
    assert grant.points == expected and grant.factor == Decimal(factor)
    applied = grant.explanation["multipliers"]["applied"]
    assert len(applied) == (1 if stacking == "max" else 2)


def test_stacking_defaults_to_max_and_member_multipliers_can_be_refused() -> None:
    member = MemberFacts(member_id=7, multipliers=[ExternalMultiplier("paid_plan:plus", Decimal("3"))])
    order = an_order("100.00", at=datetime(2026, 12, 24, 4, tzinfo=UTC))
    assert points(order_def(multipliers=[CHRISTMAS]), order=order, member=member) == 30
    refused = order_def(multipliers=[CHRISTMAS], stacking="multiply", apply_member_multipliers=False)
    assert points(refused, order=order, member=member) == 20
    assert points(order_def(), order=an_order("100.00"), member=member) == 30


def test_weekday_multiplier() -> None:
    wednesday = {"factor": "1.5", "name": "周三", "weekdays": [3]}
    assert points(order_def(multipliers=[wednesday]), order=an_order("100.00")) == 15
    saturday = {"factor": "1.5", "name": "周六", "weekdays": [6]}
    assert points(order_def(multipliers=[saturday]), order=an_order("100.00")) == 10


def test_stacked_factor_is_limited() -> None:
    many = [{"name": f"m{i}", "factor": "10"} for i in range(3)]
    [grant] = grants_for(order_def(multipliers=many, stacking="multiply"), order=an_order("100.00"))
    assert grant.factor == MAX_FACTOR and grant.points == 1000
    assert grant.explanation["multipliers"]["limited_from"] == "1000"


def test_external_multiplier_must_not_lower_points() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        ExternalMultiplier("tier:basic", Decimal("0.5"))


# --- caps ----------------------------------------------------------------------------------------


def test_per_order_cap() -> None:
    [grant] = grants_for(order_def(caps={"per_order": 5}))
    assert grant.points == 5
    assert grant.explanation["caps"] == [{"cap": "per_order", "limit": 5, "used": 0, "before": 9, "after": 5}]


@pytest.mark.parametrize(
    ("caps", "usage", "expected"),
    [
        ({"per_day": 20}, RuleUsage(granted_today=15), 5),
        ({"per_day": 20}, RuleUsage(granted_today=20), 0),
        ({"per_member": 100}, RuleUsage(granted_to_member=95), 5),
        ({"per_member": 100}, RuleUsage(granted_to_member=150), 0),
        ({"budget": 1000}, RuleUsage(granted_total=995), 5),
        ({"budget": 1000}, RuleUsage(granted_total=1000), 0),
        ({"per_order": 8, "per_day": 20, "budget": 1000}, RuleUsage(granted_today=14, granted_total=998), 2),
        ({"per_day": 20}, RuleUsage(granted_to_member=10_000, granted_total=10_000), 9),
    ],
)
def test_usage_caps_clip(caps: dict[str, int], usage: RuleUsage, expected: int) -> None:
    grants = grants_for(order_def(caps=caps), usage=usage)
    assert sum(g.points for g in grants) == expected
    assert all(g.points > 0 for g in grants)


def test_every_clipping_cap_is_explained() -> None:
    usage = RuleUsage(granted_today=14, granted_total=998)
    [grant] = grants_for(order_def(caps={"per_order": 8, "per_day": 20, "budget": 1000}), usage=usage)
    assert [c["cap"] for c in grant.explanation["caps"]] == ["per_order", "per_day", "budget"]
    assert grant.explanation["points_before_caps"] == 9 and grant.explanation["points"] == 2


# --- exclusivity and order -----------------------------------------------------------------------


def test_exclusive_rule_with_highest_priority_wins_per_point_type() -> None:
    everyday = order_def()
    campaign = order_def(formula={"kind": "fixed", "points": 100}, exclusive=True, priority=10)
    weaker = order_def(formula={"kind": "fixed", "points": 50}, exclusive=True, priority=5)
    growth = order_def(point_type="growth", formula={"kind": "fixed", "points": 3})
    grants = grants_for(everyday, campaign, weaker, growth)
    assert [(g.rule_code, g.points) for g in grants] == [("r2", 100), ("r4", 3)]
    assert grants[0].explanation["excluded"] == ["r3", "r1"]


def test_exclusive_rule_with_exhausted_budget_does_not_win() -> None:
    everyday = rule(order_def(), 1)
    spent = rule(order_def(formula={"kind": "fixed", "points": 100}, exclusive=True, caps={"budget": 10}), 2)
    spent = RuleInput(2, "r2", spent.definition, usage=RuleUsage(granted_total=10))
    grants = evaluate([everyday, spent], order=an_order(), action=None, member=MEMBER, tz=TZ)
    assert [(g.rule_code, g.points) for g in grants] == [("r1", 9)]


def test_exclusive_rule_that_does_not_match_does_not_exclude() -> None:
    vip_only = order_def(
        formula={"kind": "fixed", "points": 100},
        exclusive=True,
        conditions=[{"kind": "tiers", "in": ["vip"]}],
    )
    assert [g.rule_code for g in grants_for(order_def(), vip_only)] == ["r1"]


def test_non_exclusive_rules_add_up_in_priority_then_id_order() -> None:
    low = order_def(formula={"kind": "fixed", "points": 1})
    high = order_def(formula={"kind": "fixed", "points": 2}, priority=5)
    same = order_def(formula={"kind": "fixed", "points": 3})
    grants = grants_for(low, high, same)
    assert [g.rule_code for g in grants] == ["r2", "r1", "r3"]
    assert sum(g.points for g in grants) == 6


# --- rules are data ------------------------------------------------------------------------------

PAYLOAD = "__import__('sys').modules.__setitem__('huiyuan_pwned', 1)"


def test_malicious_looking_strings_are_only_compared(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("rules must never be evaluated as code")

    monkeypatch.setattr(builtins, "eval", refuse)
    monkeypatch.setattr(builtins, "exec", refuse)
    review = action_def("review", conditions=[{"kind": "property", "name": "comment", "equals": PAYLOAD}])
    assert points(review, action=ActionFacts("review", NOON, {"comment": "nice"})) == 0
    assert points(review, action=ActionFacts("review", NOON, {"comment": PAYLOAD})) == 5
    channel = order_def(conditions=[{"kind": "channels", "in": [PAYLOAD, "'; DROP TABLE members; --"]}])
    assert points(channel) == 0
    assert "huiyuan_pwned" not in sys.modules


# --- validation ----------------------------------------------------------------------------------


def error_locs(data: dict[str, Any]) -> list[tuple[Any, ...]]:
    with pytest.raises(ValidationError) as caught:
        parse_definition(data)
    return [tuple(e["loc"]) for e in caught.value.errors()]


def test_validation_unknown_condition_kind() -> None:
    with pytest.raises(ValidationError, match="'moon'"):
        parse_definition(order_def(conditions=[{"kind": "moon", "phase": "full"}]))
    assert error_locs(order_def(conditions=[{"kind": "moon"}])) == [("conditions", 0)]


@pytest.mark.parametrize("value", [-1, 0, "5", True, 2.0])
def test_validation_points_must_be_a_positive_integer(value: Any) -> None:
    assert error_locs(order_def(formula={"kind": "fixed", "points": value})) == [
        ("formula", "fixed", "points")
    ]


@pytest.mark.parametrize("name", ["Check_in", "9lives", "a", "check-in", "x" * 65, "check in"])
def test_validation_action_name_pattern(name: str) -> None:
    assert error_locs(action_def(name)) == [("trigger", "action", "action")]


def test_validation_extra_fields() -> None:
    assert error_locs(order_def(bonus=1)) == [("bonus",)]
    assert error_locs(order_def(formula={"kind": "fixed", "points": 1, "extra": 2})) == [
        ("formula", "fixed", "extra")
    ]
    assert error_locs(order_def(caps={"per_week": 5})) == [("caps", "per_week")]


@pytest.mark.parametrize("per", ["0", "0.00", "-10", "10.001", 10.5, "NaN"])
def test_validation_per_must_be_positive_money(per: Any) -> None:
    formula = {"kind": "per_amount", "per": per, "points": 1}
    assert error_locs(order_def(formula=formula)) == [("formula", "per_amount", "per")]


@pytest.mark.parametrize(
    ("data", "loc"),
    [
        (order_def(conditions=[{"kind": "stores", "in": [1], "not_in": [2]}]), ("conditions", 0, "stores")),
        (order_def(conditions=[{"kind": "stores", "in": []}]), ("conditions", 0, "stores", "in")),
        (order_def(conditions=[{"kind": "amount"}]), ("conditions", 0, "amount")),
        (order_def(conditions=[{"kind": "amount", "min": "9", "max": "1"}]), ("conditions", 0, "amount")),
        (
            order_def(conditions=[{"kind": "dates", "from": "2026-02-01", "to": "2026-01-01"}]),
            ("conditions", 0, "dates"),
        ),
        (
            order_def(conditions=[{"kind": "weekdays", "days": [1, 8]}]),
            ("conditions", 0, "weekdays", "days", 1),
        ),
        (
            order_def(conditions=[{"kind": "member_day", "day_of_month": 8, "weekday": 3}]),
            ("conditions", 0, "member_day"),
        ),
        (order_def(conditions=[{"kind": "items", "exclude": True}]), ("conditions", 0, "items")),
        (order_def(conditions=[{"kind": "property", "name": "x", "equals": 1}]), ("conditions",)),
        (action_def(conditions=[{"kind": "stores", "in": [1]}]), ("conditions",)),
        (action_def(formula={"kind": "per_amount", "per": "10", "points": 1}), ("formula",)),
        (action_def(pending_days=7), ("pending_days",)),
        (order_def(funded_by="somebody"), ("funded_by",)),
        (order_def(stacking="sum"), ("stacking",)),
        (order_def(multipliers=[{"name": "half", "factor": "0.5"}]), ("multipliers", 0, "factor")),
        (order_def(formula={"kind": "percent", "percent": "0"}), ("formula", "percent", "percent")),
    ],
)
def test_validation_reports_the_field(data: dict[str, Any], loc: tuple[Any, ...]) -> None:
    assert error_locs(data) == [loc]


def test_validation_message_names_the_condition() -> None:
    with pytest.raises(ValidationError, match=r"conditions\[1\]: 'items' applies to order rules only"):
        parse_definition(action_def(conditions=[{"kind": "birthday"}, {"kind": "items", "skus": ["a"]}]))


def test_definition_round_trips_through_json() -> None:
    data = order_def(
        conditions=[{"kind": "stores", "not_in": [3]}, {"kind": "dates", "from": "2026-12-01"}],
        multipliers=[CHRISTMAS],
        caps={"per_order": 500},
        formula={"kind": "per_amount", "per": "10", "points": 1},
    )
    stored = dump_definition(parse_definition(data))
    assert stored["formula"]["per"] == "10.00"
    assert stored["conditions"][0] == {"kind": "stores", "not_in": [3]}
    assert stored["conditions"][1] == {"kind": "dates", "from": "2026-12-01"}
    assert parse_definition(json.loads(json.dumps(stored))) == parse_definition(data)


def test_evaluate_refuses_ambiguous_or_naive_events() -> None:
    r = [rule(order_def())]
    with pytest.raises(ValueError, match="exactly one"):
        evaluate(r, order=an_order(), action=ActionFacts("check_in", NOON), member=MEMBER, tz=TZ)
    with pytest.raises(ValueError, match="exactly one"):
        evaluate(r, order=None, action=None, member=MEMBER, tz=TZ)
    with pytest.raises(ValueError, match="timezone-aware"):
        evaluate(r, order=an_order(at=datetime(2026, 3, 4, 12)), action=None, member=MEMBER, tz=TZ)


# --- invariants ----------------------------------------------------------------------------------

formulas = st.one_of(
    st.builds(
        lambda per, pts, rounding: {
            "kind": "per_amount",
            "per": str(per),
            "points": pts,
            "rounding": rounding,
        },
        st.decimals(min_value=Decimal("0.01"), max_value=Decimal("500"), places=2),
        st.integers(1, 1000),
        st.sampled_from(["floor", "half_up"]),
    ),
    st.builds(lambda pts: {"kind": "fixed", "points": pts}, st.integers(1, 10_000)),
    st.builds(
        lambda pct, ppy: {"kind": "percent", "percent": str(pct), "points_per_yuan": str(ppy)},
        st.decimals(min_value=Decimal("0.01"), max_value=Decimal("100"), places=2),
        st.decimals(min_value=Decimal("0.01"), max_value=Decimal("1000"), places=2),
    ),
)
caps = st.fixed_dictionaries(
    {},
    optional={k: st.integers(1, 5000) for k in ("per_order", "per_day", "per_member", "budget")},
)
factors = st.decimals(min_value=Decimal("1"), max_value=Decimal("10"), places=2)


@settings(max_examples=300, deadline=None)
@given(
    formula=formulas,
    cap=caps,
    stacking=st.sampled_from(["max", "multiply", "add"]),
    rule_factors=st.lists(factors, max_size=3),
    member_factors=st.lists(factors, max_size=2),
    usage=st.builds(RuleUsage, st.integers(0, 6000), st.integers(0, 6000), st.integers(0, 6000)),
    paid=st.decimals(min_value=Decimal("0"), max_value=Decimal("99999.99"), places=2),
)
def test_points_are_positive_and_within_every_cap(
    formula: dict[str, Any],
    cap: dict[str, int],
    stacking: str,
    rule_factors: list[Decimal],
    member_factors: list[Decimal],
    usage: RuleUsage,
    paid: Decimal,
) -> None:
    definition = order_def(
        formula=formula,
        caps=cap,
        stacking=stacking,
        multipliers=[{"name": f"m{i}", "factor": str(f)} for i, f in enumerate(rule_factors)],
    )
    member = MemberFacts(member_id=7, multipliers=[ExternalMultiplier("tier", f) for f in member_factors])
    grants = grants_for(definition, order=an_order(str(paid), items=[]), member=member, usage=usage)
    assert len(grants) <= 1
    for grant in grants:
        assert grant.points > 0
        used = {"per_order": 0, "per_day": usage.granted_today, "per_member": usage.granted_to_member}
        used["budget"] = usage.granted_total
        for name, limit in cap.items():
            assert grant.points <= limit - used[name]
        assert grant.factor <= MAX_FACTOR
        json.dumps(grant.explanation)
