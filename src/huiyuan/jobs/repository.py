"""Every query on job runs. Tenancy (``BrandOptional``) is applied by the session's scope: a brand
sees its own runs only, the platform sees all."""

from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from huiyuan.jobs.models import JobRun


class JobRepository:
    def __init__(self, session: Session) -> None:
        self.session = session

    def get(self, run_id: int) -> JobRun | None:
        return self.session.scalars(select(JobRun).where(JobRun.id == run_id)).one_or_none()

    def get_for_update(self, run_id: int) -> JobRun | None:
        stmt = select(JobRun).where(JobRun.id == run_id).with_for_update()
        return self.session.scalars(stmt).one_or_none()

    def list(
        self, *, status: str | None, kind: str | None, before_id: int | None, limit: int
    ) -> list[JobRun]:
        """Newest first, keyset-paginated on id."""
        stmt = select(JobRun)
        if status:
            stmt = stmt.where(JobRun.status == status)
        if kind:
            stmt = stmt.where(JobRun.kind == kind)
        if before_id is not None:
            stmt = stmt.where(JobRun.id < before_id)
        return list(self.session.scalars(stmt.order_by(JobRun.id.desc()).limit(limit)))

    def status_counts(self) -> dict[str, int]:
        stmt = select(JobRun.status, func.count()).group_by(JobRun.status)
        return {status: int(n) for status, n in self.session.execute(stmt)}
