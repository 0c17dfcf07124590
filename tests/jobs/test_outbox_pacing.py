"""How the worker's outbox loop paces itself: full batches when no events are arriving, passes sized
to ``BUSY_PASS_SECONDS`` from the cost per event it learnt while they are."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import update

from huiyuan.jobs import runner
from huiyuan.jobs.runner import WorkerHandle
from huiyuan.kit.clock import utcnow
from huiyuan.outbox.models import OutboxEvent
from huiyuan.outbox.service import emit
from huiyuan.settings import get_settings
from tests.conftest import World


def test_writers_active_while_events_arrive(world: World) -> None:
    handle = WorkerHandle(world.db, get_settings())
    with world.db.unit_of_work() as s:
        s.execute(update(OutboxEvent).values(occurred_at=utcnow() - timedelta(minutes=5)))
    assert not handle.writers_active()
    with world.db.unit_of_work() as s:
        emit(
            s, type="test.pacing", brand_id=world.brands[0].id, aggregate_type="t", aggregate_id=1, payload={}
        )
    assert handle.writers_active()


def test_busy_passes_fit_the_budget_and_idle_ones_take_full_batches(world: World) -> None:
    handle = WorkerHandle(world.db, get_settings())
    assert handle.dispatch_batch(busy=False) == runner.DISPATCH_BATCH
    handle._seconds_per_event = runner.BUSY_PASS_SECONDS / 40
    assert handle.dispatch_batch(busy=True) == 40
    handle._seconds_per_event = 1.0  # slow events: still enough for the set-based preparers
    assert handle.dispatch_batch(busy=True) == runner.BUSY_MIN_BATCH
    handle._seconds_per_event = 1e-6
    assert handle.dispatch_batch(busy=True) == runner.DISPATCH_BATCH


def test_a_busy_pass_learns_the_cost_per_event(world: World) -> None:
    handle = WorkerHandle(world.db, get_settings())
    with world.db.unit_of_work() as s:
        s.execute(update(OutboxEvent).values(dispatched_at=utcnow()))  # only this test's events wait
        for i in range(3):
            emit(
                s,
                type="test.pacing",
                brand_id=world.brands[0].id,
                aggregate_type="t",
                aggregate_id=i,
                payload={},
            )
    handle._seconds_per_event = 10.0
    assert handle.run_outbox_once(busy=True) is False  # 3 of a batch of 10 taken: nothing left waiting
    assert handle._seconds_per_event < 10.0 and handle._last_pass_seconds > 0
    with world.db.unit_of_work(write=False) as s:
        assert s.query(OutboxEvent).filter(OutboxEvent.dispatched_at.is_(None)).count() == 0
