"""Running a paid-membership job function directly, with a real ``JobContext`` and run row."""

from __future__ import annotations

from typing import Any

from huiyuan.jobs.context import JobContext
from huiyuan.jobs.models import JobRun
from huiyuan.jobs.registry import JobFunction
from huiyuan.kit.db import Database
from huiyuan.kit.scope import Principal, Scope


def run_job(
    db: Database,
    fn: JobFunction,
    kind: str,
    *,
    brand_id: int | None = None,
    state: dict[str, Any] | None = None,
) -> tuple[dict[str, Any] | None, JobRun]:
    """Run ``fn`` once as run ``kind`` (platform-wide unless ``brand_id``); returns its result and run row."""
    with db.unit_of_work() as s:
        run = JobRun(
            brand_id=brand_id, kind=kind, status="running", params={}, state=state or {}, created_by="test"
        )
        s.add(run)
        s.flush()
        ctx = JobContext(
            db=db,
            run_id=run.id,
            kind=kind,
            brand_id=brand_id,
            params={},
            state=dict(run.state),
            actor=Principal(
                kind="system",
                id=None,
                name=f"job:{kind}#{run.id}",
                scope=Scope(brand_id=brand_id, platform=brand_id is None),
                permissions=frozenset({"*"}),
            ),
        )
    result = fn(ctx)
    with db.unit_of_work(write=False) as s:
        row = s.get(JobRun, ctx.run_id)
        assert row is not None
    return result, row
