"""A per-process memory of which brands take part in no shared programme, so that automatic
programme earning (``program_handlers``) costs no query for the many brands outside every
programme, on each ``order.paid`` event.

Only the negative answer is remembered: a brand with active participations is looked up in full
each time (the handler needs its participations anyway), so nothing stale is ever *earned*. What a
stale entry can do is miss: an entry lives ``TTL_SECONDS`` at most, and every change of
programmes or participations made in this process (``program_admin``) forgets all entries, once
when the change is made and once more after its transaction commits (so a read between the two
cannot keep the old answer). Another process (the worker that dispatches events, when the console
or API runs apart) learns of a brand that joined a programme within ``TTL_SECONDS``; an order paid
at that brand in that window earns no programme points automatically (the brand may grant them
with ``programs.earn``).

Time comes from ``kit.clock`` so tests can move it.
"""

from __future__ import annotations

import threading
from datetime import datetime, timedelta

from sqlalchemy import event
from sqlalchemy.orm import Session

from huiyuan.kit.clock import utcnow

TTL_SECONDS = 30

_lock = threading.Lock()
_outside: dict[int, datetime] = {}  # brand id → when the "in no programme" answer expires


def known_outside(brand_id: int) -> bool:
    """True when this process learned recently that the brand takes part in no active programme."""
    with _lock:
        until = _outside.get(brand_id)
        if until is None:
            return False
        if until <= utcnow():
            del _outside[brand_id]
            return False
        return True


def remember(brand_id: int, *, participates: bool) -> None:
    """Note what a look-up of the brand's active participations found."""
    with _lock:
        if participates:
            _outside.pop(brand_id, None)
        else:
            _outside[brand_id] = utcnow() + timedelta(seconds=TTL_SECONDS)


def forget_all() -> None:
    with _lock:
        _outside.clear()


def forget_on_change(session: Session) -> None:
    """Forget every entry now and again when the session's transaction commits (participations or
    programmes changed in it)."""
    forget_all()
    # Sessions live for one request or job unit, so the listener goes with the session.
    if not event.contains(session, "after_commit", _after_commit):
        event.listen(session, "after_commit", _after_commit)


def _after_commit(session: Session) -> None:
    forget_all()
