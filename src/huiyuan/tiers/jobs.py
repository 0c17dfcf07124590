"""Background work of member tiers.

* ``tiers.review`` settles every end of validity that is due (validity end plus grace, or the set
  settlement date): members in chunks, each chunk and its resume cursor in one transaction.
  Evaluation is idempotent, so a rerun or a resumed run settles nothing twice.
* ``tiers.snapshot`` records the day's distribution of members per level (params: ``day``,
  ``YYYY-MM-DD``, default the brand's today); a rerun for the same day replaces that day's rows.

Both run on their own once a day per brand (``jobs.schedule``): the review just after local
midnight, when fixed-date validity and settlement days begin; the snapshot late in the day.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from huiyuan.jobs.context import JobContext
from huiyuan.jobs.registry import job, schedule
from huiyuan.kit.clock import utcnow
from huiyuan.tiers import distribution, service
from huiyuan.tiers.ladder import Ladder, load_ladder
from huiyuan.tiers.repository import TierRepository

CHUNK = 200


@job("tiers.review")
def review_tiers(ctx: JobContext) -> dict[str, Any]:
    # The resume point's time first, then the time the run was asked for (the scheduler's slot).
    stamp = ctx.state.get("at") or ctx.params.get("at")
    at = datetime.fromisoformat(stamp) if stamp else utcnow()
    after = int(ctx.state.get("after_id", 0))
    done = int(ctx.state.get("done", 0))
    with ctx.unit_of_work(write=False) as session:
        total = done + TierRepository(session).count_due(at)
    ctx.progress(done, total, "reviewing tiers")
    ladders: dict[int, Ladder | None] = {}
    while True:
        with ctx.unit_of_work() as session:
            rows = TierRepository(session).due_member_ids(at, after_id=after, limit=CHUNK)
            if not rows:
                break
            for _state_id, member_id, brand_id in rows:
                if brand_id not in ladders:
                    ladders[brand_id] = load_ladder(session, brand_id)
                ladder = ladders[brand_id]
                if ladder is None:
                    continue
                service.evaluate_member(
                    session,
                    actor=ctx.actor.for_brand(brand_id),
                    member_id=member_id,
                    reason="tiers.review",
                    ladder=ladder,
                )
            after, done = rows[-1][0], done + len(rows)
            ctx.checkpoint({"at": at.isoformat(), "after_id": after, "done": done}, session=session)
        # Ladder rows belong to the committed session; load them afresh for the next chunk.
        ladders.clear()
        ctx.progress(done, max(total, done), "reviewing tiers")
    return {"reviewed": done, "at": at.isoformat()}


@job("tiers.snapshot")
def snapshot_tiers(ctx: JobContext) -> dict[str, Any]:
    day = date.fromisoformat(ctx.params["day"]) if ctx.params.get("day") else None
    with ctx.unit_of_work(write=False) as session:
        brands = [ctx.brand_id] if ctx.brand_id is not None else TierRepository(session).brands_with_program()
    written: dict[str, int] = {}
    for i, brand_id in enumerate(brands):
        with ctx.unit_of_work() as session:
            rows = distribution.take_snapshot(session, brand_id=brand_id, day=day)
            written[str(brand_id)] = sum(r.members for r in rows)
        ctx.progress(i + 1, len(brands), "snapshot")
    return {"members": written, "day": day.isoformat() if day else None}


schedule("tiers.review", daily_at="00:20")
schedule("tiers.snapshot", daily_at="23:50")
