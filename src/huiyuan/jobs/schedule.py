"""Enqueueing scheduled jobs: the expiry, activation, tier review and plan expiry sweeps that run
on their own, per brand.

Jobs declare their cadence next to their code (``jobs.registry.schedule``). The worker calls
``enqueue_due`` about once a minute: for every schedule and active brand it computes the current
slot (the brand's local date once ``daily_at`` has passed, or the interval number for
``every_minutes``), claims it with an ``INSERT`` that the unique key (kind, brand, slot) lets succeed
once, and enqueues the run in the same transaction. So any number of workers may tick: each slot
runs once, and a worker that was down catches up with the current slot only (each sweep handles
everything due, so missed slots need no runs of their own).
"""

from __future__ import annotations

from datetime import datetime, time
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from huiyuan.jobs import service
from huiyuan.jobs.models import ScheduleSlot
from huiyuan.jobs.registry import Schedule, schedules
from huiyuan.kit.clock import utcnow
from huiyuan.kit.db import Database
from huiyuan.kit.scope import system_for_brand
from huiyuan.tenancy.models import Brand


def slot_for(entry: Schedule, now: datetime, tz: str) -> str | None:
    """The slot due at ``now`` for a brand in ``tz``, or None if today's run is not due yet."""
    if entry.every_minutes is not None:
        minutes = int(now.timestamp() // 60)
        return f"m{minutes // entry.every_minutes}"
    assert entry.daily_at is not None
    hour, minute = (int(x) for x in entry.daily_at.split(":"))
    local = now.astimezone(ZoneInfo(tz))
    if local.time() < time(hour, minute):
        return None
    return local.date().isoformat()


def _claim(session: Session, *, kind: str, brand_id: int, slot: str, now: datetime) -> bool:
    insert = postgresql.insert if session.get_bind().dialect.name == "postgresql" else sqlite.insert
    stmt = (
        insert(ScheduleSlot.__table__)  # type: ignore[arg-type]
        .values(kind=kind, brand_id=brand_id, slot=slot, created_at=now)
        .on_conflict_do_nothing(index_elements=["kind", "brand_id", "slot"])
        .returning(ScheduleSlot.__table__.c.id)  # type: ignore[attr-defined]
    )
    # RETURNING, not rowcount: the driver's rowcount for a skipped row is not reliable everywhere.
    return session.execute(stmt).first() is not None


def enqueue_due(db: Database, *, now: datetime | None = None) -> list[tuple[str, int, int]]:
    """Enqueue every scheduled run due now; returns (kind, brand id, run id) of each new run."""
    now = now or utcnow()
    with db.unit_of_work(None, write=False) as session:
        brands = [(b.id, b.timezone) for b in session.scalars(select(Brand).where(Brand.status == "active"))]
    started: list[tuple[str, int, int]] = []
    for entry in schedules():
        for brand_id, tz in brands:
            slot = slot_for(entry, now, tz)
            if slot is None:
                continue
            actor = system_for_brand(brand_id)
            with db.unit_of_work(actor.scope) as session:
                if not _claim(session, kind=entry.kind, brand_id=brand_id, slot=slot, now=now):
                    continue
                run = service.enqueue(session, actor=actor, kind=entry.kind, params={"at": now.isoformat()})
                session.execute(
                    ScheduleSlot.__table__.update()  # type: ignore[attr-defined]
                    .where(
                        ScheduleSlot.kind == entry.kind,
                        ScheduleSlot.brand_id == brand_id,
                        ScheduleSlot.slot == slot,
                    )
                    .values(run_id=run.id)
                )
                started.append((entry.kind, brand_id, run.id))
    return started
