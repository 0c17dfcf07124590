"""Background job runs: what was asked, how far it got, where to resume, how it ended.

Rows only; running them is ``jobs.service`` and the Huey worker's business (``jobs.queue``).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from huiyuan.kit.clock import utcnow
from huiyuan.kit.db import Base, BrandOptional
from huiyuan.kit.types import IdType, JSONType, UTCDateTime

JOB_STATUSES = ("queued", "running", "succeeded", "failed", "cancelled")


class JobRun(BrandOptional, Base):
    """One run of a job kind. ``state`` is the resume cursor the job checkpoints as it goes."""

    __tablename__ = "job_runs"
    __table_args__ = (Index("ix_job_runs_status", "status", "id"),)

    id: Mapped[int] = mapped_column(IdType, primary_key=True)
    kind: Mapped[str] = mapped_column(String(64), nullable=False, index=True)
    status: Mapped[str] = mapped_column(String(16), default="queued", nullable=False)
    progress_done: Mapped[int] = mapped_column(Integer, default=0, nullable=False)
    progress_total: Mapped[int | None] = mapped_column(Integer)
    message: Mapped[str | None] = mapped_column(String(500))
    params: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict, nullable=False)
    state: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict, nullable=False)
    result: Mapped[dict[str, Any] | None] = mapped_column(JSONType)
    error: Mapped[str | None] = mapped_column(Text)
    attempts: Mapped[int] = mapped_column(Integer, default=0, nullable=False)
    created_by: Mapped[str] = mapped_column(String(200), nullable=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, nullable=False)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class ScheduleSlot(BrandOptional, Base):
    """A scheduled run claimed for one slot (a local day, or an interval): the unique key makes
    two workers that see the same due slot enqueue it once."""

    __tablename__ = "job_schedule_slots"
    __table_args__ = (UniqueConstraint("kind", "brand_id", "slot"),)

    id: Mapped[int] = mapped_column(IdType, primary_key=True)
    kind: Mapped[str] = mapped_column(String(64), nullable=False)
    slot: Mapped[str] = mapped_column(String(40), nullable=False)
    run_id: Mapped[int | None] = mapped_column(IdType)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, nullable=False)
