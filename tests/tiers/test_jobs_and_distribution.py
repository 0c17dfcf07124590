"""The review and snapshot jobs, the distribution API and the console chart."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from sqlalchemy import func, select

from huiyuan.jobs import service as jobs
from huiyuan.jobs.models import JobRun
from huiyuan.kit.clock import FrozenClock
from huiyuan.kit.db import Database
from huiyuan.kit.scope import SYSTEM, Scope, system_for_brand
from huiyuan.tiers import jobs as tier_jobs
from huiyuan.tiers.models import MemberTier, TierChange, TierSnapshot
from tests.conftest import World
from tests.console.conftest import make_user, signed_in
from tests.tiers.helpers import buy, dispatch, enroll, reasons, set_up_ladder


def _run(db: Database, kind: str, brand_id: int | None = None, **params: Any) -> JobRun:
    actor = system_for_brand(brand_id) if brand_id else SYSTEM
    with db.unit_of_work(Scope(brand_id=brand_id) if brand_id else None) as s:
        run_id = jobs.enqueue(s, actor=actor, kind=kind, params=params).id
    with db.unit_of_work(write=False) as s:
        run = s.get(JobRun, run_id)
        assert run is not None
        return run


def test_review_job_settles_due_members_in_chunks_and_resumes(
    clock: FrozenClock, client, world: World, monkeypatch
) -> None:
    a, b = world.brands
    set_up_ladder(client, a.headers)
    set_up_ladder(client, b.headers)
    members = []
    for n in range(5):
        m = enroll(client, a.headers)
        buy(client, a.headers, m, "3500.00", f"A-{n}", paid_at=clock.now() - timedelta(hours=1))
        members.append(m)
    mb = enroll(client, b.headers)
    buy(client, b.headers, mb, "3500.00", "B-1", store="beta-s1", paid_at=clock.now() - timedelta(hours=1))
    dispatch(world.db)
    keep = members[0]
    clock.advance(days=300)
    buy(client, a.headers, keep, "2500.00", "A-keep")
    dispatch(world.db)
    clock.advance(days=66)
    monkeypatch.setattr(tier_jobs, "CHUNK", 2)

    run = _run(world.db, "tiers.review")  # platform-wide: both brands
    assert run.status == "succeeded", run.error
    assert run.result is not None and run.result["reviewed"] == 6 and run.progress_done == 6
    assert run.state["after_id"] > 0
    assert reasons(client, a.headers, keep)[-1] == ("retain", "gold", "gold")
    assert all(reasons(client, a.headers, m)[-1] == ("downgrade", "gold", "silver") for m in members[1:])
    assert reasons(client, b.headers, mb)[-1] == ("downgrade", "gold", "silver")
    with world.db.unit_of_work(write=False) as s:
        before = s.scalar(select(func.count()).select_from(TierChange))
    again = _run(world.db, "tiers.review", a.id)
    assert again.status == "succeeded" and again.result == {"reviewed": 0, "at": clock.now().isoformat()}
    with world.db.unit_of_work(write=False) as s:
        assert s.scalar(select(func.count()).select_from(TierChange)) == before
        assert (
            s.scalar(select(func.count()).select_from(MemberTier).where(MemberTier.review_at <= clock.now()))
            == 0
        )


def test_snapshot_job_is_idempotent_per_day_and_feeds_the_distribution(
    clock: FrozenClock, client, world: World
) -> None:
    a, b = world.brands
    set_up_ladder(client, a.headers)
    for _ in range(3):
        enroll(client, a.headers)
    gold = enroll(client, a.headers)
    buy(client, a.headers, gold, "3500.00", "O-1")
    dispatch(world.db)
    assert _run(world.db, "tiers.snapshot", a.id).status == "succeeded"
    assert _run(world.db, "tiers.snapshot", a.id).status == "succeeded"
    clock.advance(days=1)
    enroll(client, a.headers)
    run = _run(world.db, "tiers.snapshot")  # platform-wide: every brand with a program
    assert run.status == "succeeded" and run.result == {"members": {str(a.id): 5}, "day": None}
    assert _run(world.db, "tiers.snapshot", a.id, day="2026-03-02").status == "succeeded"
    with world.db.unit_of_work(write=False) as s:
        rows = s.execute(select(TierSnapshot.day, TierSnapshot.level_code, TierSnapshot.members)).all()
    assert len(rows) == 8  # two days × four levels, however often the job ran

    r = client.get("/api/v1/tiers/distribution?from=2026-02-01&to=2026-03-31", headers=a.headers)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["days"] == ["2026-03-01", "2026-03-02"]
    assert {lv["code"]: lv["counts"] for lv in body["levels"]} == {
        "base": [3, 4],
        "silver": [0, 0],
        "gold": [1, 1],
        "platinum": [0, 0],
    }
    assert client.get("/api/v1/tiers/distribution", headers=a.headers).json()["days"] == body["days"]
    r = client.get("/api/v1/tiers/distribution?from=2026-03-31&to=2026-03-01", headers=a.headers)
    assert r.status_code == 422
    # Beta sees only its own (empty) series.
    assert client.get("/api/v1/tiers/distribution?from=2026-02-01", headers=b.headers).json() == {
        "days": [],
        "levels": [],
    }

    make_user(world.db, "ana", "analyst", a.id)
    console = signed_in(client, "ana")
    page = console.client.get("/console/tiers")
    assert page.status_code == 200 and "tier-distribution-chart" in page.text
    chart = console.client.get("/console/tiers/distribution.json?from=2026-02-01").json()
    assert chart["days"] == ["2026-03-01", "2026-03-02"] and chart["series"][0]["name"] == "普卡"
    assert [s["data"] for s in chart["series"]][2] == [1, 1]
