"""The worker: a Huey consumer (threads) for jobs plus the outbox loop, in one handle.

``start_in_process_worker(db, settings)`` is what ``huiyuan serve`` runs in its lifespan and what
``huiyuan worker`` runs in the foreground: (a) Huey's consumer with thread workers (its signal
handlers are left out, they belong to the host process), and (b) a thread that calls
``dispatch_pending`` then ``deliver_due`` every ``outbox_poll_seconds`` (again at once while there
is a backlog). ``stop()`` stops both and waits for them. With the ``memory`` backend jobs run
inline when enqueued, so no consumer is started. Must not hold business logic.

A dispatch pass is one writer transaction: on SQLite every request that writes waits for it, and in
this process its handlers share the CPU with the requests. While events keep arriving (requests are
writing now), the outbox loop keeps out of their way: for the first ``BUSY_DEFER_SECONDS`` of such
a burst it dispatches nothing; after that a pass takes only as many events as fit in about
``BUSY_PASS_SECONDS`` (sized from the cost per event of the passes before), and after a pass the
loop pauses so that it takes about ``BUSY_SHARE`` of the time. Once events stop arriving it drains
the backlog in full batches, back to back (a pass's fixed cost is then paid once per
``DISPATCH_BATCH`` events). Events are durable in the outbox either way; only the moment their
effects (points, tiers) land moves. Webhook deliveries are claimed only when one is due.
"""

from __future__ import annotations

import gc
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import httpx
from huey.consumer import Consumer
from sqlalchemy import select

from huiyuan import __version__
from huiyuan.jobs import queue as job_queue
from huiyuan.jobs.registry import load_job_modules
from huiyuan.jobs.repository import JobRepository
from huiyuan.jobs.schedule import enqueue_due
from huiyuan.kit.clock import utcnow
from huiyuan.kit.db import Database
from huiyuan.kit.logging import get_logger
from huiyuan.outbox.dispatcher import dispatch_pending
from huiyuan.outbox.models import OutboxEvent
from huiyuan.outbox.repository import OutboxRepository
from huiyuan.outbox.webhooks import DeliveryStats, deliver_due
from huiyuan.settings import Settings

log = get_logger("huiyuan.worker")
DISPATCH_BATCH = 200
DELIVERY_BATCH = 100
# While writers are active (the newest event is younger than ARRIVING_SECONDS): one pass holds the
# writer lock about BUSY_PASS_SECONDS (at least BUSY_MIN_BATCH events, so the set-based preparers
# still pay off), and the loop takes about BUSY_SHARE of the time.
ARRIVING_SECONDS = 1.0
BUSY_PASS_SECONDS = 0.1
BUSY_MIN_BATCH = 10
BUSY_SHARE = 0.5
# ... but only once they have been active for BUSY_DEFER_SECONDS: until then the events of a burst
# wait for the lull after it (measured with 16 clients posting orders for 20 s, see
# docs/performance.md: paced passes from the start held the lock ~0.1 s at a time, p99 250-630 ms).
BUSY_DEFER_SECONDS = 30.0


_heap_frozen = threading.Event()


def freeze_heap_once() -> bool:
    """Move every object alive now out of the collector's reach (``gc.freeze``), once per process;
    True when this call did it.

    Called after the outbox loop's first pass that handled events: by then the handlers' modules
    are imported and their caches (rules, ladders, compiled statements) built, ~170,000 objects
    that every full collection would otherwise walk again. Measured draining 10,000 bulk-imported
    orders through a worker: full collections 1.5–1.7 s → 0.65 s of the run, 673 / 770 → 721 / 853
    orders/s (docs/performance.md). Garbage is collected first, so nothing dead is kept."""
    if _heap_frozen.is_set():
        return False
    _heap_frozen.set()
    gc.collect()
    gc.freeze()
    return True


class _EmbeddedConsumer(Consumer):  # type: ignore[misc]
    """Huey's consumer without its signal handlers (only a main program may own SIGINT/SIGTERM)."""

    def _set_signal_handlers(self) -> None:
        return None


@dataclass
class WorkerCounters:
    loops: int = 0
    dispatched: int = 0
    handler_failures: int = 0
    delivered: int = 0
    retrying: int = 0
    dead: int = 0
    errors: int = 0
    last_error: str | None = None
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)


class WorkerHandle:
    """A running worker; ``stop()`` stops the consumer and the outbox loop and waits for them."""

    def __init__(self, db: Database, settings: Settings, *, outbox: bool = True) -> None:
        self.db = db
        self.settings = settings
        self.queue = job_queue.get_queue(settings)
        self.counters = WorkerCounters()
        self._stop = threading.Event()
        self._outbox_enabled = outbox
        self._thread: threading.Thread | None = None
        self._consumer: _EmbeddedConsumer | None = None
        self._seconds_per_event = 0.005  # learnt from the passes (moving average)
        self._last_pass_seconds = 0.0
        self._busy_since: float | None = None
        self._own_newest_id = 0  # the newest event when this loop's last pass ended

    # -- lifecycle ---------------------------------------------------------------------------------

    def start(self) -> WorkerHandle:
        load_job_modules()
        job_queue.bind_database(self.db)
        if not self.queue.immediate:
            self._consumer = _EmbeddedConsumer(
                self.queue.huey,
                workers=max(1, self.settings.jobs_workers),
                worker_type="thread",
                periodic=True,
                initial_delay=0.1,
                max_delay=1.0,
                check_worker_health=False,
                shutdown_timeout=30,
            )
            self._consumer.start()
        self._resend_queued()
        if self._outbox_enabled:
            self._thread = threading.Thread(target=self._outbox_loop, name="huiyuan-outbox", daemon=True)
            self._thread.start()
        log.info("worker started", backend=type(self.queue.huey).__name__, outbox=self._outbox_enabled)
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=self.settings.webhook_timeout_seconds + 30)
            self._thread = None
        if self._consumer is not None:
            self._consumer.stop(graceful=True)
            self._consumer = None
        if job_queue.bound_database() is self.db:
            job_queue.bind_database(None)
        log.info("worker stopped")

    @property
    def running(self) -> bool:
        return not self._stop.is_set()

    def _resend_queued(self) -> None:
        # Runs whose message was lost (queue down at commit, memory queue of a dead process) start
        # again; a duplicate message is harmless because a run only starts from "queued".
        with self.db.unit_of_work(None, write=False) as session:
            waiting = [
                r.id
                for r in JobRepository(session).list(status="queued", kind=None, before_id=None, limit=500)
            ]
        for run_id in reversed(waiting):
            try:
                self.queue.send(run_id)
            except Exception:
                log.exception("could not re-send a queued job run", run_id=run_id)

    # -- the outbox loop ---------------------------------------------------------------------------

    def writers_active(self) -> bool:
        """Whether events are arriving now: the newest is younger than ``ARRIVING_SECONDS`` and was not
        written by this loop's own last pass (handlers emit events too: ``points.earned`` …; taken for
        arrivals, they kept the loop pacing itself, and then deferring, long after a burst ended)."""
        newest = self._newest_event()
        if newest is None or newest[0] <= self._own_newest_id:
            return False
        return (utcnow() - newest[1]).total_seconds() < ARRIVING_SECONDS

    def _newest_event(self) -> tuple[int, datetime] | None:
        with self.db.unit_of_work(None, write=False) as session:
            row = session.execute(
                select(OutboxEvent.id, OutboxEvent.occurred_at).order_by(OutboxEvent.id.desc()).limit(1)
            ).first()
        return None if row is None else (row[0], row[1])

    def deliveries_due(self) -> bool:
        """Whether a webhook delivery is due: read first, so that a pass with nothing to send does not
        queue for the writer lock (``deliver_due`` claims its deliveries in a writer transaction)."""
        with self.db.unit_of_work(None, write=False) as session:
            return bool(OutboxRepository(session).due_deliveries(utcnow(), 1))

    def defer(self, *, busy: bool) -> bool:
        """Whether to leave the events for later: writers are active and have been for less than
        ``BUSY_DEFER_SECONDS`` (a burst of orders is not slowed by earning; its events are dispatched
        in full batches once it ends, or paced once it has lasted that long)."""
        if not busy:
            self._busy_since = None
            return False
        now = time.monotonic()
        if self._busy_since is None:
            self._busy_since = now
        return now - self._busy_since < BUSY_DEFER_SECONDS

    def dispatch_batch(self, *, busy: bool) -> int:
        """Events for the next pass: all of ``DISPATCH_BATCH`` when idle, else what fits in about
        ``BUSY_PASS_SECONDS``."""
        if not busy:
            return DISPATCH_BATCH
        fits = int(BUSY_PASS_SECONDS / max(self._seconds_per_event, 1e-4))
        return max(BUSY_MIN_BATCH, min(DISPATCH_BATCH, fits))

    def run_outbox_once(self, client: httpx.Client | None = None, *, busy: bool = False) -> bool:
        """One dispatch + delivery pass; True when a full batch suggests more work is waiting."""
        batch = self.dispatch_batch(busy=busy)
        started = time.perf_counter()
        dispatched = dispatch_pending(self.db, batch=batch)
        self._last_pass_seconds = time.perf_counter() - started
        if dispatched.taken:
            # Events up to the newest now are this pass's own (on SQLite no other writer ran meanwhile).
            newest = self._newest_event()
            self._own_newest_id = newest[0] if newest is not None else 0
        if dispatched.taken:
            per_event = self._last_pass_seconds / dispatched.taken
            self._seconds_per_event = 0.5 * self._seconds_per_event + 0.5 * per_event
            freeze_heap_once()
        delivered = (
            deliver_due(self.db, client=client, limit=DELIVERY_BATCH)
            if self.deliveries_due()
            else DeliveryStats()
        )
        c = self.counters
        with c.lock:
            c.loops += 1
            c.dispatched += dispatched.dispatched
            c.handler_failures += dispatched.failed
            c.delivered += delivered.delivered
            c.retrying += delivered.retrying
            c.dead += delivered.dead
        return dispatched.taken >= batch or delivered.attempted >= DELIVERY_BATCH

    def _outbox_loop(self) -> None:
        with httpx.Client(
            timeout=self.settings.webhook_timeout_seconds,
            follow_redirects=False,
            headers={"User-Agent": f"huiyuan-webhooks/{__version__}"},
        ) as client:
            next_schedule = 0.0
            while not self._stop.is_set():
                backlog = False
                if self.settings.run_schedules and time.monotonic() >= next_schedule:
                    next_schedule = time.monotonic() + self.settings.schedule_poll_seconds
                    try:
                        enqueue_due(self.db)
                    except Exception:  # the next tick tries again
                        log.exception("enqueueing scheduled jobs failed")
                busy = False
                try:
                    busy = self.writers_active()
                    if not self.defer(busy=busy):
                        backlog = self.run_outbox_once(client, busy=busy)
                except Exception as exc:  # keep polling: the database may come back
                    with self.counters.lock:
                        self.counters.errors += 1
                        self.counters.last_error = f"{type(exc).__name__}: {exc}"[:300]
                    log.exception("outbox pass failed")
                if not backlog:
                    self._stop.wait(self.settings.outbox_poll_seconds)
                elif busy:
                    # Writers are waiting their turn: leave them the lock (and the CPU) a while.
                    pause = self._last_pass_seconds * (1 - BUSY_SHARE) / BUSY_SHARE
                    self._stop.wait(min(pause, self.settings.outbox_poll_seconds))

    # -- status ------------------------------------------------------------------------------------

    def snapshot(self) -> dict[str, Any]:
        """Counts for status lines: this process's outbox work, plus what the database holds."""
        with self.db.unit_of_work(None, write=False) as session:
            jobs = JobRepository(session).status_counts()
            outbox = OutboxRepository(session)
            pending_events = outbox.pending_count()
            deliveries = outbox.delivery_counts()
        c = self.counters
        with c.lock:
            mine = {
                "dispatched": c.dispatched,
                "handler_failures": c.handler_failures,
                "delivered": c.delivered,
                "retrying": c.retrying,
                "dead": c.dead,
                "errors": c.errors,
                "last_error": c.last_error,
            }
        return {
            "worker": mine,
            "jobs": jobs,
            "pending_events": pending_events,
            "deliveries": deliveries,
            "queue": job_queue.describe(self.queue),
        }


def start_in_process_worker(db: Database, settings: Settings) -> WorkerHandle:
    """Start the job consumer and the outbox loop in threads of this process."""
    return WorkerHandle(db, settings).start()
