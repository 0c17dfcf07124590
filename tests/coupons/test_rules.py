"""Coupon template rules: validation, field errors, cost splitting and validity windows (no database)."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from huiyuan.coupons.rules import (
    AmountOff,
    Conditions,
    CostShare,
    FixedValidity,
    RelativeValidity,
    TemplateRules,
    dump_template_rules,
    face_value,
    field_errors,
    fixed_value,
    parse_template_rules,
    split_cost,
    valid_window,
    validated_template_rules,
)
from huiyuan.kit.errors import ValidationFailed

SH = ZoneInfo("Asia/Shanghai")


def body(**overrides: Any) -> dict[str, Any]:
    return {
        "discount": {"kind": "threshold", "threshold": "300.00", "amount": "50.00"},
        "conditions": {"scenes": ["online", "in_store"], "exclude_categories": ["tobacco"]},
        "stacking": "stackable",
        "per_order_limit": 1,
        "cost_sharing": [{"party": "brand", "percent": "70"}, {"party": "store", "percent": "30"}],
        "validity": {"kind": "relative", "days": 30, "round_to": "end_of_day"},
        **overrides,
    }


def errors_of(data: dict[str, Any]) -> list[dict[str, Any]]:
    with pytest.raises(ValidationFailed) as caught:
        validated_template_rules(data)
    assert caught.value.status == 422
    return caught.value.errors


def error_at(data: dict[str, Any], field: str) -> str:
    """The message of the one error on ``field``."""
    found = [e for e in errors_of(data) if e["field"] == field]
    assert len(found) == 1, errors_of(data)
    return str(found[0]["message"])


# --- parsing ---------------------------------------------------------------------------------------


def test_a_full_template_parses_and_round_trips() -> None:
    rules = parse_template_rules(
        body(conditions={"hours": [{"from": "10:00", "to": "24:00"}], "categories": ["/apparel/shoes/"]})
    )
    assert rules.discount.kind == "threshold"
    assert rules.conditions.categories == ["apparel/shoes"]
    stored = dump_template_rules(rules)
    assert stored["conditions"]["hours"] == [{"from": "10:00", "to": "24:00"}]
    assert stored["discount"]["amount"] == "50.00"
    assert parse_template_rules(stored) == rules
    # The plain dump (what the templates service stores) reads back too.
    assert TemplateRules.model_validate(rules.model_dump(mode="json")) == rules


def test_defaults_are_exclusive_one_per_order_and_paid_by_the_brand() -> None:
    rules = parse_template_rules(
        {"discount": {"kind": "amount_off", "amount": "10"}, "validity": {"kind": "relative", "days": 7}}
    )
    assert rules.stacking == "exclusive"
    assert rules.per_order_limit == 1
    assert [(s.party, s.percent) for s in rules.cost_sharing] == [("brand", Decimal("100"))]
    assert rules.conditions == Conditions()


@pytest.mark.parametrize(
    ("discount", "field", "message"),
    [
        ({"kind": "amount_off", "amount": "0"}, "rules.discount.amount", "greater than 0"),
        ({"kind": "amount_off", "amount": 10.5}, "rules.discount.amount", "not as floats"),
        ({"kind": "amount_off", "amount": "10.005"}, "rules.discount.amount", "2 decimal places"),
        ({"kind": "percent_off", "percent": "0"}, "rules.discount.percent", "greater than 0"),
        ({"kind": "percent_off", "percent": "100"}, "rules.discount.percent", "less than 100"),
        ({"kind": "percent_off", "percent": "150"}, "rules.discount.percent", "less than 100"),
        ({"kind": "percent_off", "percent": "-5"}, "rules.discount.percent", "greater than 0"),
        ({"kind": "percent_off", "percent": "12.345"}, "rules.discount.percent", "2 decimal places"),
        ({"kind": "threshold", "threshold": "100", "amount": "120"}, "rules.discount", "must not exceed"),
        (
            {"kind": "threshold", "threshold": "100", "amount": "10", "max_times": 3},
            "rules.discount",
            "repeat: true",
        ),
        ({"kind": "gift_item", "sku": "mug", "quantity": 0, "value": "5"}, "rules.discount.quantity", "1"),
        ({"kind": "free_shipping", "cap": "0"}, "rules.discount.cap", "greater than 0"),
        ({"kind": "cashback", "amount": "5"}, "rules.discount.kind", "amount_off"),
        ({"kind": "amount_off", "amount": "5", "percent": "5"}, "rules.discount.percent", "Extra inputs"),
    ],
)
def test_bad_discounts(discount: dict[str, Any], field: str, message: str) -> None:
    assert message in error_at(
        body(discount=discount, cost_sharing=[{"party": "brand", "percent": "100"}]), field
    )


# --- cost sharing ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("shares", "message"),
    [
        ([{"party": "brand", "percent": "70"}, {"party": "store", "percent": "20"}], "add up to 90, not 100"),
        (
            [{"party": "brand", "percent": "70"}, {"party": "store", "percent": "40"}],
            "add up to 110, not 100",
        ),
        (
            [{"party": "brand", "percent": "50"}, {"party": "store", "amount": "25.00"}],
            "every share as a percent or every share as an amount",
        ),
        ([{"party": "brand", "percent": "60"}, {"party": "brand", "percent": "40"}], "two shares"),
        (
            [{"party": "brand", "amount": "40.00"}, {"party": "store", "amount": "5.00"}],
            "add up to 45.00, not the discount's face value 50.00",
        ),
        ([], "at least 1"),
    ],
)
def test_cost_shares_must_add_up(shares: list[dict[str, Any]], message: str) -> None:
    assert message in error_at(body(cost_sharing=shares), "rules.cost_sharing")


@pytest.mark.parametrize(
    ("share", "field", "message"),
    [
        ({"party": "brand"}, "", "exactly one of 'percent' or 'amount'"),
        ({"party": "brand", "percent": "100", "amount": "50"}, "", "exactly one of 'percent' or 'amount'"),
        ({"party": "brand", "percent": "0"}, ".percent", "greater than 0"),
        ({"party": "brand", "percent": "100.5"}, ".percent", "less than or equal to 100"),
    ],
)
def test_a_share_is_a_percent_or_an_amount(share: dict[str, Any], field: str, message: str) -> None:
    assert message in error_at(body(cost_sharing=[share]), "rules.cost_sharing.0" + field)


def test_an_unknown_party_names_the_field() -> None:
    assert error_at(body(cost_sharing=[{"party": "bank", "percent": "100"}]), "rules.cost_sharing.0.party")


def test_fixed_amounts_match_the_face_value_of_fixed_discounts() -> None:
    threshold = parse_template_rules(
        body(
            cost_sharing=[
                {"party": "brand", "amount": "30"},
                {"party": "third_party", "party_id": "visa", "amount": "20"},
            ]
        )
    )
    assert [s.party_id for s in threshold.cost_sharing] == [None, "visa"]
    gift = parse_template_rules(
        body(
            discount={"kind": "gift_item", "sku": "mug", "quantity": 2, "value": "12.50"},
            cost_sharing=[{"party": "brand", "amount": "20"}, {"party": "platform", "amount": "5"}],
        )
    )
    assert fixed_value(gift.discount) == Decimal("25.00")


@pytest.mark.parametrize(
    "discount",
    [
        {"kind": "percent_off", "percent": "15", "cap": "30"},
        {"kind": "threshold", "threshold": "100", "amount": "10", "repeat": True, "max_times": 3},
        {"kind": "free_shipping", "cap": "10"},
    ],
)
def test_discounts_without_a_fixed_value_need_percent_shares(discount: dict[str, Any]) -> None:
    message = error_at(
        body(discount=discount, cost_sharing=[{"party": "brand", "amount": "10"}]), "rules.cost_sharing"
    )
    assert f"a {discount['kind']} discount has no fixed value" in message


def test_face_value_is_the_most_a_coupon_can_be_worth() -> None:
    def face(discount: dict[str, Any]) -> Decimal | None:
        return face_value(
            parse_template_rules(body(discount=discount, cost_sharing=[{"party": "brand", "percent": "100"}]))
        )

    assert face({"kind": "amount_off", "amount": "10"}) == Decimal("10.00")
    assert face({"kind": "threshold", "threshold": "100", "amount": "10"}) == Decimal("10.00")
    assert face(
        {"kind": "threshold", "threshold": "100", "amount": "10", "repeat": True, "max_times": 3}
    ) == Decimal("30.00")
    assert face({"kind": "threshold", "threshold": "100", "amount": "10", "repeat": True}) is None
    assert face({"kind": "percent_off", "percent": "15", "cap": "30"}) == Decimal("30.00")
    assert face({"kind": "percent_off", "percent": "15"}) is None
    assert face({"kind": "free_shipping"}) is None
    assert face({"kind": "gift_item", "sku": "mug", "quantity": 3, "value": "4.99"}) == Decimal("14.97")
    assert face_value(AmountOff(kind="amount_off", amount=Decimal("5"))) == Decimal("5.00")


# --- conditions, stacking, validity ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("hours", "field", "message"),
    [
        ([{"from": "25:00", "to": "26:00"}], "rules.conditions.hours.0.from", "pattern"),
        ([{"from": "10:60", "to": "11:00"}], "rules.conditions.hours.0.from", "pattern"),
        ([{"from": "9:00", "to": "11:00"}], "rules.conditions.hours.0.from", "pattern"),
        ([{"from": "10:00", "to": "24:01"}], "rules.conditions.hours.0.to", "pattern"),
        ([{"from": "22:00", "to": "02:00"}], "rules.conditions.hours.0", "split a range across midnight"),
        ([{"from": "10:00", "to": "10:00"}], "rules.conditions.hours.0", "must be after 'from'"),
        ([{"from": "10:00"}], "rules.conditions.hours.0.to", "required"),
        ([{"start": "10:00", "to": "11:00"}], "rules.conditions.hours.0.start", "Extra inputs"),
    ],
)
def test_bad_hours(hours: list[dict[str, Any]], field: str, message: str) -> None:
    assert message in error_at(body(conditions={"hours": hours}), field)


@pytest.mark.parametrize(
    ("conditions", "field", "message"),
    [
        ({"weekdays": [0]}, "rules.conditions.weekdays.0", "greater than or equal to 1"),
        ({"weekdays": [8]}, "rules.conditions.weekdays.0", "less than or equal to 7"),
        ({"weekdays": [1, 1]}, "rules.conditions.weekdays", "must not repeat"),
        ({"scenes": ["mail_order"]}, "rules.conditions.scenes.0", "online"),
        ({"skus": ["a"], "exclude_skus": ["a", "b"]}, "rules.conditions", "a: both in skus and exclude_skus"),
        (
            {"categories": ["food"], "exclude_categories": ["/food/"]},
            "rules.conditions",
            "both in categories",
        ),
        ({"store_ids": [1, 2], "exclude_store_ids": [2]}, "rules.conditions", "both in store_ids"),
        ({"categories": ["apparel//shoes"]}, "rules.conditions.categories", "not a category path"),
        ({"categories": ["/"]}, "rules.conditions.categories", "not a category path"),
        ({"min_spend": "0"}, "rules.conditions.min_spend", "greater than 0"),
        ({"brands": ["nike"]}, "rules.conditions.brands", "Extra inputs"),
    ],
)
def test_bad_conditions(conditions: dict[str, Any], field: str, message: str) -> None:
    assert message in error_at(body(conditions=conditions), field)


def test_categories_match_whole_path_segments() -> None:
    conditions = Conditions(categories=["apparel/shoes"], exclude_categories=["apparel/shoes/kids"])
    assert conditions.matches_line("x", None, "apparel/shoes")
    assert conditions.matches_line("x", None, "/apparel/shoes/running/")
    assert not conditions.matches_line("x", None, "apparel/shoes-sale")
    assert not conditions.matches_line("x", None, "apparel/shoes/kids/boys")
    assert not conditions.matches_line("x", None, None)
    assert not conditions.matches_line("x", None, "apparel")


def test_an_exclusive_template_allows_one_coupon_per_order() -> None:
    message = error_at(body(stacking="exclusive", per_order_limit=2), "rules.per_order_limit")
    assert message == "an exclusive coupon is used alone on an order: per_order_limit must be 1"
    assert parse_template_rules(body(stacking="stackable", per_order_limit=3)).per_order_limit == 3


@pytest.mark.parametrize(
    ("validity", "field", "message"),
    [
        (
            {"kind": "fixed", "start": "2026-03-01T00:00:00", "end": "2026-04-01T00:00:00+08:00"},
            "start",
            "timezone",
        ),
        (
            {"kind": "fixed", "start": "2026-03-01T00:00:00+08:00", "end": "2026-03-01T00:00:00+08:00"},
            "",
            "after",
        ),
        ({"kind": "relative", "days": 0}, "days", "greater than or equal to 1"),
        ({"kind": "relative", "days": 7, "round_to": "end_of_week"}, "round_to", "end_of_month"),
        (
            {"kind": "relative", "days": 7, "starts_after_days": -1},
            "starts_after_days",
            "greater than or equal",
        ),
        ({"kind": "forever"}, "kind", "fixed"),
    ],
)
def test_bad_validity(validity: dict[str, Any], field: str, message: str) -> None:
    assert message in error_at(body(validity=validity), ".".join(filter(None, ["rules.validity", field])))


def test_field_errors_strip_pydantic_prefixes_and_union_tags() -> None:
    data = body(
        discount={"kind": "amount_off", "amount": "-1"},
        conditions={"hours": [{"from": "3:00", "to": "04:00"}]},
    )
    try:
        parse_template_rules(data)
    except ValidationError as exc:
        errors = field_errors(exc, data, prefix="")
    else:  # pragma: no cover
        pytest.fail("the rules should not validate")
    assert [e["field"] for e in errors] == ["discount.amount", "conditions.hours.0.from"]
    assert not any(
        str(e["message"]).startswith("Value error")
        for e in errors_of(body(per_order_limit=2, stacking="exclusive"))
    )
    assert errors_of({"validity": {"kind": "relative", "days": 1}})[0] == {
        "field": "rules.discount",
        "message": "Field required",
        "code": "missing",
    }


# --- split_cost ------------------------------------------------------------------------------------


def shares(*parts: tuple[str, str]) -> list[CostShare]:
    return [
        CostShare.model_validate({"party": party, ("amount" if "." in v else "percent"): v})
        for party, v in parts
    ]


def test_percent_shares_split_to_the_fen_by_largest_remainder() -> None:
    three = shares(("platform", "33.33"), ("brand", "33.33"), ("store", "33.34"))
    assert split_cost(three, Decimal("0.10")) == [
        ("platform", None, Decimal("0.03")),
        ("brand", None, Decimal("0.03")),
        ("store", None, Decimal("0.04")),
    ]
    # Equal remainders: the earlier share gets the fen.
    assert [p for _, _, p in split_cost(shares(("brand", "50"), ("store", "50")), Decimal("0.01"))] == [
        Decimal("0.01"),
        Decimal("0.00"),
    ]
    assert [p for _, _, p in split_cost(shares(("brand", "70"), ("store", "30")), Decimal("50.00"))] == [
        Decimal("35.00"),
        Decimal("15.00"),
    ]


def test_fixed_shares_are_paid_as_written_or_scaled_down() -> None:
    fixed = shares(("brand", "30.00"), ("store", "20.00"))
    assert [p for _, _, p in split_cost(fixed, Decimal("50.00"))] == [Decimal("30.00"), Decimal("20.00")]
    # The coupon only realised 12.34 of its 50 (a smaller cart): the same proportions, to the fen.
    assert [p for _, _, p in split_cost(fixed, Decimal("12.34"))] == [Decimal("7.40"), Decimal("4.94")]
    assert [p for _, _, p in split_cost(fixed, Decimal("0"))] == [Decimal("0.00"), Decimal("0.00")]
    with pytest.raises(ValueError, match="exceeds the shares' face value"):
        split_cost(fixed, Decimal("50.01"))


def test_split_cost_refuses_nonsense() -> None:
    with pytest.raises(ValueError, match="at least one"):
        split_cost([], Decimal("1"))
    with pytest.raises(ValueError, match="2 decimal places"):
        split_cost(shares(("brand", "100")), Decimal("1.001"))
    with pytest.raises(ValueError, match="mix"):
        split_cost(shares(("brand", "50"), ("store", "50.00")), Decimal("1"))


@settings(max_examples=150, deadline=None)
@given(
    weights=st.lists(st.integers(min_value=1, max_value=9_999), min_size=1, max_size=5),
    fen=st.integers(min_value=0, max_value=10**9),
)
def test_split_cost_always_adds_up(weights: list[int], fen: int) -> None:
    total = sum(weights)
    # Percents with 2 places adding up to exactly 100: scale the weights, the last one takes the rest.
    percents = [w * 10_000 // total for w in weights[:-1]]
    percents.append(10_000 - sum(percents))
    if any(p <= 0 for p in percents):
        return
    parties = ["platform", "brand", "store", "third_party", "third_party"]
    split = split_cost(
        [
            CostShare.model_validate({"party": parties[i], "party_id": str(i), "percent": Decimal(p) / 100})
            for i, p in enumerate(percents)
        ],
        Decimal(fen) / 100,
    )
    parts = [int(amount * 100) for _, _, amount in split]
    assert sum(parts) == fen
    for part, p in zip(parts, percents, strict=True):
        assert abs(part - fen * p / 10_000) < 1


# --- valid_window ----------------------------------------------------------------------------------

# 2026-03-04 15:30 in Shanghai.
RECEIVED = datetime(2026, 3, 4, 7, 30, tzinfo=UTC)


def local(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=SH).astimezone(UTC)


@pytest.mark.parametrize(
    ("validity", "window"),
    [
        ({"days": 7}, (RECEIVED, local(2026, 3, 11, 15, 30))),
        ({"days": 7, "round_to": "end_of_day"}, (RECEIVED, local(2026, 3, 12))),
        ({"days": 7, "round_to": "end_of_month"}, (RECEIVED, local(2026, 4, 1))),
        ({"days": 30, "round_to": "end_of_quarter"}, (RECEIVED, local(2026, 7, 1))),
        ({"days": 20, "round_to": "end_of_quarter"}, (RECEIVED, local(2026, 4, 1))),
        ({"days": 30, "round_to": "end_of_year"}, (RECEIVED, local(2027, 1, 1))),
        # From the next local midnight for 7 days: 5 March to 11 March included, not a day more.
        ({"days": 7, "starts_after_days": 1}, (local(2026, 3, 5), local(2026, 3, 12))),
        (
            {"days": 7, "starts_after_days": 1, "round_to": "end_of_day"},
            (local(2026, 3, 5), local(2026, 3, 12)),
        ),
        (
            {"days": 27, "starts_after_days": 1, "round_to": "end_of_month"},
            (local(2026, 3, 5), local(2026, 4, 1)),
        ),
    ],
)
def test_relative_windows(validity: dict[str, Any], window: tuple[datetime, datetime]) -> None:
    assert valid_window(RelativeValidity(kind="relative", **validity), RECEIVED, SH) == window


def test_the_local_day_decides_not_the_utc_day() -> None:
    # 2026-03-04 23:30 UTC is already 5 March in Shanghai.
    late = datetime(2026, 3, 4, 23, 30, tzinfo=UTC)
    validity = RelativeValidity(kind="relative", days=1, round_to="end_of_day")
    assert valid_window(validity, late, SH) == (late, local(2026, 3, 7))


def test_fixed_windows_are_the_same_for_everyone_in_utc() -> None:
    validity = FixedValidity.model_validate(
        {"kind": "fixed", "start": "2026-03-01T00:00:00+08:00", "end": "2026-04-01T00:00:00+08:00"}
    )
    start, end = valid_window(validity, RECEIVED, SH)
    assert (start, end) == (local(2026, 3, 1), local(2026, 4, 1))
    assert start.tzinfo is UTC


def test_valid_window_needs_an_aware_instant() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        valid_window(RelativeValidity(kind="relative", days=1), datetime(2026, 3, 4), SH)
