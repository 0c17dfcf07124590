"""The expire and periodic-benefit jobs, run directly with a real ``JobContext``: time travel past
the end, idempotent re-runs, resumption from a checkpoint, one brand or all brands."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from huiyuan.jobs.registry import get_job
from huiyuan.kit.clock import FrozenClock
from huiyuan.outbox.models import OutboxEvent
from huiyuan.paid import jobs
from huiyuan.paid.models import Subscription
from tests.conftest import World
from tests.factories import enroll
from tests.paid.conftest import granted_keys
from tests.paid.helpers import buy, make_plans
from tests.paid.jobs_helpers import run_job


def test_jobs_are_registered() -> None:
    assert get_job("paid.expire") is jobs.expire_subscriptions
    assert get_job("paid.periodic_benefits") is jobs.grant_periodic_benefits


def test_periodic_benefits_job_grants_each_started_period_once(
    client: Any, world: World, clock: FrozenClock
) -> None:
    h = world.brands[0].headers
    plans = make_plans(client, h)
    m = enroll(client, h)
    sub = buy(client, h, m["id"], plans.week_pass, "P-1").json()["subscription"]
    clock.advance(days=15)  # weeks 0, 1 and 2 have started
    result, run = run_job(world.db, jobs.grant_periodic_benefits, "paid.periodic_benefits")
    assert result == {"checked": 1, "periods_granted": 3}
    assert run.progress_done == 1 and run.progress_total == 1 and run.state["after_id"] == sub["id"]
    result, _ = run_job(world.db, jobs.grant_periodic_benefits, "paid.periodic_benefits")
    assert result == {"checked": 1, "periods_granted": 0}
    with world.db.unit_of_work(write=False) as s:
        assert granted_keys(s) == [f"paid:{sub['id']}:period:{n}:{i}" for n in range(3) for i in range(2)]
    # Weeks start on days 0, 7, 14, 21, 28 of a 30-day pass: five periods in all, never a sixth.
    clock.advance(days=60)
    result, _ = run_job(world.db, jobs.grant_periodic_benefits, "paid.periodic_benefits")
    assert result == {"checked": 1, "periods_granted": 2}
    got = client.get(f"/api/v1/members/{m['id']}/paid", headers=h).json()
    assert got["subscriptions"][0]["periods_granted"] == 5
    assert sum(e["kind"] == "benefit_granted" for e in got["events"]) == 10


def test_expire_job_after_time_travel(client: Any, world: World, clock: FrozenClock) -> None:
    a, b = world.brands
    plans_a, plans_b = make_plans(client, a.headers), make_plans(client, b.headers)
    members = [enroll(client, a.headers) for _ in range(3)]
    for n, m in enumerate(members):
        buy(client, a.headers, m["id"], plans_a.week_pass, f"P-{n}")
    beta_member = enroll(client, b.headers)
    buy(client, b.headers, beta_member["id"], plans_b.week_pass, "B-1")
    late = enroll(client, a.headers)
    clock.advance(days=10)
    buy(client, a.headers, late["id"], plans_a.week_pass, "P-late")

    clock.advance(days=25)  # the first four passes (and beta's) are over; the late one runs 5 more days
    # A run for brand alpha touches alpha only.
    result, run = run_job(world.db, jobs.expire_subscriptions, "paid.expire", brand_id=a.id)
    assert result == {"checked": 3, "expired": 3}
    assert (run.progress_done, run.progress_total) == (3, 3)
    got = client.get(f"/api/v1/members/{members[0]['id']}/paid", headers=a.headers).json()
    sub = got["subscriptions"][0]
    assert sub["status"] == "expired" and sub["ended_at"] == sub["ends_at"] == "2026-03-31T00:00:00Z"
    assert sub["periods_granted"] == 5  # the weeks that started before the end, granted at expiry
    assert got["events"][0]["kind"] == "expired"
    assert client.get(f"/api/v1/members/{late['id']}/paid", headers=a.headers).json()["current"] is not None

    # Again: nothing left in alpha; a platform run then picks up beta's.
    assert run_job(world.db, jobs.expire_subscriptions, "paid.expire", brand_id=a.id)[0] == {
        "checked": 0,
        "expired": 0,
    }
    assert run_job(world.db, jobs.expire_subscriptions, "paid.expire")[0] == {"checked": 1, "expired": 1}
    with world.db.unit_of_work(write=False) as s:
        expired = s.scalars(select(OutboxEvent).where(OutboxEvent.type == "paid.expired")).all()
        assert sorted(e.brand_id for e in expired) == [a.id, a.id, a.id, b.id]
        statuses = {mid: st for mid, st in s.execute(select(Subscription.member_id, Subscription.status))}
    assert statuses[late["id"]] == "active" and statuses[beta_member["id"]] == "expired"


def test_expire_job_resumes_from_its_checkpoint(client: Any, world: World, clock: FrozenClock) -> None:
    h = world.brands[0].headers
    plans = make_plans(client, h)
    subs = []
    for n in range(3):
        m = enroll(client, h)
        subs.append(buy(client, h, m["id"], plans.week_pass, f"P-{n}").json()["subscription"]["id"])
    clock.advance(days=31)
    # A run that had checkpointed past the first subscription carries on after it.
    result, run = run_job(
        world.db, jobs.expire_subscriptions, "paid.expire", state={"after_id": subs[0], "done": 1}
    )
    assert result == {"checked": 3, "expired": 2}
    assert run.state == {"after_id": subs[2], "done": 3, "expired": 2}
    with world.db.unit_of_work(write=False) as s:
        statuses = [s.get(Subscription, i).status for i in subs]  # type: ignore[union-attr]
    assert statuses == ["active", "expired", "expired"]
