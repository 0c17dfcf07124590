"""Scheduled runs: each (kind, brand, slot) is enqueued once, daily slots follow the brand's clock."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import select

from huiyuan.jobs.models import JobRun
from huiyuan.jobs.registry import Schedule, schedules
from huiyuan.jobs.schedule import enqueue_due, slot_for
from tests.conftest import World


def test_daily_slot_follows_the_brand_timezone() -> None:
    daily = Schedule(kind="x", daily_at="00:10")
    # 16:05 UTC is 00:05 the next day in Shanghai: not yet due; 16:10 is.
    assert slot_for(daily, datetime(2026, 12, 31, 16, 5, tzinfo=UTC), "Asia/Shanghai") is None
    assert slot_for(daily, datetime(2026, 12, 31, 16, 10, tzinfo=UTC), "Asia/Shanghai") == "2027-01-01"
    assert slot_for(daily, datetime(2026, 12, 31, 16, 10, tzinfo=UTC), "UTC") == "2026-12-31"
    every = Schedule(kind="y", every_minutes=5)
    t = datetime(2026, 1, 1, 0, 0, tzinfo=UTC)
    assert slot_for(every, t, "UTC") == slot_for(every, t + timedelta(minutes=4), "UTC")
    assert slot_for(every, t, "UTC") != slot_for(every, t + timedelta(minutes=5), "UTC")


def test_the_points_sweeps_are_scheduled() -> None:
    kinds = {s.kind for s in schedules()}
    assert {"points.expire", "points.activate", "points.release_reservations"} <= kinds


def test_each_slot_is_enqueued_once_per_brand(world: World) -> None:
    now = datetime(2026, 3, 1, 18, 0, tzinfo=UTC)  # 02:00 in Shanghai: daily runs are due
    first = enqueue_due(world.db, now=now)
    again = enqueue_due(world.db, now=now + timedelta(seconds=30))
    assert again == []
    due = {s.kind for s in schedules() if slot_for(s, now, "Asia/Shanghai") is not None}
    brands = {b.id for b in world.brands}
    assert {(kind, brand) for kind, brand, _ in first} == {(k, b) for k in due for b in brands}
    with world.db.unit_of_work(write=False) as s:
        runs = s.scalars(select(JobRun).where(JobRun.id.in_([r for _, _, r in first]))).all()
    # The memory queue runs them at once: every scheduled sweep finished on the empty brands.
    assert {r.status for r in runs} == {"succeeded"}, [(r.kind, r.status, r.error) for r in runs]
    later = enqueue_due(world.db, now=now + timedelta(minutes=61))
    assert {k for k, _, _ in later} >= {"points.activate", "points.release_reservations"}
    assert "points.expire" not in {k for k, _, _ in later}  # once a day
