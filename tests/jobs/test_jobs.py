from __future__ import annotations

import threading
from typing import Any

import pytest
from sqlalchemy import select

from huiyuan.audit.models import AuditEntry
from huiyuan.jobs import service
from huiyuan.jobs.context import JobContext
from huiyuan.jobs.models import JobRun
from huiyuan.jobs.registry import job
from huiyuan.kit.db import Database
from huiyuan.kit.errors import Conflict, ValidationFailed
from huiyuan.kit.scope import SYSTEM, Scope, system_for_brand
from tests.conftest import World

# Test jobs. Module-level state steers them; each test resets what it uses.
GATE = threading.Event()
ENTERED = threading.Event()
PROCESSED: list[int] = []
FAIL_AT: dict[str, int | None] = {"item": None}


@job("test.sum")
def sum_job(ctx: JobContext) -> dict[str, Any]:
    numbers = list(ctx.params["numbers"])
    ctx.progress(0, len(numbers), "adding")
    return {"sum": sum(numbers), "brand_id": ctx.brand_id, "actor": ctx.actor.name}


@job("test.gated")
def gated_job(ctx: JobContext) -> dict[str, Any]:
    ctx.progress(2, 5, "halfway")
    ENTERED.set()
    assert GATE.wait(10), "the test never opened the gate"
    ctx.progress(5, 5, "done")
    return {"ok": True}


@job("test.boom")
def boom_job(ctx: JobContext) -> None:
    ctx.progress(1, 3)
    raise ValueError("the file has no header row")


@job("test.chunked")
def chunked_job(ctx: JobContext) -> dict[str, Any]:
    """Processes items 0..9 three at a time; each chunk and its checkpoint commit together."""
    start = int(ctx.state.get("next", 0))
    items = list(range(10))
    for offset in range(start, len(items), 3):
        chunk = items[offset : offset + 3]
        with ctx.unit_of_work() as session:
            for item in chunk:
                if FAIL_AT["item"] == item:
                    raise RuntimeError(f"crashed at item {item}")
            PROCESSED.extend(chunk)
            ctx.checkpoint({"next": offset + len(chunk)}, session=session)
        ctx.progress(offset + len(chunk), len(items), "chunk done")
    return {"processed": len(items) - start}


def _run(db: Database, run_id: int) -> JobRun:
    with db.unit_of_work(write=False) as s:
        run = s.get(JobRun, run_id)
        assert run is not None
        return run


def _enqueue(db: Database, kind: str, brand_id: int | None = None, **params: Any) -> int:
    actor = system_for_brand(brand_id) if brand_id else SYSTEM
    with db.unit_of_work(Scope(brand_id=brand_id) if brand_id else None) as s:
        run = service.enqueue(s, actor=actor, kind=kind, params=params)
        assert run.status == "queued"  # it runs only after this transaction commits
        return run.id


def test_enqueue_runs_after_commit_and_records_the_result(world: World) -> None:
    alpha = world.brands[0]
    run_id = _enqueue(world.db, "test.sum", alpha.id, numbers=[1, 2, 3])
    run = _run(world.db, run_id)
    assert run.status == "succeeded" and run.result is not None
    assert run.result["sum"] == 6 and run.result["brand_id"] == alpha.id
    assert run.result["actor"].startswith(f"job:test.sum#{run_id}")
    assert run.progress_done == run.progress_total == 3
    assert run.brand_id == alpha.id and run.started_at and run.finished_at and run.attempts == 1
    with world.db.unit_of_work(write=False) as s:
        assert s.scalars(
            select(AuditEntry).where(AuditEntry.action == "job.enqueued")
        ).one().entity_id == str(run_id)


def test_rolled_back_enqueue_never_runs(world: World) -> None:
    with pytest.raises(RuntimeError), world.db.unit_of_work() as s:
        service.enqueue(s, actor=SYSTEM, kind="test.sum", params={"numbers": [1]})
        raise RuntimeError("request failed")
    with world.db.unit_of_work(write=False) as s:
        assert s.scalars(select(JobRun)).all() == []


def test_unknown_kind_and_bad_params_are_refused(world: World) -> None:
    with world.db.unit_of_work() as s:
        with pytest.raises(ValidationFailed):
            service.enqueue(s, actor=SYSTEM, kind="no.such.job", params={})
        with pytest.raises(ValidationFailed):
            service.enqueue(s, actor=SYSTEM, kind="test.sum", params={"numbers": {1, 2}})


def test_progress_is_visible_from_another_session_while_running(world: World, client: Any) -> None:
    alpha = world.brands[0]
    GATE.clear()
    ENTERED.clear()
    ids: list[int] = []
    worker = threading.Thread(target=lambda: ids.append(_enqueue(world.db, "test.gated", alpha.id)))
    worker.start()
    try:
        assert ENTERED.wait(10)
        with world.db.unit_of_work(write=False) as s:
            run = s.scalars(select(JobRun).where(JobRun.kind == "test.gated")).one()
            assert (run.status, run.progress_done, run.progress_total, run.message) == (
                "running",
                2,
                5,
                "halfway",
            )
        body = client.get(f"/api/v1/jobs/{run.id}", headers=alpha.headers).json()
        assert body["status"] == "running" and body["percent"] == 40.0
    finally:
        GATE.set()
        worker.join(10)
    assert _run(world.db, ids[0]).status == "succeeded"


def test_failure_is_recorded(world: World) -> None:
    run_id = _enqueue(world.db, "test.boom")
    run = _run(world.db, run_id)
    assert run.status == "failed"
    assert run.error == "ValueError: the file has no header row"
    assert run.progress_done == 1 and run.finished_at is not None and run.result is None


def test_resume_continues_from_the_checkpoint(world: World) -> None:
    PROCESSED.clear()
    FAIL_AT["item"] = 7
    try:
        run_id = _enqueue(world.db, "test.chunked")
    finally:
        FAIL_AT["item"] = None
    run = _run(world.db, run_id)
    assert run.status == "failed" and "crashed at item 7" in (run.error or "")
    assert run.state == {"next": 6} and PROCESSED == [0, 1, 2, 3, 4, 5]

    with world.db.unit_of_work() as s:
        assert service.resume(s, actor=SYSTEM, run_id=run_id).status == "queued"
    run = _run(world.db, run_id)
    assert run.status == "succeeded" and run.attempts == 2
    assert run.result == {"processed": 4} and run.state == {"next": 10}
    assert list(range(10)) == PROCESSED  # every item exactly once
    with world.db.unit_of_work() as s, pytest.raises(Conflict):
        service.resume(s, actor=SYSTEM, run_id=run_id)


def test_a_stale_running_run_resumes_only_when_forced(world: World) -> None:
    run_id = _enqueue(world.db, "test.boom")
    with world.db.unit_of_work() as s:  # as if its worker died mid-run
        run = s.get(JobRun, run_id)
        assert run is not None
        run.status = "running"
    with world.db.unit_of_work() as s, pytest.raises(Conflict):
        service.resume(s, actor=SYSTEM, run_id=run_id)
    with world.db.unit_of_work() as s:
        service.resume(s, actor=SYSTEM, run_id=run_id, force=True)
    run = _run(world.db, run_id)
    assert run.status == "failed" and run.attempts == 2


def test_cancelled_run_stops_at_next_progress(world: World) -> None:
    GATE.clear()
    ENTERED.clear()
    ids: list[int] = []
    worker = threading.Thread(target=lambda: ids.append(_enqueue(world.db, "test.gated")))
    worker.start()
    assert ENTERED.wait(10)
    with world.db.unit_of_work() as s:
        run = s.scalars(select(JobRun).where(JobRun.kind == "test.gated")).one()
        service.cancel(s, actor=SYSTEM, run_id=run.id)
    GATE.set()
    worker.join(10)
    assert _run(world.db, ids[0]).status == "cancelled"


def test_jobs_api_lists_only_own_brand(world: World, client: Any) -> None:
    alpha, beta = world.brands
    a1 = _enqueue(world.db, "test.sum", alpha.id, numbers=[1])
    a2 = _enqueue(world.db, "test.boom", alpha.id)
    b1 = _enqueue(world.db, "test.sum", beta.id, numbers=[2])
    p1 = _enqueue(world.db, "test.sum", None, numbers=[3])

    page = client.get("/api/v1/jobs?limit=1", headers=alpha.headers).json()
    assert [r["id"] for r in page["items"]] == [a2] and page["next_cursor"]
    page2 = client.get(f"/api/v1/jobs?limit=1&cursor={page['next_cursor']}", headers=alpha.headers).json()
    assert [r["id"] for r in page2["items"]] == [a1] and page2["next_cursor"] is None
    failed = client.get("/api/v1/jobs?status=failed", headers=alpha.headers).json()
    assert [r["id"] for r in failed["items"]] == [a2]

    assert client.get(f"/api/v1/jobs/{a1}", headers=beta.headers).status_code == 404
    assert (
        client.get(f"/api/v1/jobs/{p1}", headers=beta.headers).status_code == 404
    )  # platform runs are hidden
    assert [r["id"] for r in client.get("/api/v1/jobs", headers=beta.headers).json()["items"]] == [b1]
    everything = client.get("/api/v1/jobs", headers=world.platform_headers).json()
    assert [r["id"] for r in everything["items"]] == [p1, b1, a2, a1]


def test_jobs_api_needs_permission(world: World, client: Any) -> None:
    from tests.factories import make_key

    key = make_key(world.db, world.brands[0].id, ["members:read"], name="no-jobs")
    assert client.get("/api/v1/jobs", headers={"Authorization": f"Bearer {key}"}).status_code == 403


def test_drain_job_dispatches_the_outbox(world: World) -> None:
    from huiyuan.outbox.models import OutboxEvent
    from huiyuan.outbox.service import emit

    with world.db.unit_of_work() as s:
        for i in range(5):
            emit(
                s,
                type="test.drain",
                brand_id=world.brands[0].id,
                aggregate_type="t",
                aggregate_id=i,
                payload={},
            )
    run_id = _enqueue(world.db, "outbox.drain", batch=2)
    run = _run(world.db, run_id)
    assert run.status == "succeeded" and run.result == {"dispatched": 5, "failed": 0, "deliveries": 0}
    with world.db.unit_of_work(write=False) as s:
        assert all(e.dispatched_at is not None for e in s.scalars(select(OutboxEvent)))
