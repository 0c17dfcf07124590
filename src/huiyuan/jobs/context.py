"""What a running job sees: its parameters, its resume state, and ways to report progress.

A job is written chunk by chunk so it can stop anywhere and resume::

    @job("members.recount")
    def recount(ctx: JobContext) -> dict[str, Any]:
        after = ctx.state.get("after_id", 0)          # resume cursor from the last checkpoint
        while chunk := load_chunk(after):
            with ctx.unit_of_work() as session:        # one transaction per chunk
                work_on(session, chunk, actor=ctx.actor)
                after = chunk[-1].id
                ctx.checkpoint({"after_id": after}, session=session)  # atomic with the chunk
            ctx.progress(done, total, "counting")      # visible at once in the console and CLI
        return {"done": done}

``progress`` writes in a short transaction of its own, so others see it while the job runs; it also
raises ``JobCancelled`` when someone cancelled the run. Must not enqueue or run jobs itself.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from huiyuan.jobs.models import JobRun
from huiyuan.kit.db import Database
from huiyuan.kit.scope import Principal, Scope


class JobCancelled(Exception):
    """Raised inside a job when its run was cancelled; the runner records it, nothing else to do."""


@dataclass
class JobContext:
    db: Database
    run_id: int
    kind: str
    brand_id: int | None
    params: dict[str, Any]
    actor: Principal
    state: dict[str, Any] = field(default_factory=dict)

    @property
    def scope(self) -> Scope:
        return self.actor.scope

    @contextmanager
    def unit_of_work(self, *, write: bool = True) -> Iterator[Session]:
        """A transaction scoped to the run's brand (all brands for a platform run)."""
        with self.db.unit_of_work(self.scope, write=write) as session:
            yield session

    def progress(self, done: int, total: int | None = None, message: str | None = None) -> None:
        """Record progress now, in its own short transaction (call per chunk, not per row)."""
        values: dict[str, Any] = {"progress_done": int(done)}
        if total is not None:
            values["progress_total"] = int(total)
        if message is not None:
            values["message"] = message[:500]
        with self.db.unit_of_work(None, write=True) as session:
            session.execute(update(JobRun).where(JobRun.id == self.run_id).values(**values))
            status = session.scalar(select(JobRun.status).where(JobRun.id == self.run_id))
        if status == "cancelled":
            raise JobCancelled(f"run {self.run_id} was cancelled")

    def checkpoint(self, state: dict[str, Any], *, session: Session | None = None) -> None:
        """Save the resume cursor; pass the chunk's ``session`` to make it atomic with the chunk."""
        self.state = dict(state)
        stmt = update(JobRun).where(JobRun.id == self.run_id).values(state=self.state)
        if session is not None:
            session.execute(stmt)
            return
        with self.db.unit_of_work(None, write=True) as own:
            own.execute(stmt)

    def is_cancelled(self) -> bool:
        with self.db.unit_of_work(None, write=False) as session:
            return session.scalar(select(JobRun.status).where(JobRun.id == self.run_id)) == "cancelled"
