"""Within one outbox dispatch pass a brand's tier ladder (and time zone) is read once, shared by the
points preparer (current tiers) and the tiers preparer; a change to the ladder between passes is
seen by the next pass; outside a pass nothing is kept."""

from __future__ import annotations

from typing import Any

from sqlalchemy import event, select

from huiyuan.kit.clock import FrozenClock
from huiyuan.kit.scope import system_for_brand
from huiyuan.outbox.dispatcher import _pass, dispatch_pending, per_pass
from huiyuan.points.models import EarnRule, PointLot, PointType
from huiyuan.points.rule_schema import dump_definition, parse_definition
from huiyuan.tiers.ladder import load_ladder
from huiyuan.tiers.models import TierLevel
from tests.conftest import World
from tests.tiers.helpers import buy, enroll, level_of, set_up_ladder


def _count_reads(world: World, table: str) -> tuple[list[int], Any]:
    counts: list[int] = [0]

    def before(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if statement.lstrip().upper().startswith("SELECT") and f"FROM {table}" in statement:
            counts[-1] += 1

    event.listen(world.db.engine, "before_cursor_execute", before)
    return counts, before


def _points_rule(world: World, brand_id: int) -> None:
    with world.db.unit_of_work(system_for_brand(brand_id).scope) as s:
        s.add(
            PointType(
                brand_id=brand_id,
                code="points",
                name="积分",
                kind="spendable",
                expiry_policy={"kind": "never"},
            )
        )
        definition = {
            "trigger": {"kind": "order"},
            "point_type": "points",
            "formula": {"kind": "per_amount", "per": "1.00", "points": 1},
        }
        s.add(
            EarnRule(
                brand_id=brand_id,
                code="per-yuan",
                name="per yuan",
                trigger="order",
                definition=dump_definition(parse_definition(definition)),
            )
        )


def test_ladder_read_once_per_pass_and_changes_seen_by_the_next(
    client: Any, world: World, clock: FrozenClock
) -> None:
    brand = world.brands[0]
    h = brand.headers
    ids = set_up_ladder(client, h)
    _points_rule(world, brand.id)  # so the points preparer reads the members' current tiers too
    big, small = enroll(client, h), enroll(client, h)
    buy(client, h, big, "3500.00", "PASS-1")
    buy(client, h, small, "10.00", "PASS-2")
    counts, listener = _count_reads(world, "tier_programs")
    try:
        while dispatch_pending(world.db).taken:
            counts.append(0)
    finally:
        event.remove(world.db.engine, "before_cursor_execute", listener)
    # The pass with the order.paid events ran both preparers (points: current tiers; tiers:
    # evaluation) on one read of the ladder; no pass read it twice.
    assert max(counts) == 1, counts
    assert level_of(client, h, big)["level"]["code"] == "gold"
    assert level_of(client, h, small)["level"]["code"] == "base"
    with world.db.unit_of_work(system_for_brand(brand.id).scope, write=False) as s:
        assert sorted(lot.amount for lot in s.scalars(select(PointLot))) == [10, 3500]

    # Silver now comes with any order of 5 yuan: the next pass reads the changed ladder.
    r = client.patch(
        f"/api/v1/tiers/levels/{ids['silver']}",
        json={"upgrade": {"basis": "single_order", "min": "5.00"}},
        headers=h,
    )
    assert r.status_code == 200, r.text
    later = enroll(client, h)
    buy(client, h, later, "10.00", "PASS-3")
    while dispatch_pending(world.db).taken:
        pass
    assert level_of(client, h, later)["level"]["code"] == "silver"


def test_per_pass_keeps_nothing_outside_a_pass(client: Any, world: World, clock: FrozenClock) -> None:
    brand = world.brands[0]
    set_up_ladder(client, brand.headers)
    loads: list[int] = []

    def load() -> int:
        loads.append(1)
        return len(loads)

    with world.db.unit_of_work(system_for_brand(brand.id).scope) as s:
        assert per_pass(s, "test", 1, load) == 1
        assert per_pass(s, "test", 1, load) == 2  # no pass: loaded every time
        with _pass(s):
            assert per_pass(s, "test", 1, load) == 3
            assert per_pass(s, "test", 1, load) == 3
            assert per_pass(s, "test", 2, load) == 4  # another key
            first = load_ladder(s, brand.id)
            assert first is not None
            assert load_ladder(s, brand.id) is first
        assert per_pass(s, "test", 1, load) == 5
        # Outside a pass a change made in the same transaction is seen at once.
        level = s.get(TierLevel, first.levels[1].id)
        assert level is not None
        level.name_en = "Silver Plus"
        s.flush()
        again = load_ladder(s, brand.id)
        assert again is not None and again is not first
        assert again.levels[1].name_en == "Silver Plus"
