"""In-process handlers of domain events: the registry the dispatcher consults.

A domain that reacts to another domain's events (loyalty earning points on ``order.paid``, tags
recomputed on ``member.updated``) registers a handler here instead of being called directly, so
dependencies keep pointing one way::

    from huiyuan.outbox.handlers import on

    @on("order.paid")
    def earn_points_for_order(session: Session, event: OutboxEvent) -> None:
        ...

Contract of a handler ``fn(session, event)``:

* It runs inside the dispatcher's transaction, in a SAVEPOINT of its own event: what it writes
  commits together with the event being marked dispatched, and is rolled back (with every other
  handler's writes for that event) if any handler of the event raises. The event is then retried
  later with backoff, so **handlers must be idempotent**: key their effect on the event (e.g. an
  idempotency key ``f"event:{event.id}"``) so a retry after a partial failure, or a crash before
  commit, never applies it twice.
* The session's scope is narrowed to the event's brand while the handler runs, so it can only see
  and write that brand's rows; act as ``huiyuan.kit.scope.system_for_brand(event.brand_id)``.
* It must not commit, and must not do slow network work (use a job or a webhook for that).

Patterns: an exact type (``"order.paid"``), a prefix wildcard (``"member.*"``) or ``"*"``.
Modules that define handlers are listed in ``HANDLER_MODULES`` and imported before dispatching.
This module must not import domain services (they import it).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy.orm import Session

from huiyuan.outbox.models import OutboxEvent

Handler = Callable[[Session, OutboxEvent], None]

# Modules whose import registers handlers; add a line when a domain starts listening.
HANDLER_MODULES: tuple[str, ...] = (
    "huiyuan.points.earning",
    "huiyuan.points.program_handlers",
    "huiyuan.tiers.handlers",
    "huiyuan.coupons.handlers",
    "huiyuan.identity.handlers",
)


@dataclass(frozen=True)
class Registration:
    pattern: str
    handler: Handler

    @property
    def name(self) -> str:
        return f"{self.handler.__module__}.{getattr(self.handler, '__qualname__', repr(self.handler))}"


_registry: list[Registration] = []
_loaded = False


def matches(pattern: str, event_type: str) -> bool:
    """``"*"`` matches all, ``"member.*"`` every type starting with ``member.``, else exact."""
    if pattern == "*":
        return True
    if pattern.endswith(".*"):
        return event_type.startswith(pattern[:-1])
    return pattern == event_type


def on(pattern: str) -> Callable[[Handler], Handler]:
    """Decorator registering ``fn(session, event)`` for events matching ``pattern``."""

    def register(fn: Handler) -> Handler:
        subscribe(pattern, fn)
        return fn

    return register


def subscribe(pattern: str, fn: Handler) -> None:
    """Register a handler (idempotent: the same function and pattern are kept once)."""
    registration = Registration(pattern, fn)
    if registration not in _registry:
        _registry.append(registration)


def unsubscribe(fn: Handler) -> None:
    """Remove every registration of ``fn`` (tests, plug-ins being unloaded)."""
    _registry[:] = [r for r in _registry if r.handler is not fn]


def load_handler_modules() -> None:
    """Import the modules that register handlers (once per process)."""
    global _loaded
    if _loaded:
        return
    for name in HANDLER_MODULES:
        importlib.import_module(name)
    _loaded = True


BatchHandler = Callable[[Session, list[OutboxEvent]], None]
_preparers: list[tuple[str, BatchHandler]] = []
_lookahead: set[BatchHandler] = set()


def prepare(event_type: str, *, lookahead: bool = False) -> Callable[[BatchHandler], BatchHandler]:
    """Decorator registering ``fn(session, events)``: called once per brand with every due event of
    ``event_type`` in a dispatch batch, before the per-event handlers, to do their work set-based.

    A preparer is an optimisation only: the per-event handlers still run for every event and must
    find the work done (idempotently) or do it themselves; if a preparer raises, its writes are
    rolled back and the per-event handlers do all the work.

    ``lookahead``: the preparer only reads, for the handlers of the same pass (which events they can
    skip); ``run_preparers``, where no handler follows, leaves it out.
    """

    def register(fn: BatchHandler) -> BatchHandler:
        if (event_type, fn) not in _preparers:
            _preparers.append((event_type, fn))
        if lookahead:
            _lookahead.add(fn)
        return fn

    return register


def preparers_for(event_type: str, *, lookahead: bool = True) -> list[BatchHandler]:
    """The preparers of ``event_type`` in registration order (without the lookahead ones when
    ``lookahead`` is false)."""
    return [fn for t, fn in _preparers if t == event_type and (lookahead or fn not in _lookahead)]


def handlers_for(event_type: str) -> list[Registration]:
    """Registrations matching ``event_type``, in registration order."""
    return [r for r in _registry if matches(r.pattern, event_type)]
