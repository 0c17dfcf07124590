"""Background jobs of paid membership: ``paid.expire`` (subscriptions whose end has passed become
expired) and ``paid.periodic_benefits`` (each active subscription gets the periodic benefits of every
period that has started). Both walk subscriptions by id in chunks, one transaction per chunk with
the resume cursor checkpointed in it, and are idempotent: running them again changes nothing more.
A run for one brand touches that brand only; a platform run covers every brand. No business rules
here (``service``)."""

from __future__ import annotations

from typing import Any

from huiyuan.jobs.context import JobContext
from huiyuan.jobs.registry import job, schedule
from huiyuan.kit.clock import utcnow
from huiyuan.paid import service
from huiyuan.paid.repository import SubscriptionRepository

CHUNK = 200


@job("paid.expire")
def expire_subscriptions(ctx: JobContext) -> dict[str, Any]:
    """Mark every active subscription whose end has passed as expired."""
    now = utcnow()
    after = int(ctx.state.get("after_id", 0))
    done = int(ctx.state.get("done", 0))
    expired = int(ctx.state.get("expired", 0))
    with ctx.unit_of_work(write=False) as session:
        total = done + SubscriptionRepository(session).count_due_to_expire(now, after_id=after)
    ctx.progress(done, total, "expiring paid subscriptions")
    while True:
        with ctx.unit_of_work() as session:
            ids = SubscriptionRepository(session).due_to_expire_ids(now, after_id=after, limit=CHUNK)
            if not ids:
                break
            for subscription_id in ids:
                expired += service.expire_one(session, actor=ctx.actor, subscription_id=subscription_id)
            after, done = ids[-1], done + len(ids)
            ctx.checkpoint({"after_id": after, "done": done, "expired": expired}, session=session)
        ctx.progress(done, max(total, done), "expiring paid subscriptions")
    return {"checked": done, "expired": expired}


@job("paid.periodic_benefits")
def grant_periodic_benefits(ctx: JobContext) -> dict[str, Any]:
    """Grant each active subscription the periodic benefits of the periods started so far."""
    after = int(ctx.state.get("after_id", 0))
    done = int(ctx.state.get("done", 0))
    periods = int(ctx.state.get("periods", 0))
    with ctx.unit_of_work(write=False) as session:
        total = done + SubscriptionRepository(session).count_active(after_id=after)
    ctx.progress(done, total, "granting periodic benefits")
    while True:
        with ctx.unit_of_work() as session:
            ids = SubscriptionRepository(session).active_ids(after_id=after, limit=CHUNK)
            if not ids:
                break
            for subscription_id in ids:
                periods += service.grant_periodic(session, actor=ctx.actor, subscription_id=subscription_id)
            after, done = ids[-1], done + len(ids)
            ctx.checkpoint({"after_id": after, "done": done, "periods": periods}, session=session)
        ctx.progress(done, max(total, done), "granting periodic benefits")
    return {"checked": done, "periods_granted": periods}


# Lapsed plans end shortly after local midnight; periodic benefits of periods that started are
# granted on the same daily pass.
schedule("paid.expire", daily_at="00:15")
schedule("paid.periodic_benefits", daily_at="00:30")
