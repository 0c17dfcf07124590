"""The outbox dispatcher: turns committed domain events into handler calls and webhook deliveries.

``dispatch_pending`` takes due, undispatched events in id order inside one writer transaction
(PostgreSQL ``FOR UPDATE SKIP LOCKED`` so concurrent workers never take the same event; SQLite
``BEGIN IMMEDIATE``), and for each event, inside a SAVEPOINT: runs the matching in-process
handlers (``outbox.handlers``), creates one ``WebhookDelivery`` per active subscription of the
event's brand whose patterns match, and marks the event dispatched. A failing handler rolls back
only its event's savepoint: the event records the error and waits with exponential backoff while
later events go on. It runs with no scope (system); sending webhooks is ``outbox.webhooks``' job.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.orm import Session

from huiyuan.jobs.context import JobContext
from huiyuan.jobs.registry import job
from huiyuan.kit.clock import utcnow
from huiyuan.kit.db import Database, scope_of, set_scope
from huiyuan.kit.logging import get_logger
from huiyuan.kit.scope import Scope
from huiyuan.outbox.handlers import handlers_for, load_handler_modules, matches, preparers_for
from huiyuan.outbox.models import OutboxEvent, WebhookDelivery, WebhookSubscription
from huiyuan.outbox.repository import OutboxRepository
from huiyuan.settings import get_settings

log = get_logger("huiyuan.outbox")
RETRY_BASE_SECONDS = 5.0


@dataclass
class DispatchStats:
    taken: int = 0
    dispatched: int = 0
    failed: int = 0
    handler_calls: int = 0
    deliveries: int = 0

    def add(self, other: DispatchStats) -> None:
        self.taken += other.taken
        self.dispatched += other.dispatched
        self.failed += other.failed
        self.handler_calls += other.handler_calls
        self.deliveries += other.deliveries


def retry_delay(attempts: int) -> timedelta:
    """Exponential backoff for a failing event: 5 s, 10 s, 20 s … up to the configured cap."""
    cap = get_settings().outbox_retry_cap_seconds
    return timedelta(seconds=min(cap, RETRY_BASE_SECONDS * 2 ** max(0, attempts - 1)))


def dispatch_pending(db: Database, *, batch: int = 200, now: datetime | None = None) -> DispatchStats:
    """Dispatch up to ``batch`` due events; returns what happened. Safe to call concurrently."""
    load_handler_modules()
    now = now or utcnow()
    stats = DispatchStats()
    with db.unit_of_work(None, write=True) as session:
        repo = OutboxRepository(session)
        events = repo.due_events(now, batch)
        stats.taken = len(events)
        _prepare(session, events)
        subscriptions: dict[int, list[WebhookSubscription]] = {}
        for event in events:
            _dispatch_one(session, repo, event, now, stats, subscriptions)
    return stats


def _prepare(session: Session, events: list[OutboxEvent]) -> None:
    groups: dict[tuple[str, int | None], list[OutboxEvent]] = {}
    for event in events:
        if preparers_for(event.type):
            groups.setdefault((event.type, event.brand_id), []).append(event)
    for (event_type, brand_id), group in groups.items():
        for fn in preparers_for(event_type):
            try:
                with session.begin_nested():
                    _run_handler(session, lambda s, _e, fn=fn, group=group: fn(s, group), group[0])
            except Exception as exc:  # the per-event handlers will do the work one by one
                log.warning(
                    "outbox preparer failed", event_type=event_type, brand_id=brand_id, error=str(exc)
                )


def _dispatch_one(
    session: Session,
    repo: OutboxRepository,
    event: OutboxEvent,
    now: datetime,
    stats: DispatchStats,
    subscriptions: dict[int, list[WebhookSubscription]],
) -> None:
    current = "dispatcher"
    try:
        with session.begin_nested():
            for registration in handlers_for(event.type):
                current = registration.name
                _run_handler(session, registration.handler, event)
                stats.handler_calls += 1
            current = "webhooks"
            stats.deliveries += _fan_out(session, repo, event, now, subscriptions)
            event.dispatched_at = now
            event.next_attempt_at = None
            event.last_error = None
    except Exception as exc:  # a handler's bug must not stop the other events
        event.attempts += 1
        event.last_error = f"{current}: {type(exc).__name__}: {exc}"[:4000]
        event.next_attempt_at = now + retry_delay(event.attempts)
        stats.failed += 1
        log.warning(
            "outbox handler failed",
            event_id=event.id,
            event_type=event.type,
            handler=current,
            attempts=event.attempts,
            error=str(exc),
        )
        return
    stats.dispatched += 1


def _run_handler(session: Session, handler: Any, event: OutboxEvent) -> None:
    # The handler sees only the event's brand: its queries are filtered and its writes guarded.
    previous = scope_of(session)
    session.flush()
    set_scope(session, Scope(brand_id=event.brand_id) if event.brand_id is not None else None)
    try:
        handler(session, event)
        session.flush()
    finally:
        set_scope(session, previous)


def _fan_out(
    session: Session,
    repo: OutboxRepository,
    event: OutboxEvent,
    now: datetime,
    cache: dict[int, list[WebhookSubscription]],
) -> int:
    if event.brand_id is None:  # platform events have no brand subscribers
        return 0
    if event.brand_id not in cache:
        cache[event.brand_id] = repo.active_subscriptions(event.brand_id)
    created = 0
    for sub in cache[event.brand_id]:
        if not any(matches(p, event.type) for p in sub.event_types):
            continue
        if repo.delivery_for(sub.id, event.id) is not None:
            continue
        session.add(
            WebhookDelivery(
                brand_id=event.brand_id,
                subscription_id=sub.id,
                event_id=event.id,
                status="pending",
                next_attempt_at=now,
            )
        )
        created += 1
    return created


def drain(db: Database, *, batch: int = 200, max_batches: int | None = None) -> DispatchStats:
    """Dispatch until nothing due is left (or ``max_batches`` ran)."""
    total = DispatchStats()
    runs = 0
    while max_batches is None or runs < max_batches:
        stats = dispatch_pending(db, batch=batch)
        total.add(stats)
        runs += 1
        if stats.taken < batch:
            break
    return total


@job("outbox.drain")
def drain_job(ctx: JobContext) -> dict[str, Any]:
    """Job: dispatch every pending event in chunks, reporting progress (manual catch-up)."""
    batch = int(ctx.params.get("batch", 200))
    with ctx.db.unit_of_work(None, write=False) as session:
        pending = OutboxRepository(session).pending_count()
    total = DispatchStats()
    ctx.progress(0, pending, "dispatching")
    while True:
        stats = dispatch_pending(ctx.db, batch=batch)
        total.add(stats)
        ctx.progress(total.dispatched + total.failed, max(pending, total.taken), "dispatching")
        if stats.taken < batch:
            break
    return {"dispatched": total.dispatched, "failed": total.failed, "deliveries": total.deliveries}
