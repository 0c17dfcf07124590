"""Background jobs of benefits.

* ``benefits.cards_issue`` — every active benefit card whose ``next_due_at`` has come gets the
  periods of its lines that have started (``card_issuing.issue_due``), then expires if its term has
  ended; cards with nothing due are not touched. Cards are walked by id
  in chunks; each chunk and its resume cursor commit together, and each card runs in a savepoint
  of its own, so a card whose grant is refused (a coupon out of stock) is left for the next run
  while the others go on. Issues are unique per card, line and period: reruns never double.
* ``benefits.expire`` — entitlements whose validity has passed become ``expired`` (their open
  appointments are cancelled), with an ``expired`` event each.

A run for one brand touches that brand only; a platform run covers every brand. Both run daily.
"""

from __future__ import annotations

from typing import Any

from huiyuan.benefits import card_issuing, entitlements
from huiyuan.benefits.card_repository import CardRepository
from huiyuan.benefits.repository import BenefitRepository
from huiyuan.jobs.context import JobContext
from huiyuan.jobs.registry import job, schedule
from huiyuan.kit.clock import utcnow
from huiyuan.kit.errors import AppError
from huiyuan.kit.logging import get_logger

CHUNK = 200
log = get_logger("huiyuan.benefits")


@job("benefits.cards_issue")
def issue_card_benefits(ctx: JobContext) -> dict[str, Any]:
    """Issue every active card's due periods; expire cards whose term has ended."""
    now = utcnow()
    after = int(ctx.state.get("after_id", 0))
    totals = {k: int(ctx.state.get(k, 0)) for k in ("done", "issued", "expired", "failed")}
    with ctx.unit_of_work(write=False) as session:
        total = totals["done"] + CardRepository(session).count_due(now, after_id=after)
    ctx.progress(totals["done"], total, "issuing benefit card benefits")
    while True:
        with ctx.unit_of_work() as session:
            ids = CardRepository(session).due_ids(now, after_id=after, limit=CHUNK)
            if not ids:
                break
            for card_id in ids:
                try:
                    with session.begin_nested():
                        issued, expired = card_issuing.settle_card(
                            session, actor=ctx.actor, card_id=card_id, now=now
                        )
                except AppError as exc:
                    totals["failed"] += 1
                    log.warning(
                        "benefit card issue refused", card_id=card_id, code=exc.code, detail=exc.detail
                    )
                    continue
                totals["issued"] += issued
                totals["expired"] += int(expired)
            after, totals["done"] = ids[-1], totals["done"] + len(ids)
            ctx.checkpoint({"after_id": after, **totals}, session=session)
        ctx.progress(totals["done"], max(total, totals["done"]), "issuing benefit card benefits")
    return {"checked": totals["done"], **{k: v for k, v in totals.items() if k != "done"}}


@job("benefits.expire")
def expire_entitlements(ctx: JobContext) -> dict[str, Any]:
    """Mark every active entitlement whose validity has passed as expired."""
    now = utcnow()
    after = int(ctx.state.get("after_id", 0))
    done = int(ctx.state.get("done", 0))
    expired = int(ctx.state.get("expired", 0))
    with ctx.unit_of_work(write=False) as session:
        total = done + BenefitRepository(session).count_due_to_expire(now, after_id=after)
    ctx.progress(done, total, "expiring benefits")
    while True:
        with ctx.unit_of_work() as session:
            ids = BenefitRepository(session).due_to_expire_ids(now, after_id=after, limit=CHUNK)
            if not ids:
                break
            for member_benefit_id in ids:
                expired += entitlements.expire_one(
                    session, actor=ctx.actor, member_benefit_id=member_benefit_id, now=now
                )
            after, done = ids[-1], done + len(ids)
            ctx.checkpoint({"after_id": after, "done": done, "expired": expired}, session=session)
        ctx.progress(done, max(total, done), "expiring benefits")
    return {"checked": done, "expired": expired}


# Monthly and weekly periods start at the minute of activation: an hourly pass issues them the same
# hour. Expiry is a daily sweep (reads show an entitlement past its end as expired at once).
schedule("benefits.cards_issue", every_minutes=60)
schedule("benefits.expire", daily_at="00:40")
