"""Evaluating a batch of members at once (``service.evaluate_members``, the ``order.paid`` preparer)
decides exactly what evaluating each member alone decides, and its upgrade gifts (granted together)
write exactly the ledger that granting them member by member writes: the same scenario is played in
two brands, one evaluated member by member, the other as one batch."""

from __future__ import annotations

from typing import Any

from sqlalchemy import event, select

from huiyuan.kit.clock import FrozenClock
from huiyuan.kit.scope import system_for_brand
from huiyuan.points import ledger
from huiyuan.points.models import PointType
from huiyuan.tiers import reads, service
from huiyuan.tiers.models import TierChange, TierLevel
from tests.conftest import World
from tests.points.helpers import MONTHLY, check_ledger
from tests.points.ledger_compare import last_operation_id, written_since
from tests.tiers.helpers import GRANTS, buy, earn_growth, enroll, evaluate, set_up_ladder

STORES = ("alpha-s1", "beta-s1")


def _scenario(client: Any, world: World, clock: FrozenClock) -> list[list[int]]:
    """Members in every situation evaluation distinguishes, the same in both brands; returns their
    ids per brand (same order). The clock ends 400 days later, where the batch is evaluated."""
    db = world.db
    ids: list[list[int]] = []
    for brand in world.brands:
        h = brand.headers
        set_up_ladder(client, h)
        never = enroll(client, h)  # no tier state yet
        quiet = enroll(client, h)  # evaluated, a small order: nothing to do
        skipper = enroll(client, h)  # one large order: straight to gold, with its gift
        grower = enroll(client, h)  # growth crosses the silver threshold
        lapsing = enroll(client, h)  # silver whose validity ended without retention: drops
        keeper = enroll(client, h)  # silver whose validity ended with retention met: kept
        closed = enroll(client, h)
        for m in (quiet, grower):
            evaluate(db, brand.id, m)
        earn_growth(db, brand.id, lapsing, 1000, f"g-l-{brand.id}")
        earn_growth(db, brand.id, keeper, 1000, f"g-k-{brand.id}")
        ids.append([never, quiet, skipper, grower, lapsing, keeper, closed])
    clock.advance(days=30)
    for brand, (_, _, _, _, lapsing, keeper, _) in zip(world.brands, ids, strict=True):
        evaluate(db, brand.id, lapsing)
        evaluate(db, brand.id, keeper)
    clock.advance(days=180)
    for brand, members in zip(world.brands, ids, strict=True):
        earn_growth(db, brand.id, members[5], 600, f"g-k2-{brand.id}")
    clock.advance(days=190)
    for brand, store, members in zip(world.brands, STORES, ids, strict=True):
        never, quiet, skipper, grower, _, _, closed = members
        earn_growth(db, brand.id, grower, 1200, f"g-g-{brand.id}")
        buy(client, brand.headers, skipper, "3500.00", f"BIG-{brand.id}", store=store)
        buy(client, brand.headers, quiet, "10.00", f"SMALL-{brand.id}", store=store)
        r = client.post(f"/api/v1/members/{closed}/close", json={"reason": "test"}, headers=brand.headers)
        assert r.status_code == 200, r.text
    return ids


def _outcome(world: World, n: int, members: list[int]) -> list[tuple[str, list[tuple[str, str | None]]]]:
    brand = world.brands[n]
    with world.db.unit_of_work(system_for_brand(brand.id).scope, write=False) as s:
        codes = {lv.id: lv.code for lv in s.scalars(select(TierLevel))}
        out = []
        for m in members:
            current = reads.current_tier(s, m)
            changes = s.scalars(select(TierChange).where(TierChange.member_id == m).order_by(TierChange.id))
            out.append(
                (
                    current.code if current is not None else "-",
                    [(c.reason, codes.get(c.to_level_id)) for c in changes],
                )
            )
        return out


def test_batch_evaluation_decides_what_one_by_one_decides(clock: FrozenClock, client, world: World) -> None:
    singles, batch = _scenario(client, world, clock)
    a, b = world.brands
    before = len(GRANTS)
    with world.db.unit_of_work(system_for_brand(a.id).scope) as s:
        for m in singles:
            service.evaluate_member(s, actor=system_for_brand(a.id), member_id=m, reason="order.paid")
    gifts_a = len(GRANTS) - before

    statements: list[str] = []

    def count(conn: Any, cursor: Any, stmt: str, *args: Any) -> None:
        statements.append(stmt)

    with world.db.unit_of_work(system_for_brand(b.id).scope) as s:
        event.listen(world.db.engine, "before_cursor_execute", count)
        try:
            evaluated = service.evaluate_members(
                s, actor=system_for_brand(b.id), member_ids=list(reversed(batch)), reason="order.paid"
            )
        finally:
            event.remove(world.db.engine, "before_cursor_execute", count)
    assert evaluated == sorted(batch)
    assert len(GRANTS) - before - gifts_a == gifts_a == 1  # gold's welcome gift, once

    expected = _outcome(world, 0, singles)
    assert _outcome(world, 1, batch) == expected
    levels = [level for level, _ in expected]
    assert levels == ["base", "base", "gold", "silver", "base", "silver", "base"]
    assert expected[4][1][-1] == ("downgrade", "base") and expected[5][1][-1] == ("retain", "silver")

    # The quiet member costs no statement of its own: no state lock, no change written.
    with world.db.unit_of_work(system_for_brand(b.id).scope) as s:
        quiet = batch[1]
        statements.clear()
        event.listen(world.db.engine, "before_cursor_execute", count)
        try:
            service.evaluate_members(s, actor=system_for_brand(b.id), member_ids=[quiet], reason="test")
        finally:
            event.remove(world.db.engine, "before_cursor_execute", count)
        alone = len(statements)
        statements.clear()
        event.listen(world.db.engine, "before_cursor_execute", count)
        try:
            service.evaluate_members(
                s, actor=system_for_brand(b.id), member_ids=[quiet, *batch], reason="test"
            )
        finally:
            event.remove(world.db.engine, "before_cursor_execute", count)
        assert len(statements) == alone  # everyone is up to date now: a constant number of queries


POINTS_GIFTS: dict[str, dict[str, Any]] = {
    "silver": {"upgrade_gifts": [{"kind": "points", "point_type": "bonus", "amount": 50}]},
    "gold": {
        "upgrade_gifts": [
            {"kind": "points", "point_type": "bonus", "amount": 500, "reason": "gold welcome"},
            {"kind": "test_gift", "name": "gold welcome"},
            {"kind": "points", "point_type": "growth", "amount": 100, "funded_by": "vendor"},
        ]
    },
}


def test_batch_upgrade_gifts_write_the_ledger_one_by_one_writes(
    clock: FrozenClock, client, world: World
) -> None:
    """The upgrade gifts of a batch are granted together (``benefits.grant_many``, set-based for
    points); the ledger then holds exactly what granting them member by member writes: operations
    and their results, lots, entries, lot moves, accounts, ``points.earned`` events."""
    db = world.db
    members: list[list[int]] = []
    for brand in world.brands:
        set_up_ladder(client, brand.headers, **POINTS_GIFTS)
        actor = system_for_brand(brand.id)
        with db.unit_of_work(actor.scope) as s:
            s.add(
                PointType(
                    brand_id=brand.id, code="bonus", name="积分", kind="spendable", expiry_policy=MONTHLY
                )
            )
        ids = [enroll(client, brand.headers) for _ in range(6)]
        gold, silver, gold_too, quiet, indebted, new_gold = ids
        for m in (gold, silver, gold_too, quiet, indebted):
            evaluate(db, brand.id, m)
        with db.unit_of_work(actor.scope) as s:  # a refund debt: this member's gift goes one by one
            lot = ledger.earn(
                s,
                actor=actor,
                member_id=indebted,
                point_type="bonus",
                amount=30,
                key="d1",
                source_type="order",
            ).extra["lot_id"]
            ledger.spend(
                s,
                actor=actor,
                member_id=indebted,
                point_type="bonus",
                amount=25,
                key="d2",
                source_type="mall",
            )
            ledger.reverse_lot(s, actor=actor, lot_id=lot, amount=30, key="d3", reason="refund")
        for n, m in enumerate((gold, gold_too, indebted, new_gold)):
            earn_growth(db, brand.id, m, 6000, f"g{n}-{brand.id}")
        earn_growth(db, brand.id, silver, 1200, f"s-{brand.id}")
        members.append(ids)
    clock.advance(days=1)
    (a, singles), (b, batch) = zip(world.brands, members, strict=True)
    before = len(GRANTS)
    ops_a = last_operation_id(db)
    with db.unit_of_work(system_for_brand(a.id).scope) as s:
        for m in singles:
            service.evaluate_member(s, actor=system_for_brand(a.id), member_id=m, reason="order.paid")
    ops_b = last_operation_id(db)
    with db.unit_of_work(system_for_brand(b.id).scope) as s:
        service.evaluate_members(s, actor=system_for_brand(b.id), member_ids=batch, reason="order.paid")
    assert len(GRANTS) - before == 2 * 4  # the test kind's gold gift (no batch grantor: one by one)

    def key_of(ids: list[int]) -> Any:
        def name(key: str) -> Any:  # benefit:tier:{member}:{change}:{i}: the change id differs
            parts = key.split(":")
            return ("gift", ids.index(int(parts[2])), parts[4]) if key.startswith("benefit:tier:") else key

        return name

    def levels(brand_id: int) -> dict[str, Any]:
        with db.unit_of_work(system_for_brand(brand_id).scope, write=False) as s:
            return {str(lv.id): lv.code for lv in s.scalars(select(TierLevel))}

    expected = written_since(
        db, a.id, singles, after_operation_id=ops_a, key_of=key_of(singles), sources=levels(a.id)
    )
    got = written_since(db, b.id, batch, after_operation_id=ops_b, key_of=key_of(batch), sources=levels(b.id))
    for part in ("operations", "entries", "moves", "lots", "events", "accounts"):
        assert got[part] == expected[part], part
    assert len(got["operations"]) == 4 * 2 + 1 and len(got["events"]) == 9  # 4 gold × 2, 1 silver
    assert got["accounts"][(4, "bonus")][4] == 0  # the debt was repaid from the gift
    check_ledger(db, b.id)
    check_ledger(db, a.id)
