"""The set-based expiry (``sweeps.expire_due_bulk``) leaves the ledger exactly as the per-lot path
(``ledger.expire_due``) does: same buckets, same lot states, same expired points, invariants intact."""

from __future__ import annotations

from datetime import timedelta

from huiyuan.kit.db import Database
from huiyuan.points import ledger, sweeps
from tests.points.helpers import PointsBrand, check_ledger, frozen_clock, make_points_brand


def _history(world: PointsBrand, clock) -> None:  # type: ignore[no-untyped-def]
    a, b, c = world.members
    world.earn(a, 100, "e1")
    world.earn(b, 40, "e2")
    world.earn(c, 70, "e3", point_type="dec")  # decaying type: goes through the per-lot path
    world.earn(a, 30, "e4", pending_days=60)  # still pending when it expires
    world.spend(a, 25, "s1")
    world.run(ledger.reserve, member_id=b, point_type="pts", amount=10, key="r1", ttl_minutes=60 * 24 * 90)
    world.run(ledger.freeze, member_id=b, point_type="pts", key="f1", reason="check")
    clock.advance(days=10)
    world.earn(a, 5, "e5")  # expires ten days after the others


def _expire(world: PointsBrand, fn, now, chunk: int) -> tuple[int, int]:  # type: ignore[no-untyped-def]
    after, lots_total, points_total = 0, 0, 0
    while True:
        with world.db.unit_of_work(world.actor.scope) as s:
            lots, points, after = fn(s, actor=world.actor, now=now, after_lot_id=after, limit=chunk)
        if lots == 0:
            return lots_total, points_total
        lots_total, points_total = lots_total + lots, points_total + points


def test_bulk_expiry_matches_the_per_lot_path(db: Database) -> None:
    worlds = []
    for _ in range(2):
        with frozen_clock() as clock:
            world = make_points_brand(db, members_count=3)
            _history(world, clock)
            worlds.append(world)
            now = clock.now() + timedelta(days=25)  # past the first lots' expiry, before e5's
    bulk, single = worlds
    with frozen_clock(now):
        got_bulk = _expire(bulk, sweeps.expire_due_bulk, now, chunk=2)
        got_single = _expire(single, ledger.expire_due, now, chunk=1)
        assert got_bulk == got_single and got_bulk[1] > 0
        # A second run finds nothing: expiry is idempotent.
        assert _expire(bulk, sweeps.expire_due_bulk, now, chunk=100) == (0, 0)
        for x, y, code in zip(bulk.members, single.members, ("pts", "pts", "dec"), strict=True):
            assert bulk.balance(x, code) == single.balance(y, code)
            assert [(lot.state, lot.remaining) for lot in bulk.lots(x, code)] == [
                (lot.state, lot.remaining) for lot in single.lots(y, code)
            ]
        check_ledger(db, bulk.brand_id)
        check_ledger(db, single.brand_id)
