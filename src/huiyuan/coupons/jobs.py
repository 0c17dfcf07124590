"""Background work of coupons.

* ``coupons.push`` — an operator's push issue (``coupons.push``), with progress and a report.
* ``coupons.expire`` — unused coupons past their end become expired, 2,000 a transaction, and give
  their budget back; resumable (the last coupon id is the checkpoint). Scheduled hourly.
* ``coupons.release_locks`` — checkout locks past their timeout give their coupons back. Every 5 min.

A run is for one brand (the run's scope); ``params.at`` (ISO time) fixes "now" for a sweep.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from huiyuan.coupons import checkout, push
from huiyuan.jobs.context import JobContext
from huiyuan.jobs.registry import job, schedule
from huiyuan.kit.clock import utcnow

CHUNK = 2000


def _now(ctx: JobContext) -> datetime:
    if "at" not in ctx.state:
        ctx.state["at"] = ctx.params.get("at") or utcnow().isoformat()
    return datetime.fromisoformat(ctx.state["at"])


@job(push.JOB_KIND)
def push_issue(ctx: JobContext) -> dict[str, Any]:
    return push.run_push(
        ctx.unit_of_work,
        actor=ctx.actor,
        run_id=int(ctx.params["issue_run_id"]),
        state=ctx.state,
        checkpoint=lambda state, session: ctx.checkpoint(state, session=session),
        progress=ctx.progress,
    )


@job("coupons.expire")
def expire_coupons(ctx: JobContext) -> dict[str, Any]:
    now = _now(ctx)
    after = int(ctx.state.get("after_id", 0))
    done = int(ctx.state.get("coupons", 0))
    while True:
        with ctx.unit_of_work() as session:
            expired, last = checkout.expire_due(
                session, actor=ctx.actor, now=now, after_id=after, limit=CHUNK
            )
            if last == after:
                break
            after, done = last, done + expired
            ctx.checkpoint({"at": ctx.state["at"], "after_id": after, "coupons": done}, session=session)
        ctx.progress(done, None, f"expired {done} coupons")
    return {"coupons": done, "at": ctx.state["at"]}


@job("coupons.release_locks")
def release_locks(ctx: JobContext) -> dict[str, Any]:
    now = _now(ctx)
    total = 0
    while True:
        with ctx.unit_of_work() as session:
            released = checkout.release_due_locks(session, actor=ctx.actor, now=now)
        total += released
        if released == 0:
            break
    return {"locks": total}


schedule("coupons.expire", every_minutes=60)
schedule("coupons.release_locks", every_minutes=5)
