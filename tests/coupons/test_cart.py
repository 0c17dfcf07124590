"""The cart evaluator: eligibility, application order, allocation to the fen and the best combination."""

from __future__ import annotations

import itertools
import random
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from huiyuan.coupons.cart import (
    Application,
    Candidate,
    Cart,
    CartLine,
    CouponCombinationNotAllowed,
    CouponNotApplicable,
    Gift,
    LineDiscount,
    apply,
    evaluate,
)
from huiyuan.coupons.rules import TemplateRules, parse_template_rules

SH = ZoneInfo("Asia/Shanghai")
# 2026-03-04 12:00 in Shanghai, a Wednesday.
NOON = datetime(2026, 3, 4, 4, 0, tzinfo=UTC)


def rules(
    discount: dict[str, Any], *, stacking: str = "stackable", limit: int = 1, **conditions: Any
) -> TemplateRules:
    return parse_template_rules(
        {
            "discount": discount,
            "conditions": conditions,
            "stacking": stacking,
            "per_order_limit": limit,
            "validity": {"kind": "relative", "days": 30},
        }
    )


def off(amount: str, **kw: Any) -> TemplateRules:
    return rules({"kind": "amount_off", "amount": amount}, **kw)


def percent(p: str, cap: str | None = None, **kw: Any) -> TemplateRules:
    return rules({"kind": "percent_off", "percent": p, **({"cap": cap} if cap else {})}, **kw)


def threshold(at: str, save: str, **kw: Any) -> TemplateRules:
    extra = {k: kw.pop(k) for k in ("repeat", "max_times") if k in kw}
    return rules({"kind": "threshold", "threshold": at, "amount": save, **extra}, **kw)


def coupon(
    coupon_id: int, template: TemplateRules, *, template_id: int | None = None, days: float = 30, **kw: Any
) -> Candidate:
    return Candidate(
        coupon_id=coupon_id,
        template_id=coupon_id if template_id is None else template_id,
        rules=template,
        valid_from=kw.get("valid_from", NOON - timedelta(days=1)),
        valid_to=NOON + timedelta(days=days),
    )


def line(line_id: str, price: str, *, sku: str | None = None, qty: int = 1, **kw: Any) -> CartLine:
    return CartLine(
        line_id,
        sku or line_id,
        qty,
        Decimal(price),
        kw.get("category"),
        kw.get("brand"),
        Decimal(kw.get("discount", "0")),
    )


def cart(*lines: CartLine, shipping: str = "0", **kw: Any) -> Cart:
    return Cart(lines=lines, shipping_fee=Decimal(shipping), at=kw.pop("at", NOON), **kw)


def money(*values: str) -> list[Decimal]:
    return [Decimal(v) for v in values]


def parts(application: Application) -> dict[int, list[tuple[str, Decimal]]]:
    return {c.coupon_id: [(ld.line_id, ld.amount) for ld in c.lines] for c in application.coupons}


# --- eligibility -----------------------------------------------------------------------------------

SHOES = line("run", "300.00", category="apparel/shoes/running", brand="nike")
KIDS = line("kid", "200.00", category="apparel/shoes/kids", brand="nike")
TOBACCO = line("cig", "50.00", category="tobacco")
TEE = line("tee", "100.00", category="apparel/tops", brand="uniqlo")
WARDROBE = cart(SHOES, KIDS, TOBACCO, TEE)


@pytest.mark.parametrize(
    ("conditions", "eligible"),
    [
        ({}, ["run", "kid", "cig", "tee"]),
        ({"exclude_categories": ["tobacco", "apparel/shoes/kids"]}, ["run", "tee"]),
        ({"exclude_product_brands": ["nike"]}, ["cig", "tee"]),
        ({"exclude_skus": ["run", "cig"]}, ["kid", "tee"]),
        ({"categories": ["apparel/shoes"], "exclude_skus": ["kid"]}, ["run"]),
        ({"categories": ["apparel"], "product_brands": ["uniqlo", "adidas"]}, ["tee"]),
        ({"skus": ["run", "tee"], "exclude_product_brands": ["uniqlo"]}, ["run"]),
        ({"product_brands": ["nike"], "categories": ["apparel/shoes/running", "apparel/tops"]}, ["run"]),
    ],
)
def test_eligible_lines_by_sku_brand_and_category(conditions: dict[str, Any], eligible: list[str]) -> None:
    result = apply(WARDROBE, [coupon(1, percent("10", **conditions))], SH)
    assert [ld.line_id for ld in result.coupons[0].lines] == eligible


def test_a_category_prefix_must_match_whole_segments() -> None:
    only = evaluate(WARDROBE, [coupon(1, off("5", categories=["apparel/shoe"]))], SH).candidates[0]
    assert (only.applies, only.reasons) == (False, ("no-eligible-items",))


def test_reasons_a_coupon_does_not_apply() -> None:
    basket = cart(
        line("a", "100.00"), line("b", "0.10"), store_id=7, scene="in_store", channel="pos", tier="silver"
    )
    candidates = [
        coupon(1, off("5", scenes=["online"])),
        coupon(2, off("5", store_ids=[1, 2])),
        coupon(3, off("5", exclude_store_ids=[7])),
        coupon(4, off("5", channels=["mini_program"])),
        coupon(5, off("5", tiers=["gold"])),
        coupon(6, off("5", paid_plans=["plus"])),
        coupon(7, off("5", min_spend="100.11")),
        coupon(8, threshold("150", "20")),
        coupon(9, rules({"kind": "free_shipping"})),
        coupon(10, off("5"), days=0),
        coupon(11, off("5"), valid_from=NOON + timedelta(seconds=1)),
        coupon(12, off("5", scenes=["online"], tiers=["gold"], skus=["zzz"])),
        coupon(13, percent("1", skus=["b"])),
        coupon(14, off("5", scenes=["in_store", "online"], store_ids=[7], tiers=["silver", "gold"])),
    ]
    found = {c.coupon_id: c.reasons for c in evaluate(basket, candidates, SH).candidates}
    assert found == {
        1: ("scene",),
        2: ("store",),
        3: ("store",),
        4: ("channel",),
        5: ("tier",),
        6: ("paid-plan",),
        7: ("min-spend",),
        8: ("threshold",),
        9: ("no-shipping-fee",),
        10: ("expired",),
        11: ("not-yet-valid",),
        12: ("scene", "tier", "no-eligible-items"),
        13: ("no-discount",),  # 1 % of 0.10 is a tenth of a fen
        14: (),
    }


def test_weekdays_and_hours_use_the_brands_local_time() -> None:
    # 17:30 UTC on Tuesday 3 March is 01:30 on Wednesday 4 March in Shanghai.
    late = datetime(2026, 3, 3, 17, 30, tzinfo=UTC)
    night = {"hours": [{"from": "00:00", "to": "02:00"}]}
    candidates = [
        coupon(1, off("5", weekdays=[3], **night)),
        coupon(2, off("5", weekdays=[2])),
        coupon(3, off("5", hours=[{"from": "10:00", "to": "22:00"}])),
        coupon(4, off("5", hours=[{"from": "08:00", "to": "09:00"}, {"from": "01:00", "to": "01:31"}])),
    ]
    found = {
        c.coupon_id: c.reasons for c in evaluate(cart(line("a", "50"), at=late), candidates, SH).candidates
    }
    assert found == {1: (), 2: ("weekday",), 3: ("hours",), 4: ()}
    # At 02:00 local the night range has ended: ``to`` is exclusive.
    two = datetime(2026, 3, 3, 18, 0, tzinfo=UTC)
    assert evaluate(cart(line("a", "50"), at=two), candidates[:1], SH).candidates[0].reasons == ("hours",)


# --- amounts and application order -----------------------------------------------------------------


def test_thresholds_count_the_amount_after_promotions() -> None:
    basket = cart(line("a", "150.00", discount="10.00"), line("b", "150.00"))
    results = evaluate(
        basket, [coupon(1, threshold("300", "50")), coupon(2, off("20", min_spend="290.01"))], SH
    )
    assert [c.reasons for c in results.candidates] == [("threshold",), ("min-spend",)]
    assert evaluate(basket, [coupon(1, threshold("290", "50"))], SH).best.totals.coupon_discount == Decimal(
        "50.00"
    )


def test_a_threshold_no_longer_met_after_an_earlier_coupon() -> None:
    first, second = coupon(1, threshold("300", "50")), coupon(2, threshold("280", "30"))
    basket = cart(line("a", "300.00"))
    with pytest.raises(CouponNotApplicable) as caught:
        apply(basket, [second, first], SH)
    error = caught.value
    assert (error.status, error.code) == (422, "coupon-not-applicable")
    assert error.extra == {"coupon_id": 2, "reasons": ["threshold"], "applied_before": [1]}
    # Alone each applies; the best is the larger one.
    found = evaluate(basket, [first, second], SH)
    assert [c.applies for c in found.candidates] == [True, True]
    assert found.best.coupon_ids == [1]
    # With 400 the second still sees 350 after the first.
    assert apply(cart(line("a", "400.00")), [second, first], SH).totals.coupon_discount == Decimal("80.00")


def test_repeating_thresholds() -> None:
    basket = cart(line("a", "350.00"))
    assert apply(basket, [coupon(1, threshold("100", "15", repeat=True))], SH).benefit == Decimal("45.00")
    assert apply(
        basket, [coupon(1, threshold("100", "15", repeat=True, max_times=2))], SH
    ).benefit == Decimal("30.00")
    assert apply(basket, [coupon(1, threshold("100", "15"))], SH).benefit == Decimal("15.00")


def test_the_higher_spend_requirement_goes_first() -> None:
    # The repeating threshold (100) is applied before the amount off (no requirement): 3 × 15, then 60.
    basket = cart(line("a", "350.00"))
    result = apply(basket, [coupon(1, off("60")), coupon(2, threshold("100", "15", repeat=True))], SH)
    assert [(c.coupon_id, c.discount) for c in result.coupons] == [
        (2, Decimal("45.00")),
        (1, Decimal("60.00")),
    ]


def test_percent_off_applies_to_what_is_left_and_respects_its_cap() -> None:
    basket = cart(line("a", "200.00"))
    result = apply(basket, [coupon(1, percent("20")), coupon(2, off("50"))], SH)
    assert [(c.coupon_id, c.discount) for c in result.coupons] == [
        (2, Decimal("50.00")),
        (1, Decimal("30.00")),
    ]
    capped = apply(basket, [coupon(1, percent("20", cap="25")), coupon(2, off("50"))], SH)
    assert capped.totals.coupon_discount == Decimal("75.00")
    # Half up to the fen: 15 % of 0.30 is 0.045.
    assert apply(cart(line("a", "0.30")), [coupon(1, percent("15"))], SH).benefit == Decimal("0.05")


def test_a_discount_never_exceeds_the_eligible_amount() -> None:
    basket = cart(line("a", "30.00"), line("b", "12.34"), line("c", "99.00", sku="excluded"))
    result = apply(basket, [coupon(1, off("100", exclude_skus=["excluded"])), coupon(2, percent("50"))], SH)
    assert parts(result)[1] == [("a", Decimal("30.00")), ("b", Decimal("12.34"))]
    assert parts(result)[2] == [("a", Decimal("0.00")), ("b", Decimal("0.00")), ("c", Decimal("49.50"))]
    assert result.totals.payable == Decimal("49.50")


def test_allocation_to_the_fen_over_awkward_prices() -> None:
    basket = cart(line("a", "10.01"), line("b", "10.01"), line("c", "10.01"))
    # 10 yuan over three equal lines: 3.333… each, the leftover fen to the first.
    assert parts(apply(basket, [coupon(1, off("10"))], SH))[1] == [
        ("a", Decimal("3.34")),
        ("b", Decimal("3.33")),
        ("c", Decimal("3.33")),
    ]
    odd = cart(line("a", "0.01"), line("b", "9.99"), line("c", "6.66", qty=3))
    result = apply(odd, [coupon(1, percent("33"))], SH)
    # 33 % of 29.98 = 9.8934 → 9.89; exact shares 0.0033, 3.2955, 6.5912; leftovers to the largest remainders.
    assert parts(result)[1] == [("a", Decimal("0.00")), ("b", Decimal("3.30")), ("c", Decimal("6.59"))]
    assert result.coupons[0].discount == Decimal("9.89")


def test_free_shipping_with_a_cap_and_a_second_coupon_for_the_rest() -> None:
    basket = cart(line("a", "100.00"), shipping="12.00")
    first, second = (
        coupon(1, rules({"kind": "free_shipping", "cap": "10"})),
        coupon(2, rules({"kind": "free_shipping"})),
    )
    result = apply(basket, [first, second], SH)
    assert [c.shipping_discount for c in result.coupons] == money("10.00", "2.00")
    assert result.totals.shipping_discount == Decimal("12.00")
    assert result.totals.payable == Decimal("100.00")
    assert evaluate(basket, [first, second], SH).best.coupon_ids == [2]  # the same 12 with one coupon


def test_free_shipping_checks_its_minimum_after_the_goods_coupons() -> None:
    basket = cart(line("a", "100.00"), shipping="12.00")
    shipping, money_off = coupon(1, rules({"kind": "free_shipping"}, min_spend="90")), coupon(2, off("20"))
    with pytest.raises(CouponNotApplicable) as caught:
        apply(basket, [shipping, money_off], SH)
    assert caught.value.extra["reasons"] == ["min-spend"]
    assert evaluate(basket, [shipping, money_off], SH).best.coupon_ids == [2]


def test_gift_items_come_first_and_cost_nothing_to_the_member() -> None:
    basket = cart(line("a", "120.00"))
    gift = coupon(
        1, rules({"kind": "gift_item", "sku": "mug", "quantity": 2, "value": "15.00"}, min_spend="100")
    )
    result = apply(basket, [coupon(2, off("30")), gift], SH)
    # The gift's minimum sees 120, before the 30 off takes the cart below 100.
    assert result.coupon_ids == [1, 2]
    assert result.gifts == [Gift(coupon_id=1, sku="mug", quantity=2, unit_value=Decimal("15.00"))]
    assert result.coupons[0].lines == (LineDiscount("a", Decimal("0.00")),)
    assert (result.coupons[0].gift_value, result.coupons[0].benefit) == (Decimal("30.00"), Decimal("30.00"))
    totals = result.totals
    assert [totals.coupon_discount, totals.gift_value, totals.payable] == money("30.00", "30.00", "90.00")


def test_totals() -> None:
    basket = cart(line("a", "19.90", qty=3, discount="5.70"), line("b", "5.00"), shipping="8.00")
    result = apply(
        basket, [coupon(1, off("10")), coupon(2, rules({"kind": "free_shipping", "cap": "6"}))], SH
    )
    t = result.totals
    assert [
        t.goods,
        t.promotions,
        t.coupon_discount,
        t.shipping,
        t.shipping_discount,
        t.gift_value,
        t.payable,
    ] == money("64.70", "5.70", "10.00", "8.00", "6.00", "0.00", "51.00")
    assert result.benefit == Decimal("16.00")
    stored = result.to_json()
    assert stored["totals"]["payable"] == "51.00"
    assert stored["coupons"][0] == {
        "coupon_id": 1,
        "template_id": 1,
        "kind": "amount_off",
        "discount": "10.00",
        "shipping_discount": "0.00",
        "gift_value": "0.00",
        "lines": [{"line_id": "a", "amount": "9.15"}, {"line_id": "b", "amount": "0.85"}],
        "gift": None,
    }


# --- stacking and the best combination -------------------------------------------------------------


def test_exclusive_coupons_are_used_alone() -> None:
    basket = cart(line("a", "1000.00"))
    exclusive = coupon(1, off("100", stacking="exclusive"))
    stackable = [coupon(2, off("60")), coupon(3, off("50"))]
    assert evaluate(basket, [exclusive, *stackable], SH).best.coupon_ids == [2, 3]
    bigger = coupon(4, off("120", stacking="exclusive"))
    assert evaluate(basket, [exclusive, bigger, *stackable], SH).best.coupon_ids == [4]
    with pytest.raises(CouponCombinationNotAllowed) as caught:
        apply(basket, [stackable[0], exclusive], SH)
    assert (caught.value.status, caught.value.code) == (422, "coupon-combination-not-allowed")
    assert caught.value.extra == {"reason": "exclusive", "coupon_ids": [1]}
    assert apply(basket, [exclusive], SH).benefit == Decimal("100.00")


def test_per_order_limit_takes_the_soonest_expiring_coupons() -> None:
    basket = cart(line("a", "1000.00"))
    template = off("10", limit=2)
    wallet = [coupon(i, template, template_id=9, days=d) for i, d in ((1, 20), (2, 5), (3, 10))]
    found = evaluate(basket, wallet, SH)
    assert found.best.coupon_ids == [2, 3]
    with pytest.raises(CouponCombinationNotAllowed) as caught:
        apply(basket, wallet, SH)
    assert caught.value.extra == {"reason": "per-order-limit", "template_id": 9, "coupon_ids": [1, 2, 3]}
    with pytest.raises(CouponCombinationNotAllowed, match="more than once"):
        apply(basket, [wallet[0], wallet[0]], SH)


def test_ties_go_to_fewer_coupons_then_the_soonest_expiring() -> None:
    basket = cart(line("a", "20.00"))
    assert evaluate(
        basket, [coupon(1, off("10")), coupon(2, off("10")), coupon(3, off("20"))], SH
    ).best.coupon_ids == [3]
    later, sooner = (
        coupon(1, off("10", stacking="exclusive"), days=30),
        coupon(2, off("10", stacking="exclusive"), days=5),
    )
    assert evaluate(basket, [later, sooner], SH).best.coupon_ids == [2]
    assert evaluate(basket, [], SH).best == apply(basket, [], SH)
    assert apply(basket, [], SH).totals.payable == Decimal("20.00")


def test_candidates_are_reported_in_the_order_given() -> None:
    basket = cart(line("a", "100.00"))
    found = evaluate(
        basket,
        [coupon(5, off("10")), coupon(3, percent("15", cap="12")), coupon(4, off("5", tiers=["x"]))],
        SH,
    )
    assert [(c.coupon_id, c.applies, c.discount) for c in found.candidates] == [
        (5, True, Decimal("10.00")),
        (3, True, Decimal("12.00")),
        (4, False, Decimal("0.00")),
    ]
    assert found.best.coupon_ids == [5, 3]
    assert found.best.totals.coupon_discount == Decimal("22.00")  # 10, then 15 % of 90 = 13.50 capped at 12


def test_inputs_are_checked() -> None:
    with pytest.raises(ValueError, match="exceeds the line amount"):
        line("a", "10.00", discount="10.01")
    with pytest.raises(ValueError, match="2 decimal places"):
        line("a", "10.001")
    with pytest.raises(ValueError, match="timezone-aware"):
        cart(line("a", "1"), at=datetime(2026, 3, 4))
    with pytest.raises(ValueError, match="line ids"):
        cart(line("a", "1"), line("a", "2"))
    with pytest.raises(ValueError, match="twice"):
        evaluate(cart(line("a", "1")), [coupon(1, off("1")), coupon(1, off("1"))], SH)
    with pytest.raises(ValueError, match="disagree"):
        evaluate(
            cart(line("a", "1")),
            [coupon(1, off("1"), template_id=1), coupon(2, off("1", limit=2), template_id=1)],
            SH,
        )


# --- search: exact, fast -------------------------------------------------------------------------

SKUS = ("a", "b", "c", "d")


def random_template(r: random.Random) -> TemplateRules:
    kind = r.choice(("amount_off", "percent_off", "threshold", "repeat", "gift", "shipping"))
    if kind == "amount_off":
        discount: dict[str, Any] = {"kind": kind, "amount": str(r.randint(1, 80))}
    elif kind == "percent_off":
        discount = {"kind": kind, "percent": str(r.randint(5, 50))}
        if r.random() < 0.5:
            discount["cap"] = str(r.randint(5, 60))
    elif kind in ("threshold", "repeat"):
        at = r.randint(20, 300)
        discount = {
            "kind": "threshold",
            "threshold": str(at),
            "amount": str(r.randint(1, at // 2)),
            "repeat": kind == "repeat",
        }
    elif kind == "gift":
        discount = {"kind": "gift_item", "sku": "gift", "value": str(r.randint(1, 30))}
    else:
        discount = {"kind": "free_shipping"}
    conditions: dict[str, Any] = {}
    if r.random() < 0.3:
        conditions["skus"] = r.sample(SKUS, 2)
    elif r.random() < 0.3:
        conditions["exclude_skus"] = r.sample(SKUS, 1)
    if r.random() < 0.4:
        conditions["min_spend"] = str(r.randint(10, 300))
    exclusive = r.random() < 0.2
    return rules(
        discount,
        stacking="exclusive" if exclusive else "stackable",
        limit=1 if exclusive else r.randint(1, 3),
        **conditions,
    )


def random_case(r: random.Random, coupons: int, lines: int) -> tuple[Cart, list[Candidate]]:
    basket = cart(
        *(
            line(f"l{i}", str(Decimal(r.randint(100, 30_000)) / 100), sku=r.choice(SKUS), qty=r.randint(1, 3))
            for i in range(lines)
        ),
        shipping="12.00",
    )
    templates = [random_template(r) for _ in range(max(1, coupons // 2))]
    wallet = []
    for i in range(coupons):
        t = r.randrange(len(templates))
        wallet.append(coupon(i + 1, templates[t], template_id=t, days=r.randint(1, 30)))
    return basket, wallet


def test_twenty_candidates_are_searched_exactly_with_few_nodes() -> None:
    # The search's size, not its time, is asserted (time is measured in bench/coupons.py).
    r = random.Random(20)
    nodes = []
    for _ in range(100):
        basket, wallet = random_case(r, 20, 8)
        found = evaluate(basket, wallet, SH)
        nodes.append(found.explored)
        assert found.exact
    assert max(nodes) < 1_000


def test_a_huge_wallet_stops_at_the_step_budget_with_a_valid_combination() -> None:
    basket, wallet = random_case(random.Random(3), 60, 8)
    found = evaluate(basket, wallet, SH, max_steps=200)
    assert not found.exact
    by_id = {c.coupon_id: c for c in wallet}
    assert apply(basket, [by_id[i] for i in found.best.coupon_ids], SH) == found.best


def best_by_brute_force(basket: Cart, wallet: list[Candidate]) -> Application:
    """Every subset through ``apply``; the best by benefit, fewer coupons, soonest expiries, lowest ids."""
    expires = {c.coupon_id: c.valid_to for c in wallet}
    best: tuple[Any, Application] | None = None
    for size in range(len(wallet) + 1):
        for subset in itertools.combinations(wallet, size):
            try:
                application = apply(basket, list(subset), SH)
            except (CouponNotApplicable, CouponCombinationNotAllowed):
                continue
            ids = application.coupon_ids
            key = (-application.benefit, len(ids), sorted(expires[i] for i in ids), sorted(ids))
            if best is None or key < best[0]:
                best = (key, application)
    assert best is not None
    return best[1]


def cents(low: int, high: int) -> st.SearchStrategy[str]:
    return st.integers(min_value=low, max_value=high).map(lambda c: str(Decimal(c) / 100))


def limit_for(stacking: str) -> st.SearchStrategy[int]:
    return st.just(1) if stacking == "exclusive" else st.integers(min_value=1, max_value=3)


@st.composite
def templates(draw: st.DrawFn) -> TemplateRules:
    kind = draw(st.sampled_from(("amount_off", "percent_off", "threshold", "gift_item", "free_shipping")))
    if kind == "amount_off":
        discount: dict[str, Any] = {"kind": kind, "amount": draw(cents(1, 5_000))}
    elif kind == "percent_off":
        discount = {"kind": kind, "percent": str(draw(st.integers(min_value=1, max_value=99)))}
        if draw(st.booleans()):
            discount["cap"] = draw(cents(1, 2_000))
    elif kind == "threshold":
        at = draw(st.integers(min_value=2, max_value=10_000))
        discount = {"kind": kind, "threshold": str(Decimal(at) / 100), "amount": draw(cents(1, at))}
        if draw(st.booleans()):
            discount["repeat"] = True
            if draw(st.booleans()):
                discount["max_times"] = draw(st.integers(min_value=1, max_value=3))
    elif kind == "gift_item":
        discount = {"kind": kind, "sku": "gift", "value": draw(cents(1, 1_000))}
    else:
        discount = {"kind": kind}
        if draw(st.booleans()):
            discount["cap"] = draw(cents(1, 500))
    conditions: dict[str, Any] = {}
    if draw(st.booleans()):
        conditions["skus"] = draw(st.lists(st.sampled_from(SKUS[:3]), min_size=1, max_size=2, unique=True))
    if draw(st.booleans()):
        conditions["min_spend"] = draw(cents(1, 10_000))
    stacking = draw(st.sampled_from(("stackable", "stackable", "exclusive")))
    return rules(discount, stacking=stacking, limit=draw(limit_for(stacking)), **conditions)


@st.composite
def cases(draw: st.DrawFn) -> tuple[Cart, list[Candidate]]:
    lines = [
        line(
            f"l{i}",
            draw(cents(1, 10_000)),
            sku=draw(st.sampled_from(SKUS[:3])),
            qty=draw(st.integers(min_value=1, max_value=3)),
        )
        for i in range(draw(st.integers(min_value=1, max_value=4)))
    ]
    basket = cart(*lines, shipping=draw(cents(0, 1_500)))
    pool = draw(st.lists(templates(), min_size=1, max_size=4))
    wallet = [
        coupon(i + 1, pool[t], template_id=t, days=draw(st.integers(min_value=1, max_value=5)))
        for i, t in enumerate(
            draw(st.lists(st.integers(min_value=0, max_value=len(pool) - 1), min_size=1, max_size=6))
        )
    ]
    return basket, wallet


@settings(max_examples=150, deadline=None)
@given(case=cases())
def test_the_best_combination_is_the_brute_force_optimum(case: tuple[Cart, list[Candidate]]) -> None:
    basket, wallet = case
    found = evaluate(basket, wallet, SH)
    assert found.exact
    expected = best_by_brute_force(basket, wallet)
    assert found.best.benefit == expected.benefit
    assert found.best == expected
    # Allocations add up to each coupon's discount, and no line pays less than nothing.
    net = {ln.line_id: ln.unit_price * ln.quantity - ln.discount for ln in basket.lines}
    for applied in found.best.coupons:
        assert sum((ld.amount for ld in applied.lines), Decimal(0)) == applied.discount
        for ld in applied.lines:
            assert ld.amount >= 0
            net[ld.line_id] -= ld.amount
    assert all(left >= 0 for left in net.values())
    assert found.best.totals.payable >= 0
