"""Racing purchases for one member: whatever the references, exactly one subscription is active; the
same reference from racing retries lands once. On PostgreSQL the member row lock queues them (and
the unique index over active rows would refuse a second); on SQLite ``BEGIN IMMEDIATE`` does."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from huiyuan.kit.clock import FrozenClock
from huiyuan.kit.scope import system_for_brand
from huiyuan.outbox.models import OutboxEvent
from huiyuan.paid import service
from huiyuan.paid.models import Subscription
from huiyuan.paid.schemas import BuyIn
from huiyuan.paid.service import PlanAlreadyActive
from tests.conftest import World
from tests.factories import enroll
from tests.paid.helpers import make_plans


def _race(n: int, work: Callable[[int], Any]) -> list[Any]:
    barrier = threading.Barrier(n)
    out: list[Any] = []
    lock = threading.Lock()

    def run(i: int) -> None:
        barrier.wait()
        try:
            result = work(i)
        except Exception as exc:  # collected and asserted on below
            result = exc
        with lock:
            out.append(result)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return out


def test_ten_racing_purchases_leave_one_active_plan(client: Any, world: World, clock: FrozenClock) -> None:
    a = world.brands[0]
    plans = make_plans(client, a.headers)
    m = enroll(client, a.headers)
    actor = system_for_brand(a.id)
    # Half buy silver, half the drivers' pass: one wins, the other purchases meet an active plan
    # (a later silver purchase renews the winner when the winner is silver).
    levels = [plans.silver, plans.week_pass]

    def purchase(i: int) -> tuple[int, str]:
        data = BuyIn(level_id=levels[i % 2], payment_reference=f"RACE-{i}")
        with world.db.unit_of_work(actor.scope) as s:
            change = service.buy(s, actor=actor, member_id=m["id"], data=data)
            return change.subscription.id, change.event.kind

    results = _race(10, purchase)
    errors = [r for r in results if isinstance(r, Exception)]
    assert all(isinstance(e, PlanAlreadyActive) for e in errors), errors
    done = [r for r in results if not isinstance(r, Exception)]
    assert len({sub_id for sub_id, _ in done}) == 1
    assert sorted(kind for _, kind in done).count("bought") == 1
    with world.db.unit_of_work(write=False) as s:
        rows = s.scalars(select(Subscription)).all()
        assert len(rows) == 1 and rows[0].status == "active"
        assert (
            s.scalar(select(func.count()).select_from(OutboxEvent).where(OutboxEvent.type == "paid.bought"))
            == 1
        )


def test_racing_retries_of_one_purchase_land_once(client: Any, world: World, clock: FrozenClock) -> None:
    a = world.brands[0]
    plans = make_plans(client, a.headers)
    m = enroll(client, a.headers)
    actor = system_for_brand(a.id)
    data = BuyIn(level_id=plans.silver, payment_reference="SAME")

    def purchase(_i: int) -> tuple[int, bool]:
        with world.db.unit_of_work(actor.scope) as s:
            change = service.buy(s, actor=actor, member_id=m["id"], data=data)
            return change.event.id, change.created

    results = _race(4, purchase)
    assert not [r for r in results if isinstance(r, Exception)], results
    assert len({eid for eid, _ in results}) == 1
    assert sorted(created for _, created in results) == [False, False, False, True]


def test_the_database_refuses_a_second_active_subscription(
    client: Any, world: World, clock: FrozenClock
) -> None:
    a = world.brands[0]
    plans = make_plans(client, a.headers)
    m = enroll(client, a.headers)
    now = clock.now()

    def row(level_id: int, status: str) -> Subscription:
        return Subscription(
            brand_id=a.id,
            member_id=m["id"],
            category_id=plans.family,
            level_id=level_id,
            status=status,
            starts_at=now,
            ends_at=now,
            amount_paid=0,
        )

    with world.db.unit_of_work() as s:  # any number of ended ones
        s.add_all([row(plans.silver, "expired"), row(plans.silver, "cancelled"), row(plans.gold, "active")])
    with pytest.raises(IntegrityError), world.db.unit_of_work() as s:
        s.add(row(plans.gold, "active"))
