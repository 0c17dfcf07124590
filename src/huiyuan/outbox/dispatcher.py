"""The outbox dispatcher: turns committed domain events into handler calls and webhook deliveries.

``dispatch_pending`` takes due, undispatched events in id order inside one writer transaction
(PostgreSQL ``FOR UPDATE SKIP LOCKED`` so concurrent workers never take the same event; SQLite
``BEGIN IMMEDIATE``), runs the batch preparers (``outbox.handlers.prepare``), and for each event:
runs the matching in-process handlers (``outbox.handlers``), creates one ``WebhookDelivery`` per
active subscription of the event's brand whose patterns match, and marks the event dispatched.

The events of a batch are handled together inside one SAVEPOINT. If a handler raises, that
savepoint is rolled back (with what handlers kept in ``session.info`` during it), the events before
the failing one are handled together again, the failing one records the error and waits with
exponential backoff (its handlers are not run again), and the events after it go on the same way:
a failing handler costs only its own event, as if each event had a SAVEPOINT of its own.

Preparers of one event type run in registration order, each in its own SAVEPOINT; once one fails,
the later ones of that group are skipped (they may build on its work) and the per-event handlers do
it all. ``run_preparers`` lets a bulk write run the preparers of the events it just wrote, in its
own transaction. It runs with no scope (system); sending webhooks is ``outbox.webhooks``' job.

A pass (``dispatch_pending`` or ``run_preparers``) keeps what handlers read of a brand's
configuration through ``per_pass`` (the tier ladder, the time zone) for its own length: the points
and tiers preparers of the same ``order.paid`` events read it once, and the next pass reads it anew.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Hashable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, TypeVar

from sqlalchemy.orm import Session

from huiyuan.jobs.context import JobContext
from huiyuan.jobs.registry import job
from huiyuan.kit.clock import utcnow
from huiyuan.kit.db import Database, scope_of, set_scope
from huiyuan.kit.logging import get_logger
from huiyuan.kit.scope import Scope
from huiyuan.outbox.handlers import (
    Registration,
    handlers_for,
    load_handler_modules,
    matches,
    preparers_for,
)
from huiyuan.outbox.models import OutboxEvent, WebhookDelivery, WebhookSubscription
from huiyuan.outbox.repository import OutboxRepository
from huiyuan.settings import get_settings

log = get_logger("huiyuan.outbox")
RETRY_BASE_SECONDS = 5.0
_PASS = "outbox.pass"
T = TypeVar("T")


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
    with db.unit_of_work(None, write=True) as session, _pass(session):
        repo = OutboxRepository(session)
        events = repo.due_events(now, batch)
        stats.taken = len(events)
        _prepare(session, events)
        subscriptions: dict[int, list[WebhookSubscription]] = {}
        _dispatch_all(session, repo, events, now, stats, subscriptions)
    return stats


@contextmanager
def _pass(session: Session) -> Iterator[None]:
    """While events are dispatched, what handlers read of a brand's configuration (its tier
    ladder, its time zone) is read once: handlers do not change it, and the pass is one
    transaction. ``per_pass`` is the way in; outside a pass it just loads."""
    owner = _PASS not in session.info
    if owner:
        session.info[_PASS] = {}
    try:
        yield
    finally:
        if owner:
            session.info.pop(_PASS, None)


def per_pass(session: Session, name: str, key: Hashable, load: Callable[[], T]) -> T:
    """``load()`` once per dispatch pass for ``(name, key)``; outside a pass, every time."""
    cache: dict[tuple[str, Hashable], Any] | None = session.info.get(_PASS)
    if cache is None:
        return load()
    if (name, key) not in cache:
        cache[(name, key)] = load()
    return cache[(name, key)]  # type: ignore[no-any-return]


def run_preparers(session: Session, events: list[OutboxEvent]) -> None:
    """Run the batch preparers of ``events``, written in this transaction and still due (a bulk
    import that wants their effect at once, e.g. points earned). The events stay due; when they are
    dispatched, their handlers find the work done. A failing preparer is rolled back and logged.
    Lookahead preparers (``prepare(..., lookahead=True)``) are left out: no handler follows here."""
    load_handler_modules()
    with _pass(session):
        _prepare(session, events, lookahead=False)


def _prepare(session: Session, events: list[OutboxEvent], *, lookahead: bool = True) -> None:
    groups: dict[tuple[str, int | None], list[OutboxEvent]] = {}
    for event in events:
        if preparers_for(event.type, lookahead=lookahead):
            groups.setdefault((event.type, event.brand_id), []).append(event)
    for (event_type, brand_id), group in groups.items():
        for fn in preparers_for(event_type, lookahead=lookahead):
            try:
                with session.begin_nested():
                    _run_handler(session, lambda s, _e, fn=fn, group=group: fn(s, group), group[0])
            except Exception as exc:  # the per-event handlers will do the work one by one
                log.warning(
                    "outbox preparer failed", event_type=event_type, brand_id=brand_id, error=str(exc)
                )
                break


def _dispatch_all(
    session: Session,
    repo: OutboxRepository,
    events: list[OutboxEvent],
    now: datetime,
    stats: DispatchStats,
    subscriptions: dict[int, list[WebhookSubscription]],
) -> None:
    """Handle the events together; when one fails, the events before it are handled together
    again, the failing one records its error without being run again, and the rest go on."""
    rest = events
    while rest:
        failure = _together(session, repo, rest, now, stats, subscriptions)
        if failure is None:
            return
        at, handler, exc = failure
        if at >= len(rest):  # every handler ran; marking them failed: go event by event
            for event in rest:
                _dispatch_one(session, repo, event, now, stats, subscriptions)
            return
        if at and _together(session, repo, rest[:at], now, stats, subscriptions) is not None:
            for event in rest[:at]:  # failed the second time: a handler is not deterministic
                _dispatch_one(session, repo, event, now, stats, subscriptions)
        _failed(rest[at], handler, exc, now, stats)
        rest = rest[at + 1 :]


def _together(
    session: Session,
    repo: OutboxRepository,
    events: list[OutboxEvent],
    now: datetime,
    stats: DispatchStats,
    subscriptions: dict[int, list[WebhookSubscription]],
) -> tuple[int, str, Exception] | None:
    """Handle ``events`` inside one SAVEPOINT. If a handler raises, everything is rolled back
    (``session.info`` included) and ``(position of the event, handler, error)`` returned."""
    memo = _memo(session)
    attempt = DispatchStats()
    done, current = 0, "dispatcher"
    registered: dict[str, list[Registration]] = {}  # per event type: a batch holds few types
    try:
        with session.begin_nested():
            for event in events:
                if event.type not in registered:
                    registered[event.type] = handlers_for(event.type)
                for registration in registered[event.type]:
                    current = registration.name
                    _run_handler(session, registration.handler, event)
                    attempt.handler_calls += 1
                current = "webhooks"
                attempt.deliveries += _fan_out(session, repo, event, now, subscriptions)
                done += 1
            # One statement for the batch: the events stay clean in the session, so the flush
            # around each handler has nothing of the dispatcher's to write.
            current = "dispatcher"
            repo.mark_dispatched([e.id for e in events], now)
    except Exception as exc:  # a handler's bug must not stop the other events
        _restore(session, memo)
        subscriptions.clear()
        return done, current, exc
    stats.dispatched += len(events)
    stats.handler_calls += attempt.handler_calls
    stats.deliveries += attempt.deliveries
    return None


# Handlers may remember things in ``session.info`` for the rest of a batch (a member already
# evaluated); what they remembered inside a rolled-back SAVEPOINT must be forgotten with it.
_Memo = dict[str, tuple[Any, Any]]


def _memo(session: Session) -> _Memo:
    return {
        key: (value, copy.copy(value) if isinstance(value, set | dict | list) else None)
        for key, value in session.info.items()
    }


def _restore(session: Session, memo: _Memo) -> None:
    for key in [k for k in session.info if k not in memo]:
        del session.info[key]
    for key, (value, saved) in memo.items():
        if isinstance(value, list):
            value[:] = saved
        elif saved is not None:
            value.clear()
            value.update(saved)
        session.info[key] = value


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
        _failed(event, current, exc, now, stats)
        return
    stats.dispatched += 1


def _failed(event: OutboxEvent, handler: str, exc: Exception, now: datetime, stats: DispatchStats) -> None:
    # The event's writes were rolled back with its SAVEPOINT: record the error, retry with backoff.
    event.attempts += 1
    event.last_error = f"{handler}: {type(exc).__name__}: {exc}"[:4000]
    event.next_attempt_at = now + retry_delay(event.attempts)
    stats.failed += 1
    log.warning(
        "outbox handler failed",
        event_id=event.id,
        event_type=event.type,
        handler=handler,
        attempts=event.attempts,
        error=str(exc),
    )


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
