"""Points earned from paid orders and actions, given back on refunds, activated and expired by jobs;
end to end through the orders API, the outbox dispatcher and the ledger, on both databases."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import select

from huiyuan.jobs.context import JobContext
from huiyuan.jobs.registry import get_job
from huiyuan.kit.clock import FrozenClock, get_clock, set_clock
from huiyuan.kit.scope import system_for_brand
from huiyuan.outbox.dispatcher import dispatch_pending
from huiyuan.points import earning, ledger
from huiyuan.points.models import EarnRule, PointAccount, PointLot, PointType
from huiyuan.points.rule_schema import dump_definition, parse_definition
from tests.conftest import World
from tests.factories import enroll
from tests.orders.helpers import order_body

T0 = datetime(2026, 3, 15, 8, 0, tzinfo=UTC)


@pytest.fixture
def clock() -> Iterator[FrozenClock]:
    before = get_clock()
    frozen = FrozenClock(T0)
    set_clock(frozen)
    yield frozen
    set_clock(before)


def _setup(world: World, *, pending_days: int = 0, rules: list[dict[str, Any]] | None = None) -> None:
    a = world.brands[0]
    with world.db.unit_of_work(system_for_brand(a.id).scope) as s:
        s.add(
            PointType(
                brand_id=a.id,
                code="points",
                name="积分",
                kind="spendable",
                expiry_policy={"kind": "yearly_clearing", "month": 12, "day": 31, "years_after": 1},
                pending_days=pending_days,
            )
        )
        s.add(
            PointType(
                brand_id=a.id, code="growth", name="成长值", kind="growth", expiry_policy={"kind": "never"}
            )
        )
        for n, definition in enumerate(rules or [], start=1):
            parsed = parse_definition(definition)
            trigger = definition["trigger"].get("action", "order")
            s.add(
                EarnRule(
                    brand_id=a.id,
                    code=f"r{n}",
                    name=f"rule {n}",
                    trigger=trigger,
                    definition=dump_definition(parsed),
                )
            )


PER_YUAN = {
    "trigger": {"kind": "order"},
    "point_type": "points",
    "formula": {"kind": "per_amount", "per": "1.00", "points": 1},
}
GROWTH = {
    "trigger": {"kind": "order"},
    "point_type": "growth",
    "formula": {"kind": "per_amount", "per": "10.00", "points": 1},
}


def _account(world: World, member_id: int, code: str = "points") -> PointAccount | None:
    a = world.brands[0]
    with world.db.unit_of_work(system_for_brand(a.id).scope) as s:
        return s.scalars(
            select(PointAccount)
            .join(PointType, PointType.id == PointAccount.point_type_id)
            .where(PointAccount.member_id == member_id, PointType.code == code)
        ).one_or_none()


def _order(client, world: World, member_id: int, number: str = "POS-1", **kw: Any) -> dict[str, Any]:
    a = world.brands[0]
    r = client.post("/api/v1/orders", json=order_body(number, member_id=member_id, **kw), headers=a.headers)
    assert r.status_code == 201, r.text
    return dict(r.json())


def test_paid_order_earns_once_per_rule_and_refunds_take_it_back(client, world: World, clock) -> None:
    _setup(world, rules=[PER_YUAN, GROWTH])
    a = world.brands[0]
    m = enroll(client, a.headers)
    o = _order(client, world, m["id"], paid_at="2026-03-15T06:30:00Z")
    dispatch_pending(world.db)
    dispatch_pending(world.db)  # nothing left: the event was handled once
    points = _account(world, m["id"])
    growth = _account(world, m["id"], "growth")
    assert points is not None and points.available == 180  # 180.00 paid, 1 point per yuan
    assert growth is not None and growth.available == 18

    # Handling the same order again (a redelivery) earns nothing more.
    with world.db.unit_of_work(system_for_brand(a.id).scope) as s:
        again = earning.earn_for_order(s, actor=system_for_brand(a.id), order_id=o["id"])
        assert all(r.replayed for r in again) and len(again) == 2

    # Refund one T-shirt (72.00 of 180.00): 40 % of each lot comes back.
    r = client.post(
        f"/api/v1/orders/{o['id']}/refunds",
        json={"refund_number": "RF-1", "items": [{"line_no": 1, "quantity": 1}]},
        headers=a.headers,
    )
    assert r.status_code == 201, r.text
    dispatch_pending(world.db)
    assert _account(world, m["id"]).available == 108  # type: ignore[union-attr]
    assert _account(world, m["id"], "growth").available == 11  # type: ignore[union-attr]  # 18 - floor(7.2)

    # Refund the rest: everything the order earned is gone, no more.
    r = client.post(
        f"/api/v1/orders/{o['id']}/refunds", json={"refund_number": "RF-2", "full": True}, headers=a.headers
    )
    assert r.status_code == 201, r.text
    dispatch_pending(world.db)
    assert _account(world, m["id"]).available == 0  # type: ignore[union-attr]
    assert _account(world, m["id"], "growth").available == 0  # type: ignore[union-attr]
    with world.db.unit_of_work(system_for_brand(a.id).scope) as s:
        for account in s.scalars(select(PointAccount)):
            totals = ledger.account_totals(s, account.id)
            assert totals["entries_available"] == account.available and account.debt == 0


def test_refund_after_the_points_were_spent_leaves_a_debt_repaid_by_the_next_order(
    client, world: World, clock
) -> None:
    _setup(world, rules=[PER_YUAN])
    a = world.brands[0]
    actor = system_for_brand(a.id)
    m = enroll(client, a.headers)
    o = _order(client, world, m["id"])
    dispatch_pending(world.db)
    with world.db.unit_of_work(actor.scope) as s:
        ledger.spend(
            s,
            actor=actor,
            member_id=m["id"],
            point_type="points",
            amount=150,
            key="gift-1",
            source_type="mall",
        )
    client.post(
        f"/api/v1/orders/{o['id']}/refunds", json={"refund_number": "RF-1", "full": True}, headers=a.headers
    )
    dispatch_pending(world.db)
    account = _account(world, m["id"])
    assert account is not None and (account.available, account.debt) == (0, 150)
    _order(client, world, m["id"], "POS-2")
    dispatch_pending(world.db)
    account = _account(world, m["id"])
    assert account is not None and (account.available, account.debt) == (30, 0)


def test_points_paid_at_checkout_come_back_on_refund(client, world: World, clock) -> None:
    _setup(world)
    a = world.brands[0]
    actor = system_for_brand(a.id)
    m = enroll(client, a.headers)
    with world.db.unit_of_work(actor.scope) as s:
        ledger.earn(
            s,
            actor=actor,
            member_id=m["id"],
            point_type="points",
            amount=1000,
            key="seed",
            source_type="adjust",
        )
        ledger.reserve(
            s, actor=actor, member_id=m["id"], point_type="points", amount=500, key="chk-1", order_ref="POS-9"
        )
        ledger.confirm(s, actor=actor, reservation_key="chk-1")
    o = _order(client, world, m["id"], "POS-9")
    client.post(
        f"/api/v1/orders/{o['id']}/refunds",
        json={"refund_number": "RF-9", "items": [{"line_no": 2, "quantity": 1}]},  # 36.00 of 180.00
        headers=a.headers,
    )
    dispatch_pending(world.db)
    assert _account(world, m["id"]).available == 600  # type: ignore[union-attr]  # 500 + 20 % of 500


def test_pending_points_activate_after_the_return_window(client, world: World, clock) -> None:
    _setup(world, pending_days=7, rules=[PER_YUAN])
    a = world.brands[0]
    m = enroll(client, a.headers)
    _order(client, world, m["id"], paid_at="2026-03-15T06:30:00Z")
    dispatch_pending(world.db)
    account = _account(world, m["id"])
    assert account is not None and (account.available, account.pending) == (0, 180)
    clock.advance(days=8)
    result = _run_job(world, "points.activate")
    assert result["lots"] == 1 and result["points"] == 180
    assert _run_job(world, "points.activate")["lots"] == 0  # idempotent
    account = _account(world, m["id"])
    assert account is not None and (account.available, account.pending) == (180, 0)


def test_expiry_job_clears_last_years_points(client, world: World, clock) -> None:
    _setup(world, rules=[PER_YUAN])
    a = world.brands[0]
    m = enroll(client, a.headers)
    _order(client, world, m["id"], paid_at="2026-03-15T06:30:00Z")
    _order(client, world, m["id"], "POS-2", paid_at="2027-02-01T06:30:00Z")
    dispatch_pending(world.db)
    clock.advance(days=700)  # 2028-02: the 2026 lot expired on 2027-12-31 local
    result = _run_job(world, "points.expire", chunk=1)
    assert result["lots"] == 1 and result["points"] == 180
    account = _account(world, m["id"])
    assert account is not None and account.available == 180 and account.expired_total == 180
    with world.db.unit_of_work(system_for_brand(a.id).scope) as s:
        states = sorted(lot.state for lot in s.scalars(select(PointLot)))
    assert states == ["active", "expired"]


def test_action_rules_grant_once_per_key(client, world: World, clock) -> None:
    check_in = {
        "trigger": {"kind": "action", "action": "check_in"},
        "point_type": "points",
        "formula": {"kind": "fixed", "points": 5},
        "caps": {"per_day": 5},
    }
    _setup(world, rules=[check_in])
    a = world.brands[0]
    actor = system_for_brand(a.id)
    m = enroll(client, a.headers)
    with world.db.unit_of_work(actor.scope) as s:
        first = earning.earn_for_action(
            s, actor=actor, member_id=m["id"], action="check_in", key="ci-1", occurred_at=clock.now()
        )
    with world.db.unit_of_work(actor.scope) as s:
        again = earning.earn_for_action(
            s, actor=actor, member_id=m["id"], action="check_in", key="ci-1", occurred_at=clock.now()
        )
        second = earning.earn_for_action(
            s, actor=actor, member_id=m["id"], action="check_in", key="ci-2", occurred_at=clock.now()
        )
    assert [r.amount for r in first] == [5] and again[0].replayed
    assert second == []  # the daily cap of 5 is used up
    assert _account(world, m["id"]).available == 5  # type: ignore[union-attr]


def _run_job(world: World, kind: str, **params: Any) -> dict[str, Any]:
    a = world.brands[0]
    fn = get_job(kind)
    assert fn is not None
    ctx = JobContext(
        db=world.db, run_id=0, kind=kind, brand_id=a.id, params=params, actor=system_for_brand(a.id)
    )
    ctx.progress = lambda *args, **kw: None  # type: ignore[method-assign]
    result = fn(ctx)
    assert result is not None
    return result


def test_set_based_earning_writes_what_the_per_order_path_writes(client, world: World, clock) -> None:
    from huiyuan.points.bulk import earn_for_orders

    christmas = {
        **PER_YUAN,
        "multipliers": [{"name": "x2", "factor": "2", "weekdays": [7]}],
        "stacking": "max",
    }
    _setup(world, pending_days=3, rules=[christmas, GROWTH])
    a = world.brands[0]
    actor = system_for_brand(a.id)
    m1, m2 = enroll(client, a.headers), enroll(client, a.headers)
    o1 = _order(client, world, m1["id"], "B-1", paid_at="2026-03-15T06:30:00Z")  # a Sunday: doubled
    o2 = _order(client, world, m2["id"], "B-2", paid_at="2026-03-15T06:30:00Z")
    with world.db.unit_of_work(actor.scope) as s:
        bulk = earn_for_orders(s, actor=actor, order_ids=[o1["id"]])
        assert (bulk.grants, bulk.points) == (2, 360 + 18)
    with world.db.unit_of_work(actor.scope) as s:
        again = earn_for_orders(s, actor=actor, order_ids=[o1["id"]])
        assert (again.grants, again.skipped_done) == (0, 1)
        single = earning.earn_for_order(s, actor=actor, order_id=o2["id"])
        assert [r.amount for r in single] == [360, 18]
    dispatch_pending(world.db)  # the order.paid events find both orders handled
    for m in (m1, m2):
        account = _account(world, m["id"])
        growth = _account(world, m["id"], "growth")
        assert account is not None and (account.available, account.pending) == (0, 360)
        assert growth is not None and growth.available == 18  # growth has no return window
    with world.db.unit_of_work(actor.scope) as s:
        lots = {
            lot.member_id: (lot.amount, lot.state, lot.expires_at, lot.activates_at)
            for lot in s.scalars(select(PointLot).where(PointLot.amount == 360))
        }
        assert lots[m1["id"]] == lots[m2["id"]]
        for account in s.scalars(select(PointAccount)):
            totals = ledger.account_totals(s, account.id)
            assert (totals["entries_available"], totals["entries_pending"]) == (
                account.available,
                account.pending,
            )


def test_dispatching_a_batch_of_paid_orders_earns_each_once(client, world: World, clock) -> None:
    _setup(world, rules=[PER_YUAN])
    a = world.brands[0]
    members = [enroll(client, a.headers) for _ in range(3)]
    for n, m in enumerate(members * 2):
        _order(client, world, m["id"], f"D-{n}")
    dispatch_pending(world.db)
    dispatch_pending(world.db)
    for m in members:
        assert _account(world, m["id"]).available == 360  # type: ignore[union-attr]
    with world.db.unit_of_work(system_for_brand(a.id).scope) as s:
        assert len(s.scalars(select(PointLot)).all()) == 6


def test_tier_multiplier_and_paid_plan_feed_order_earning(client, world: World, clock) -> None:
    from tests.tiers.helpers import register_test_gift, set_up_ladder

    register_test_gift()
    tiered = {**PER_YUAN, "conditions": [{"kind": "tiers", "in": ["silver"]}]}
    _setup(world, rules=[PER_YUAN, {**tiered, "point_type": "growth"}])
    a = world.brands[0]
    set_up_ladder(client, a.headers)
    m = enroll(client, a.headers)
    actor = system_for_brand(a.id)
    with world.db.unit_of_work(actor.scope) as s:
        ledger.earn(
            s,
            actor=actor,
            member_id=m["id"],
            point_type="growth",
            amount=1000,
            key="g-seed",
            source_type="adjust",
        )
    dispatch_pending(world.db)  # points.earned → the member reaches silver (×1.2)
    _order(client, world, m["id"], "T-1")
    dispatch_pending(world.db)
    dispatch_pending(world.db)
    # 180 points × 1.2 for silver; the silver-only growth rule gives 180 × 1.2 = 216 growth too.
    assert _account(world, m["id"]).available == 216  # type: ignore[union-attr]
    assert _account(world, m["id"], "growth").available == 1000 + 216  # type: ignore[union-attr]


def test_import_with_earning_earns_at_once_and_the_dispatcher_adds_nothing(
    client, world: World, clock
) -> None:
    """``record_orders_bulk(earn=True)``: the orders land with the points the dispatcher would have
    given them, the buyer reaching a level is upgraded in the same transaction, and dispatching the
    ``order.paid`` events afterwards earns nothing twice."""
    from huiyuan.orders.bulk import record_orders_bulk
    from huiyuan.tiers import reads as tiers
    from tests.tiers.helpers import register_test_gift, set_up_ladder

    register_test_gift()
    _setup(world, pending_days=3, rules=[PER_YUAN, GROWTH])
    a = world.brands[0]
    set_up_ladder(client, a.headers)
    actor = system_for_brand(a.id)
    imported, dispatched, climber = (enroll(client, a.headers)["id"] for _ in range(3))
    with world.db.unit_of_work(actor.scope) as s:
        ledger.earn(
            s,
            actor=actor,
            member_id=climber,
            point_type="growth",
            amount=990,
            key="seed",
            source_type="adjust",
        )
    dispatch_pending(world.db)
    with world.db.unit_of_work(actor.scope) as s:
        later = record_orders_bulk(
            s,
            actor=actor,
            orders=[order_body("L-1", member_id=dispatched), order_body("L-2", member_id=dispatched)],
        )
    with world.db.unit_of_work(actor.scope) as s:
        now = record_orders_bulk(
            s,
            actor=actor,
            orders=[
                order_body("N-1", member_id=imported),
                order_body("N-2", member_id=imported),
                order_body("N-3", member_id=climber),
            ],
            earn=True,
        )
    assert [r.status for r in now + later] == ["created"] * 5
    # Before any dispatch: the imported orders earned, the climber (990 + 18 growth) is silver.
    assert _account(world, imported).pending == 360  # type: ignore[union-attr]
    assert _account(world, imported, "growth").available == 36  # type: ignore[union-attr]
    assert _account(world, dispatched) is None
    with world.db.unit_of_work(actor.scope, write=False) as s:
        level = tiers.current_tier(s, climber)
        assert level is not None and level.code == "silver"
    dispatch_pending(world.db)
    dispatch_pending(world.db)
    for member in (imported, dispatched):
        assert _account(world, member).pending == 360  # type: ignore[union-attr]
        assert _account(world, member, "growth").available == 36  # type: ignore[union-attr]
    with world.db.unit_of_work(actor.scope, write=False) as s:
        lots = {
            (lot.source_id[0], lot.amount, lot.state, lot.expires_at, lot.activates_at - lot.earned_at)
            for lot in s.scalars(select(PointLot).where(PointLot.source_type == "order"))
            if lot.activates_at is not None
        }
        assert {(k, n) for k, n, *_ in lots} == {("N", 180), ("L", 180)}
        assert len({tuple(rest) for _, *rest in lots}) == 1  # same state, expiry and return window
        assert len(s.scalars(select(PointLot).where(PointLot.source_type == "order")).all()) == 2 * 5


def test_capped_rules_earn_inside_the_batch_before_tiers_are_evaluated(client, world: World, clock) -> None:
    """Orders the set-based path leaves to the per-order path (a capped rule) still earn before the
    buyers' tiers are evaluated in the same dispatch batch, so the growth they bring counts at once,
    and each cap holds across the batch exactly as order by order."""
    from tests.tiers.helpers import register_test_gift, set_up_ladder

    register_test_gift()
    capped_growth = {**GROWTH, "caps": {"per_member": 30}}
    _setup(world, rules=[PER_YUAN, capped_growth])
    a = world.brands[0]
    set_up_ladder(client, a.headers)
    actor = system_for_brand(a.id)
    climber = enroll(client, a.headers)["id"]
    with world.db.unit_of_work(actor.scope) as s:
        ledger.earn(
            s,
            actor=actor,
            member_id=climber,
            point_type="growth",
            amount=990,
            key="seed",
            source_type="adjust",
        )
    dispatch_pending(world.db)
    for n in range(3):
        _order(client, world, climber, f"C-{n}")
    dispatch_pending(world.db)  # one batch: three order.paid events
    assert _account(world, climber, "growth").available == 990 + 30  # type: ignore[union-attr]
    assert _account(world, climber).available == 3 * 180  # type: ignore[union-attr]
    with world.db.unit_of_work(actor.scope, write=False) as s:
        from huiyuan.tiers import reads as tiers

        level = tiers.current_tier(s, climber)
        assert level is not None and level.code == "silver"


def test_batch_api_earns_when_asked(client, world: World, clock) -> None:
    """``POST /api/v1/orders/batch`` with ``earn: true``: the buyer's points are there when the request
    returns; without it they wait for the dispatcher; dispatching afterwards adds nothing to either."""
    _setup(world, rules=[PER_YUAN])
    a = world.brands[0]
    now_buyer, later_buyer = (enroll(client, a.headers)["id"] for _ in range(2))
    dispatch_pending(world.db)

    def available(member_id: int) -> int:
        r = client.get(f"/api/v1/members/{member_id}/points", headers=a.headers)
        assert r.status_code == 200, r.text
        return sum(b["available"] + b["pending"] for b in r.json()["balances"] if b["point_type"] == "points")

    r = client.post(
        "/api/v1/orders/batch",
        json={"orders": [order_body("E-1", member_id=now_buyer)], "earn": True},
        headers=a.headers,
    )
    assert r.status_code == 200 and r.json()["created"] == 1, r.text
    r = client.post(
        "/api/v1/orders/batch", json={"orders": [order_body("E-2", member_id=later_buyer)]}, headers=a.headers
    )
    assert r.status_code == 200 and r.json()["created"] == 1, r.text
    assert (available(now_buyer), available(later_buyer)) == (180, 0)
    dispatch_pending(world.db)
    assert (available(now_buyer), available(later_buyer)) == (180, 180)
    bad = client.post("/api/v1/orders/batch", json={"orders": [], "earn": "maybe"}, headers=a.headers)
    assert bad.status_code == 422
