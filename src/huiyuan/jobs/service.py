"""Business verbs of background jobs: enqueue, resume, cancel, and running one run.

How another domain starts a job (an import, say)::

    from huiyuan.jobs.service import enqueue

    run = enqueue(session, actor=actor, kind="members.import", params={"upload_id": upload.id})
    return {"job_id": run.id}   # clients poll GET /api/v1/jobs/{id} for progress

``enqueue`` records a ``JobRun`` (queued) in the caller's transaction, audits it, and hands the run
id to the Huey queue only **after that transaction commits**, so a rolled-back request never starts
a job and a worker never looks for a row it cannot see yet. Params must be JSON. The job function
(``@job(kind)`` in ``jobs.registry``) gets a ``JobContext``; exceptions mark the run failed with
the error; ``resume`` queues a failed or cancelled run again, and it continues from the state it
last checkpointed. A run only starts from ``queued``, so a duplicated message never runs it twice.
"""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import event
from sqlalchemy.orm import Session

from huiyuan.audit import service as audit
from huiyuan.jobs.context import JobCancelled, JobContext
from huiyuan.jobs.models import JobRun
from huiyuan.jobs.queue import database_for_engine, get_queue, using_database
from huiyuan.jobs.registry import get_job
from huiyuan.jobs.repository import JobRepository
from huiyuan.jobs.schemas import JobRunOut
from huiyuan.kit.clock import utcnow
from huiyuan.kit.db import Database
from huiyuan.kit.errors import Conflict, NotFound, ValidationFailed, field_error
from huiyuan.kit.logging import get_logger
from huiyuan.kit.scope import Principal, Scope

log = get_logger("huiyuan.jobs")
_PENDING = "huiyuan.jobs.pending"


def enqueue(session: Session, *, actor: Principal, kind: str, params: dict[str, Any] | None = None) -> JobRun:
    """Record a queued run of ``kind`` for the actor's brand; it is sent to the worker on commit."""
    if get_job(kind) is None:
        raise ValidationFailed(
            f"Unknown job kind '{kind}'.", errors=[field_error("kind", "unknown job kind", "unknown-kind")]
        )
    params = dict(params or {})
    try:
        json.dumps(params)
    except (TypeError, ValueError):
        raise ValidationFailed(
            "Job parameters must be JSON.", errors=[field_error("params", "not JSON-serialisable")]
        )
    run = JobRun(
        brand_id=actor.scope.brand_id,
        kind=kind,
        status="queued",
        params=params,
        state={},
        created_by=actor.label,
        created_at=utcnow(),
    )
    session.add(run)
    session.flush()
    audit.record(
        session,
        actor=actor,
        action="job.enqueued",
        entity_type="job_run",
        entity_id=run.id,
        brand_id=run.brand_id,
        after={"kind": kind, "params": params},
    )
    _send_after_commit(session, run.id)
    return run


def resume(session: Session, *, actor: Principal, run_id: int, force: bool = False) -> JobRun:
    """Queue a failed or cancelled run again (``force``: also a "running" run whose worker died);
    it resumes from its last checkpoint."""
    run = JobRepository(session).get_for_update(run_id)
    if run is None:
        raise NotFound(f"Job run {run_id} was not found.")
    if run.status == "queued":  # sending again is harmless: a run only starts from "queued"
        _send_after_commit(session, run.id)
        return run
    resumable = ("failed", "cancelled", "running") if force else ("failed", "cancelled")
    if run.status not in resumable:
        raise Conflict(f"A {run.status} run cannot be resumed.")
    before = {"status": run.status}
    run.status = "queued"
    run.error = None
    run.finished_at = None
    audit.record(
        session,
        actor=actor,
        action="job.resumed",
        entity_type="job_run",
        entity_id=run.id,
        brand_id=run.brand_id,
        before=before,
        after={"status": "queued"},
    )
    _send_after_commit(session, run.id)
    return run


def cancel(session: Session, *, actor: Principal, run_id: int) -> JobRun:
    """Cancel a queued or running run (a running job stops at its next progress report)."""
    run = JobRepository(session).get_for_update(run_id)
    if run is None:
        raise NotFound(f"Job run {run_id} was not found.")
    if run.status in ("succeeded", "failed", "cancelled"):
        return run
    before = {"status": run.status}
    run.status = "cancelled"
    run.finished_at = utcnow()
    audit.record(
        session,
        actor=actor,
        action="job.cancelled",
        entity_type="job_run",
        entity_id=run.id,
        brand_id=run.brand_id,
        before=before,
        after={"status": "cancelled"},
    )
    return run


def get_run(session: Session, run_id: int) -> JobRun:
    """The run with this id in the caller's scope, or 404."""
    run = JobRepository(session).get(run_id)
    if run is None:
        raise NotFound(f"Job run {run_id} was not found.")
    return run


def list_runs(
    session: Session, *, status: str | None = None, kind: str | None = None, before_id: int | None, limit: int
) -> list[JobRun]:
    """Runs in the caller's scope, newest first."""
    return JobRepository(session).list(status=status, kind=kind, before_id=before_id, limit=limit)


def to_out(run: JobRun) -> JobRunOut:
    out = JobRunOut.model_validate(run)
    if run.progress_total:
        out.percent = round(100.0 * run.progress_done / run.progress_total, 1)
    return out


# -- running ---------------------------------------------------------------------------------------


def _job_actor(run: JobRun) -> Principal:
    # The run was authorised when it was enqueued; it acts for that brand, naming who started it.
    return Principal(
        kind="system",
        id=None,
        name=f"job:{run.kind}#{run.id} by {run.created_by}"[:200],
        scope=Scope(brand_id=run.brand_id, platform=run.brand_id is None),
        permissions=frozenset({"*"}),
    )


def execute_run(db: Database, run_id: int) -> str | None:
    """Run one queued run to its end; returns the final status (``None`` if there is no such run)."""
    with db.unit_of_work(None, write=True) as session:
        run = JobRepository(session).get_for_update(run_id)
        if run is None:
            log.warning("job run not found", run_id=run_id)
            return None
        if run.status != "queued":
            return run.status
        run.status = "running"
        run.started_at = utcnow()
        run.attempts += 1
        ctx = JobContext(
            db=db,
            run_id=run.id,
            kind=run.kind,
            brand_id=run.brand_id,
            params=dict(run.params or {}),
            state=dict(run.state or {}),
            actor=_job_actor(run),
        )
    fn = get_job(ctx.kind)
    result: dict[str, Any] | None = None
    try:
        if fn is None:
            raise LookupError(f"no job is registered for kind '{ctx.kind}' in this worker")
        result = fn(ctx)
        json.dumps(result)
    except JobCancelled:
        return _finish(db, run_id, "cancelled")
    except Exception as exc:
        log.exception("job failed", run_id=run_id, kind=ctx.kind)
        return _finish(db, run_id, "failed", error=f"{type(exc).__name__}: {exc}"[:4000])
    return _finish(db, run_id, "succeeded", result=result)


def _finish(
    db: Database, run_id: int, status: str, *, result: dict[str, Any] | None = None, error: str | None = None
) -> str:
    with db.unit_of_work(None, write=True) as session:
        run = JobRepository(session).get_for_update(run_id)
        if run is None:
            return status
        if run.status == "cancelled" and status != "cancelled":
            return "cancelled"  # cancelled while finishing: the cancellation stands
        run.status = status
        run.result = result
        run.error = error
        run.finished_at = utcnow()
        if status == "succeeded" and run.progress_total is not None:
            run.progress_done = run.progress_total
        return status


# -- sending after commit --------------------------------------------------------------------------


def _send_after_commit(session: Session, run_id: int) -> None:
    session.info.setdefault(_PENDING, []).append(run_id)


@event.listens_for(Session, "after_commit")
def _send_pending(session: Session) -> None:
    run_ids: list[int] = session.info.pop(_PENDING, [])
    if not run_ids:
        return
    # The data is committed already: a queue that fails here must not turn success into an error.
    # The run stays "queued" and ``huiyuan jobs resume`` or the worker's start-up sweep sends it.
    try:
        queue = get_queue()
        if queue.immediate:
            # The job runs here and now (tests, "memory" backend), against the enqueuing database.
            with using_database(database_for_engine(session.get_bind())):  # type: ignore[arg-type]
                for run_id in run_ids:
                    queue.send(run_id)
            return
        for run_id in run_ids:
            queue.send(run_id)
    except Exception:
        log.exception("could not hand job runs to the queue", run_ids=run_ids)


@event.listens_for(Session, "after_rollback")
def _forget_pending(session: Session) -> None:
    session.info.pop(_PENDING, None)
