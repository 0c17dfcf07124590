"""Concurrent claims and redemptions on SQLite and PostgreSQL: the last coupon goes to exactly one
member, one coupon is used once, one key issues once.

Every racer runs in its own ``unit_of_work`` on its own thread; the threads are released together.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest

from huiyuan.coupons import checkout
from huiyuan.coupons.templates import OutOfStock
from huiyuan.kit.clock import FrozenClock
from huiyuan.kit.db import Database
from huiyuan.members import service as members
from huiyuan.members.schemas import MemberEnroll
from tests.coupons.helpers import CouponBrand, cart, check_coupons, make_coupon_brand
from tests.points.helpers import frozen_clock, race


@pytest.fixture
def clock() -> Iterator[FrozenClock]:
    with frozen_clock() as c:
        yield c


@pytest.fixture
def cb(db: Database, clock: FrozenClock) -> CouponBrand:
    brand = make_coupon_brand(db, members_count=0)
    with db.unit_of_work(brand.actor.scope) as s:
        for n in range(50):
            brand.members.append(
                members.enroll_member(
                    s, actor=brand.actor, data=MemberEnroll(enroll_channel="store", name=f"r{n}")
                ).id
            )
    return brand


def _kinds(results: list[Any]) -> Counter[str]:
    return Counter(type(r).__name__ for r in results)


def test_fifty_members_grab_the_last_coupon(cb: CouponBrand) -> None:
    t = cb.template(claimable=True, stock_total=1)
    results = race(50, lambda i: cb.claim(t.id, cb.members[i], f"g{i}"))
    assert _kinds(results) == {"IssueResult": 1, "OutOfStock": 49}, results
    assert all(isinstance(r, OutOfStock) for r in results if not hasattr(r, "coupon"))
    assert cb.get_template(t.id).stock_available == 0
    check_coupons(cb.db, cb.brand_id)


def test_fifty_requests_with_one_key_issue_once(cb: CouponBrand) -> None:
    t = cb.template(stock_total=100)
    m = cb.members[0]
    results = race(50, lambda i: cb.issue(t.id, m, "same-key"))
    assert _kinds(results) == {"IssueResult": 50}, results
    assert sorted(r.replayed for r in results) == [False] + [True] * 49
    assert len({r.coupon.id for r in results}) == 1
    assert cb.get_template(t.id).stock_available == 99
    check_coupons(cb.db, cb.brand_id)


def test_fifty_checkouts_of_one_coupon_use_it_once(cb: CouponBrand) -> None:
    t = cb.template()
    m = cb.members[0]
    c = cb.issue(t.id, m, "i1").coupon
    basket = cart(("A", "80.00", 1))

    def checkout_and_pay(i: int) -> Any:
        held = cb.lock(m, basket, f"L{i}", coupon_ids=[c.id]).lock
        return cb.run(checkout.redeem, lock_id=held.id, payment_reference=f"P{i}")

    results = race(50, checkout_and_pay)
    assert _kinds(results) == {"LockResult": 1, "CouponUnavailable": 49}, results
    assert cb.coupon(c.id).status == "redeemed"
    assert cb.events(c.id) == ["issued", "locked", "redeemed"]
    check_coupons(cb.db, cb.brand_id)
