"""Coupon issue, checkout and settlement through the services, on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from decimal import Decimal

import pytest

from huiyuan.coupons import checkout, issuing, reports, templates
from huiyuan.coupons.cart import CouponCombinationNotAllowed, CouponNotApplicable
from huiyuan.coupons.schemas import RestockIn
from huiyuan.coupons.templates import BudgetExhausted, OutOfStock
from huiyuan.kit.clock import FrozenClock
from huiyuan.kit.db import Database
from huiyuan.kit.errors import IdempotencyMismatch, ValidationFailed
from huiyuan.points import ledger
from huiyuan.points.ledger import InsufficientPoints
from tests.coupons.helpers import CouponBrand, cart, check_coupons, make_coupon_brand
from tests.points.helpers import T0, frozen_clock


@pytest.fixture
def clock() -> Iterator[FrozenClock]:
    with frozen_clock() as c:
        yield c


@pytest.fixture
def cb(db: Database, clock: FrozenClock) -> CouponBrand:
    return make_coupon_brand(db)


def test_issue_is_idempotent_and_respects_stock_limits_and_budget(cb: CouponBrand) -> None:
    t = cb.template(stock_total=3, budget_total="25.00", limit_per_member=2)
    m0, m1, m2 = cb.members
    first = cb.issue(t.id, m0, "k1")
    again = cb.issue(t.id, m0, "k1")
    assert again.replayed and again.coupon.id == first.coupon.id
    with pytest.raises(IdempotencyMismatch):
        cb.issue(t.id, m1, "k1")
    cb.issue(t.id, m0, "k2")
    with pytest.raises(issuing.CouponLimitReached):
        cb.issue(t.id, m0, "k3")
    # 25 yuan of budget holds two 10-yuan coupons: the third is refused on budget, not stock.
    with pytest.raises(BudgetExhausted):
        cb.issue(t.id, m1, "k4")
    after = cb.get_template(t.id)
    assert (after.stock_available, after.budget_available) == (1, Decimal("5.00"))
    # Voiding gives stock and budget back.
    cb.run(issuing.void, coupon_id=first.coupon.id, reason="mistake")
    assert cb.issue(t.id, m2, "k5").coupon.status == "available"
    cb.run(templates.restock, template_id=t.id, data=RestockIn(quantity=-1, reason="pull back"))
    with pytest.raises(OutOfStock):
        cb.issue(t.id, m1, "k6")
    check_coupons(cb.db, cb.brand_id)


def test_validity_window_and_per_day_limits(cb: CouponBrand, clock: FrozenClock) -> None:
    t = cb.template(limit_per_member_per_day=1, limit_per_day=2)
    m0, m1, m2 = cb.members
    c = cb.issue(t.id, m0, "d1").coupon
    # T0 is 12:00 in Shanghai on 31 Jan; 30 days on, rounded to the end of that local day (2 Mar).
    assert c.valid_from == T0
    assert (
        c.valid_to.astimezone(__import__("zoneinfo").ZoneInfo("Asia/Shanghai")).strftime("%m-%d %H:%M")
        == "03-03 00:00"
    )
    with pytest.raises(issuing.CouponLimitReached):
        cb.issue(t.id, m0, "d2")
    cb.issue(t.id, m1, "d3")
    with pytest.raises(issuing.CouponLimitReached) as day_cap:
        cb.issue(t.id, m2, "d4")
    assert day_cap.value.extra["reason"] == "limit-per-day"
    clock.advance(days=1)
    cb.issue(t.id, m0, "d5")
    cb.issue(t.id, m2, "d6")


def test_claim_window_and_claim_centre(cb: CouponBrand, clock: FrozenClock) -> None:
    t = cb.template(
        claimable=True,
        claim_from=(T0 + timedelta(hours=1)).isoformat(),
        claim_to=(T0 + timedelta(hours=2)).isoformat(),
        stock_total=10,
    )
    m0 = cb.members[0]
    with pytest.raises(issuing.CouponNotIssuable) as early:
        cb.claim(t.id, m0, "c1")
    assert early.value.extra["reason"] == "not-started"
    with cb.db.unit_of_work(cb.actor.scope, write=False) as s:
        centre = issuing.claimable_for(s, brand_id=cb.brand_id, member_id=m0)
    assert [(c.template.id, c.reason) for c in centre] == [(t.id, "not-started")]
    clock.advance(minutes=61)
    grabbed = cb.claim(t.id, m0, "c1").coupon
    assert grabbed.channel == "grab"
    clock.advance(hours=1)
    with pytest.raises(issuing.CouponNotIssuable):
        cb.claim(t.id, cb.members[1], "c2")
    not_claimable = cb.template()
    with pytest.raises(issuing.CouponNotIssuable):
        cb.claim(not_claimable.id, m0, "c3")


def test_exchange_spends_points_atomically(cb: CouponBrand) -> None:
    t = cb.template(point_type="pts", points_price=300, stock_total=1)
    m0, m1, _ = cb.members
    cb.run(ledger.earn, member_id=m0, point_type="pts", amount=500, key="e0", source_type="order")
    with pytest.raises(InsufficientPoints):
        cb.run(issuing.exchange, member_id=m1, template_id=t.id, key="x1")
    # Nothing was issued for the refused exchange: the stock is still there.
    assert cb.get_template(t.id).stock_available == 1
    got = cb.run(issuing.exchange, member_id=m0, template_id=t.id, key="x2")
    again = cb.run(issuing.exchange, member_id=m0, template_id=t.id, key="x2")
    assert again.replayed and again.coupon.id == got.coupon.id and got.coupon.points_entry_id is not None
    with cb.db.unit_of_work(cb.actor.scope, write=False) as s:
        account = ledger.open_account(
            s,
            brand_id=cb.brand_id,
            member_id=m0,
            point_type_id=ledger.point_type_by_code(s, cb.brand_id, "pts").id,
        )
        assert account.available == 200
    check_coupons(cb.db, cb.brand_id)


def test_purchase_and_refund(cb: CouponBrand) -> None:
    t = cb.template(cash_price="9.90", stock_total=5)
    m0 = cb.members[0]
    with pytest.raises(ValidationFailed):
        cb.run(
            issuing.purchase,
            member_id=m0,
            template_id=t.id,
            key="p1",
            payment_reference="PAY-1",
            amount=Decimal("9.00"),
        )
    bought = cb.run(
        issuing.purchase,
        member_id=m0,
        template_id=t.id,
        key="p1",
        payment_reference="PAY-1",
        amount=Decimal("9.90"),
    ).coupon
    assert bought.channel == "purchase" and bought.paid_amount == Decimal("9.90")
    refunded = cb.run(issuing.refund_purchase, coupon_id=bought.id, reason="changed mind")
    assert refunded.status == "voided"
    assert cb.get_template(t.id).stock_available == 5
    assert cb.events(bought.id) == ["issued", "voided"]


def test_lock_redeem_settle_and_return(cb: CouponBrand, clock: FrozenClock) -> None:
    share = [{"party": "brand", "percent": "70"}, {"party": "store", "percent": "30"}]
    big = cb.template(
        {"kind": "threshold", "threshold": "100.00", "amount": "20.00"},
        rules_extra={"stacking": "stackable", "cost_sharing": share},
    )
    small = cb.template({"kind": "amount_off", "amount": "5.00"}, rules_extra={"stacking": "stackable"})
    m0 = cb.members[0]
    c1 = cb.issue(big.id, m0, "i1").coupon
    c2 = cb.issue(small.id, m0, "i2").coupon
    basket = cart(("SKU-1", "60.00", 2), store_id=None)
    held = cb.lock(m0, basket, "L1").lock
    assert (
        held.state == "held" and held.discount == Decimal("25.00") and held.order_amount == Decimal("120.00")
    )
    assert cb.coupon(c1.id).status == "locked"
    assert cb.lock(m0, basket, "L1").replayed
    with pytest.raises(IdempotencyMismatch):
        cb.lock(m0, cart(("SKU-1", "60.00", 3)), "L1")
    done = cb.run(checkout.redeem, lock_id=held.id, payment_reference="PAY-9").lock
    assert done.state == "redeemed"
    assert cb.run(checkout.redeem, lock_id=held.id, payment_reference="PAY-9").replayed
    assert {cb.coupon(c1.id).discount, cb.coupon(c2.id).discount} == {Decimal("20.00"), Decimal("5.00")}
    check_coupons(cb.db, cb.brand_id)
    with cb.db.unit_of_work(cb.actor.scope, write=False) as s:
        s1 = reports.settle(s, brand_id=cb.brand_id, start=T0 - timedelta(days=1), end=T0 + timedelta(days=1))
    assert s1.net == Decimal("25.00")
    assert s1.by_party == {"brand": Decimal("19.00"), "store": Decimal("6.00")}
    clock.advance(days=1)
    returned = cb.run(checkout.return_lock, lock_id=held.id, reason="refund").lock
    assert returned.state == "returned"
    assert cb.coupon(c1.id).status == "available"
    with cb.db.unit_of_work(cb.actor.scope, write=False) as s:
        s2 = reports.settle(
            s, brand_id=cb.brand_id, start=T0 - timedelta(days=1), end=T0 + timedelta(days=2), period="day"
        )
        stats = reports.stats(
            s, brand_id=cb.brand_id, start=T0 - timedelta(days=1), end=T0 + timedelta(days=2)
        )
    assert (s2.redeemed, s2.returned, s2.net) == (Decimal("25.00"), Decimal("25.00"), Decimal("0.00"))
    assert {r.key: (r.issued, r.used) for r in stats} == {str(big.id): (1, 1), str(small.id): (1, 1)}
    check_coupons(cb.db, cb.brand_id)


def test_release_and_timeout_give_coupons_back(cb: CouponBrand, clock: FrozenClock) -> None:
    t = cb.template()
    m0 = cb.members[0]
    c = cb.issue(t.id, m0, "i1").coupon
    basket = cart(("A", "50.00", 1))
    held = cb.lock(m0, basket, "L1", coupon_ids=[c.id]).lock
    with pytest.raises(checkout.CouponUnavailable):
        cb.lock(m0, basket, "L2", coupon_ids=[c.id])
    cb.run(checkout.release, lock_id=held.id, reason="cancelled")
    assert cb.coupon(c.id).status == "available"
    with pytest.raises(checkout.LockClosed):
        cb.run(checkout.redeem, lock_id=held.id, payment_reference=None)
    held2 = cb.lock(m0, basket, "L3", coupon_ids=[c.id], ttl_minutes=5).lock
    clock.advance(minutes=6)
    with pytest.raises(checkout.LockClosed):
        cb.run(checkout.redeem, lock_id=held2.id, payment_reference=None)
    # The member's next checkout finds the coupon free again (the timed-out hold is released first).
    held3 = cb.lock(m0, basket, "L4", coupon_ids=[c.id]).lock
    assert held3.state == "held"
    assert cb.events(c.id) == ["issued", "locked", "released", "locked", "released", "locked"]
    cb.run(checkout.release, lock_id=held3.id, reason="cancelled")
    assert cb.coupon(c.id).status == "available"


def test_refused_combinations_and_coupons_of_others(cb: CouponBrand) -> None:
    excl = cb.template({"kind": "amount_off", "amount": "10.00"})
    other = cb.template({"kind": "amount_off", "amount": "3.00"}, rules_extra={"stacking": "stackable"})
    min_spend = cb.template(
        {"kind": "amount_off", "amount": "3.00"}, rules_extra={"conditions": {"min_spend": "500.00"}}
    )
    m0, m1, _ = cb.members
    a = cb.issue(excl.id, m0, "a").coupon
    b = cb.issue(other.id, m0, "b").coupon
    c = cb.issue(min_spend.id, m0, "c").coupon
    d = cb.issue(other.id, m1, "d").coupon
    basket = cart(("A", "50.00", 1))
    with pytest.raises(CouponCombinationNotAllowed):
        cb.lock(m0, basket, "L1", coupon_ids=[a.id, b.id])
    with pytest.raises(CouponNotApplicable):
        cb.lock(m0, basket, "L2", coupon_ids=[c.id])
    with pytest.raises(Exception) as stranger:
        cb.lock(m0, basket, "L3", coupon_ids=[d.id])
    assert getattr(stranger.value, "status", None) == 404
    # Nothing stayed locked by the refused attempts.
    assert {cb.coupon(x.id).status for x in (a, b, c, d)} == {"available"}
    best = cb.lock(m0, basket, "L4").lock
    assert best.discount == Decimal("10.00")


def test_expiry_job_gives_budget_back(cb: CouponBrand, clock: FrozenClock) -> None:
    t = cb.template(budget_total="100.00")
    m0 = cb.members[0]
    c = cb.issue(t.id, m0, "i1").coupon
    assert cb.get_template(t.id).budget_available == Decimal("90.00")
    clock.advance(days=40)
    with cb.db.unit_of_work(cb.actor.scope) as s:
        assert checkout.expire_due(s, actor=cb.actor, now=clock.now())[0] == 1
    with cb.db.unit_of_work(cb.actor.scope) as s:
        assert checkout.expire_due(s, actor=cb.actor, now=clock.now())[0] == 0
    assert cb.coupon(c.id).status == "expired"
    assert cb.get_template(t.id).budget_available == Decimal("100.00")
    check_coupons(cb.db, cb.brand_id)


def test_imported_codes_are_handed_out_once(cb: CouponBrand) -> None:
    t = cb.template(code_source="imported")
    out = cb.run(templates.import_codes, template_id=t.id, text="code\nAAA-111\nBBB-222\nAAA-111\n\n")
    assert (out.imported, len(out.duplicates), out.stock_available) == (2, 1, 2)
    again = cb.run(templates.import_codes, template_id=t.id, text="AAA-111\nCCC-333\n")
    assert again.imported == 1 and again.already_stored == ["AAA-111"]
    got = {cb.issue(t.id, m, f"i{m}").coupon.code for m in cb.members}
    assert got == {"AAA-111", "BBB-222", "CCC-333"}
    with pytest.raises(OutOfStock):
        cb.issue(t.id, cb.members[0], "more")
    check_coupons(cb.db, cb.brand_id)


def test_lookup_by_code_as_typed(cb: CouponBrand) -> None:
    imported = cb.template(code_source="imported")
    cb.run(templates.import_codes, template_id=imported.id, text="partner-ab12\n")
    third_party = cb.issue(imported.id, cb.members[0], "tp").coupon
    generated = cb.issue(cb.template().id, cb.members[0], "gen").coupon
    grouped = "-".join(generated.code[i : i + 4] for i in range(0, len(generated.code), 4)).lower()
    with cb.db.unit_of_work(cb.actor.scope, write=False) as s:
        assert [c.id for c in issuing.list_coupons(s, code=" partner-ab12 ")] == [third_party.id]
        assert [c.id for c in issuing.list_coupons(s, code=grouped)] == [generated.id]
