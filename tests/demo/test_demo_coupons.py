"""The demo world's coupons: templates, sixty days of issues and uses through the real verbs, and a
ledger that adds up (stock and budget caches, one issue event per coupon, shares = discounts)."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from sqlalchemy import func, select

from huiyuan.coupons import reports
from huiyuan.coupons.models import Coupon, CouponLock, CouponTemplate
from huiyuan.demo.world import build_world
from huiyuan.kit.db import Database
from huiyuan.kit.migrate import upgrade
from huiyuan.kit.scope import system_for_brand
from tests.coupons.helpers import check_coupons

from .test_demo import END


def test_demo_coupons_are_lived_and_add_up(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'coupons.db'}"
    upgrade(url)
    db = Database(url)
    world = build_world(db, members=60, seed=5, months=1, end=END, loyalty=False, coupons=True, coupon_days=5)
    brand = world.brands[0]
    assert brand.counts["coupon_templates"] == 4  # no points programme: no points-exchange template
    assert brand.counts["coupons_issued"] > 0 and brand.counts["coupon_locks_redeemed"] > 0
    for b in world.brands:
        check_coupons(db, b.id)
    actor = system_for_brand(brand.id)
    with db.unit_of_work(actor.scope, write=False) as s:
        statuses = dict(s.execute(select(Coupon.status, func.count()).group_by(Coupon.status)).all())
        assert statuses.get("redeemed", 0) > 0 and statuses.get("available", 0) > 0
        grab = s.scalars(select(CouponTemplate).where(CouponTemplate.code == "GRAB-20")).one()
        assert grab.stock_available is not None and 0 <= grab.stock_available < 300
        redeemed = s.scalar(
            select(func.coalesce(func.sum(CouponLock.discount), 0)).where(
                CouponLock.brand_id == brand.id, CouponLock.state == "redeemed"
            )
        )
        settled = reports.settle(s, brand_id=brand.id, start=END - timedelta(days=6), end=END, period="all")
    # Returned orders net out, so the settlement equals the discounts of the locks still redeemed.
    assert settled.net == redeemed
    db.dispose()
