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


def test_a_burst_defers_dispatch_until_a_lull_or_the_deferral_ends(world: World, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    handle = WorkerHandle(world.db, get_settings())
    clock = [1000.0]
    monkeypatch.setattr(runner.time, "monotonic", lambda: clock[0])
    assert handle.defer(busy=False) is False
    assert handle.defer(busy=True) is True  # writers just became active
    clock[0] += runner.BUSY_DEFER_SECONDS - 1
    assert handle.defer(busy=True) is True
    clock[0] += 2  # a burst that lasts: paced passes from now on
    assert handle.defer(busy=True) is False
    assert handle.defer(busy=False) is False  # a lull: full batches, and the next burst defers again
    assert handle.defer(busy=True) is True


def test_no_delivery_claim_without_a_due_delivery(world: World) -> None:
    handle = WorkerHandle(world.db, get_settings())
    assert handle.deliveries_due() is False
    assert handle.run_outbox_once() is False


def test_events_of_the_loops_own_pass_are_not_arrivals(world: World) -> None:
    handle = WorkerHandle(world.db, get_settings())
    with world.db.unit_of_work() as s:
        emit(
            s, type="test.pacing", brand_id=world.brands[0].id, aggregate_type="t", aggregate_id=1, payload={}
        )
    assert handle.writers_active()
    newest = handle._newest_event()
    assert newest is not None
    handle._own_newest_id = newest[0]  # as after a pass whose handlers emitted this event
    assert not handle.writers_active()
    with world.db.unit_of_work() as s:
        emit(
            s, type="test.pacing", brand_id=world.brands[0].id, aggregate_type="t", aggregate_id=2, payload={}
        )
    assert handle.writers_active()


def test_the_first_pass_that_handles_events_freezes_the_heap_once(world: World, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    # A process of its own would freeze for real; here the flag and gc.freeze are watched instead,
    # so the test process's heap is left as it is.
    frozen: list[int] = []
    monkeypatch.setattr(runner, "_heap_frozen", runner.threading.Event())
    monkeypatch.setattr(runner.gc, "freeze", lambda: frozen.append(1))
    handle = WorkerHandle(world.db, get_settings())
    with world.db.unit_of_work() as s:
        s.execute(update(OutboxEvent).values(dispatched_at=utcnow()))
    handle.run_outbox_once()  # nothing to handle: nothing frozen yet
    assert frozen == []
    for i in range(2):
        with world.db.unit_of_work() as s:
            emit(
                s,
                type="test.pacing",
                brand_id=world.brands[0].id,
                aggregate_type="t",
                aggregate_id=i,
                payload={},
            )
        handle.run_outbox_once()
    assert frozen == [1]  # after the first pass that handled an event, and only then
    assert runner.freeze_heap_once() is False
