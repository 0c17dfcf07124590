"""Background sweeps of the points ledger, chunked and resumable.

* ``points.expire`` — expires due lots (decay carry-over included), 20,000 lots a transaction.
* ``points.activate`` — makes pending lots whose return window closed spendable.
* ``points.release_reservations`` — releases checkout holds that timed out.
* ``points.mall_expire`` — ends points-mall redemptions left unpaid past their deadline (stock and
  held codes come back; the ledger releases the held points).

Each chunk commits with its checkpoint (the last lot id), so a stopped run resumes where it was and
a re-run finds nothing left to do: the ledger skips lots already expired or activated.
A run is for one brand (the run's scope); ``params.at`` (ISO time) fixes "now" for the whole run.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import func, select

from huiyuan.jobs.context import JobContext
from huiyuan.jobs.registry import job, schedule
from huiyuan.kit.clock import utcnow
from huiyuan.points import ledger, sweeps
from huiyuan.points.models import PointLot

CHUNK = 5000
# The set-based expiry's cost per chunk is mostly the commit writing the dirtied index pages; larger
# chunks write each page once for more lots (docs/performance.md).
EXPIRE_CHUNK = 20_000


def _now(ctx: JobContext) -> datetime:
    if "at" not in ctx.state:
        at = ctx.params.get("at")
        ctx.state["at"] = at or utcnow().isoformat()
    return datetime.fromisoformat(ctx.state["at"])


def _sweep(ctx: JobContext, kind: str) -> dict[str, Any]:
    now = _now(ctx)
    after = int(ctx.state.get("after_id", 0))
    done_lots = int(ctx.state.get("lots", 0))
    done_points = int(ctx.state.get("points", 0))
    chunk = int(ctx.params.get("chunk", EXPIRE_CHUNK if kind == "expire" else CHUNK))
    with ctx.unit_of_work(write=False) as session:
        states = ("active", "frozen", "pending") if kind == "expire" else ("pending",)
        stamp = PointLot.expires_at if kind == "expire" else PointLot.activates_at
        total = done_lots + int(
            session.scalar(
                select(func.count())
                .select_from(PointLot)
                .where(PointLot.id > after, PointLot.state.in_(states), stamp.is_not(None), stamp <= now)
            )
            or 0
        )
    ctx.progress(done_lots, total, f"{kind}: {done_lots}/{total} lots")
    sweep = sweeps.expire_due_bulk if kind == "expire" else ledger.activate_due
    while True:
        with ctx.unit_of_work() as session:
            lots, points, last = sweep(session, actor=ctx.actor, now=now, after_lot_id=after, limit=chunk)
            if lots == 0:
                break
            after, done_lots, done_points = last, done_lots + lots, done_points + points
            ctx.checkpoint(
                {"at": ctx.state["at"], "after_id": after, "lots": done_lots, "points": done_points},
                session=session,
            )
        ctx.progress(done_lots, max(total, done_lots), f"{kind}: {done_lots}/{total} lots")
    return {"lots": done_lots, "points": done_points, "at": ctx.state["at"]}


@job("points.expire")
def expire_points(ctx: JobContext) -> dict[str, Any]:
    return _sweep(ctx, "expire")


@job("points.activate")
def activate_points(ctx: JobContext) -> dict[str, Any]:
    return _sweep(ctx, "activate")


@job("points.release_reservations")
def release_reservations(ctx: JobContext) -> dict[str, Any]:
    now = _now(ctx)
    released = int(ctx.state.get("released", 0))
    while True:
        with ctx.unit_of_work() as session:
            count = ledger.release_due_reservations(session, actor=ctx.actor, now=now)
            if count == 0:
                break
            released += count
            ctx.checkpoint({"at": ctx.state["at"], "released": released}, session=session)
        ctx.progress(released, None, f"released {released} reservations")
    return {"released": released}


@job("points.mall_expire")
def expire_mall_redemptions(ctx: JobContext) -> dict[str, Any]:
    from huiyuan.points.mall import expire_overdue_redemptions

    now = _now(ctx)
    expired = int(ctx.state.get("expired", 0))
    while True:
        with ctx.unit_of_work() as session:
            count = expire_overdue_redemptions(session, actor=ctx.actor, now=now)
            if count == 0:
                break
            expired += count
            ctx.checkpoint({"at": ctx.state["at"], "expired": expired}, session=session)
        ctx.progress(expired, None, f"expired {expired} unpaid redemptions")
    return {"expired": expired}


# Expiry once a day after local midnight (yearly clearing dates fall at midnight); return windows
# close at any hour; checkout holds are short.
schedule("points.expire", daily_at="00:10")
schedule("points.activate", every_minutes=60)
schedule("points.release_reservations", every_minutes=5)
schedule("points.mall_expire", every_minutes=5)
