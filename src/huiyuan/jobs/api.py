"""HTTP routes for background jobs: list runs and read one run's progress (``jobs:read``).

Thin: permission, one service call, response model. A brand sees its own runs only (tenancy).
"""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Query

from huiyuan.auth.deps import require
from huiyuan.jobs import service
from huiyuan.jobs.schemas import JobRunOut
from huiyuan.kit.pagination import Page, check_limit, cursor_page, decode_cursor
from huiyuan.kit.scope import Principal
from huiyuan.kit.web import SessionDep
from huiyuan.settings import get_settings

router = APIRouter(prefix="/api/v1/jobs", tags=["jobs"])

Reader = Annotated[Principal, require("jobs:read")]
JobStatus = Literal["queued", "running", "succeeded", "failed", "cancelled"]


@router.get("", response_model=Page[JobRunOut], summary="List job runs (newest first)")
def list_jobs(
    session: SessionDep,
    actor: Reader,
    status: JobStatus | None = None,
    kind: Annotated[str | None, Query(max_length=64)] = None,
    cursor: str | None = None,
    limit: int = 50,
) -> Page[JobRunOut]:
    limit = check_limit(limit, get_settings().max_page_size)
    rows = service.list_runs(
        session, status=status, kind=kind, before_id=decode_cursor(cursor), limit=limit + 1
    )
    return cursor_page(rows, limit, lambda shown: [service.to_out(r) for r in shown])


@router.get("/{run_id}", response_model=JobRunOut, summary="Get a job run and its progress")
def get_job(run_id: int, session: SessionDep, actor: Reader) -> JobRunOut:
    return service.to_out(service.get_run(session, run_id))
