"""The ``points.expire`` job over the set-based expiry (``sweeps.expire_due_bulk``), on both databases:
a stopped run resumes from its checkpoint and expires nothing twice, a chunk costs the same number
of statements whatever its size, a spend that commits between the chunk's first read and its account
locks is seen, and spends racing the expiry leave the ledger whole."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import pytest
from sqlalchemy import event, select

from huiyuan.jobs.context import JobContext
from huiyuan.jobs.registry import get_job
from huiyuan.kit.clock import FrozenClock
from huiyuan.kit.db import Database
from huiyuan.points import sweeps
from huiyuan.points.ledger import InsufficientPoints
from huiyuan.points.models import PointEntry, PointEntryLot, PointLot
from tests.points.helpers import PointsBrand, check_ledger, frozen_clock, make_points_brand, race


class _Stop(Exception):
    pass


@pytest.fixture
def clock() -> Iterator[FrozenClock]:
    with frozen_clock() as c:
        yield c


@pytest.fixture
def pb(db: Database, clock: FrozenClock) -> PointsBrand:
    return make_points_brand(db, members_count=3)


def _due_lots(pb: PointsBrand, clock: FrozenClock, per_member: int, keep: int = 0) -> datetime:
    """``per_member`` lots of 5 points per member, all due at the time returned, and ``keep`` points
    per member still good then. No verb touches the accounts once the first lots are due, so none
    of them was expired on the way (a verb expires the due lots of the accounts it touches)."""
    for n in range(per_member):
        for m in pb.members:
            pb.earn(m, 5, f"x{m}-{n}")
    clock.advance(days=25)
    for m in pb.members:
        if keep:
            pb.earn(m, keep, f"keep{m}")
    clock.advance(days=6)  # lots expire at the end of the local day 30 days after they were earned
    return clock.now()


def _context(pb: PointsBrand, now: datetime, state: dict[str, Any], **params: Any) -> JobContext:
    return JobContext(
        db=pb.db,
        run_id=0,
        kind="points.expire",
        brand_id=pb.brand_id,
        params={"at": now.isoformat(), **params},
        actor=pb.actor,
        state=dict(state),
    )


def _expire_moves(pb: PointsBrand) -> Counter[int]:
    """How many ``expire`` lot moves each lot has."""
    with pb.db.unit_of_work(pb.actor.scope, write=False) as s:
        return Counter(
            s.scalars(
                select(PointEntryLot.lot_id)
                .join(PointEntry, PointEntry.id == PointEntryLot.entry_id)
                .where(PointEntry.kind == "expire")
            )
        )


def test_a_stopped_run_resumes_from_its_checkpoint(pb: PointsBrand, clock: FrozenClock) -> None:
    now = _due_lots(pb, clock, per_member=3)
    job = get_job("points.expire")
    assert job is not None
    first = _context(pb, now, {}, chunk=4)
    calls = 0

    def stop_after_one_chunk(*_args: Any, **_kw: Any) -> None:
        nonlocal calls
        calls += 1
        if calls == 2:  # the first call announces the total, the second follows chunk one
            raise _Stop

    first.progress = stop_after_one_chunk  # type: ignore[method-assign]
    with pytest.raises(_Stop):
        job(first)
    assert first.state["lots"] == 4 and first.state["points"] == 20
    assert sum(_expire_moves(pb).values()) == 4

    resumed = _context(pb, now, first.state, chunk=4)
    resumed.progress = lambda *args, **kw: None  # type: ignore[method-assign]
    assert job(resumed) == {"lots": 9, "points": 45, "at": now.isoformat()}

    moves = _expire_moves(pb)
    assert len(moves) == 9 and set(moves.values()) == {1}  # every lot once, none twice
    for m in pb.members:
        assert pb.balance(m)["available"] == 0
        assert pb.account(m).expired_total == 15
    again = _context(pb, now, {}, chunk=4)
    again.progress = lambda *args, **kw: None  # type: ignore[method-assign]
    assert job(again) == {"lots": 0, "points": 0, "at": now.isoformat()}
    check_ledger(pb.db, pb.brand_id)


def _statements(pb: PointsBrand, now: datetime, limit: int) -> tuple[int, int]:
    """(lots expired, statements sent) of one chunk of ``limit`` lots."""
    sent = 0

    def count(*_args: Any) -> None:
        nonlocal sent
        sent += 1

    event.listen(pb.db.engine, "before_cursor_execute", count)
    try:
        with pb.db.unit_of_work(pb.actor.scope) as s:
            lots, _points, _last = sweeps.expire_due_bulk(s, actor=pb.actor, now=now, limit=limit)
    finally:
        event.remove(pb.db.engine, "before_cursor_execute", count)
    return lots, sent


def test_a_chunk_costs_the_same_statements_whatever_its_size(pb: PointsBrand, clock: FrozenClock) -> None:
    now = _due_lots(pb, clock, per_member=8)
    small = _statements(pb, now, limit=2)
    large = _statements(pb, now, limit=20)
    assert (small[0], large[0]) == (2, 20)
    assert small[1] == large[1] <= 18
    check_ledger(pb.db, pb.brand_id)


def test_spends_racing_the_expiry_leave_the_ledger_whole(pb: PointsBrand, clock: FrozenClock) -> None:
    members = pb.members
    now = _due_lots(pb, clock, per_member=4, keep=30)

    def work(i: int) -> Any:
        if i % 4 == 0:
            with pb.db.unit_of_work(pb.actor.scope) as s:
                return sweeps.expire_due_bulk(s, actor=pb.actor, now=now, limit=5)
        return pb.spend(members[i % len(members)], 3, f"s{i}")

    results = race(16, work)

    assert not [r for r in results if isinstance(r, Exception) and not isinstance(r, InsufficientPoints)]
    with pb.db.unit_of_work(pb.actor.scope) as s:  # what the racing chunks left
        while sweeps.expire_due_bulk(s, actor=pb.actor, now=now, limit=50)[0]:
            pass
    with pb.db.unit_of_work(pb.actor.scope, write=False) as s:
        states = set(s.scalars(select(PointLot.state).where(PointLot.expires_at <= now)))
    assert states == {"expired"}
    assert set(_expire_moves(pb).values()) == {1}
    for m in members:
        account = pb.account(m)
        assert account.available + account.spent_total + account.expired_total == 30 + 4 * 5
    check_ledger(pb.db, pb.brand_id)


def test_a_spend_between_the_first_read_and_the_locks_is_seen(pb: PointsBrand, clock: FrozenClock) -> None:
    if pb.db.is_sqlite:
        pytest.skip("on SQLite the chunk is read under the database's only write lock")
    now = _due_lots(pb, clock, per_member=2, keep=10)
    m = pb.members[0]
    spent: list[Any] = []

    def spend_before_the_locks(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        # The spend expires the member's due lots first (a verb does so for the accounts it touches).
        if "FOR UPDATE" in statement and not spent:
            spent.append(None)
            worker = threading.Thread(target=lambda: spent.append(pb.spend(m, 3, "between")))
            worker.start()
            worker.join()

    event.listen(pb.db.engine, "before_cursor_execute", spend_before_the_locks)
    try:
        with pb.db.unit_of_work(pb.actor.scope) as s:
            lots, points, _last = sweeps.expire_due_bulk(s, actor=pb.actor, now=now, limit=100)
    finally:
        event.remove(pb.db.engine, "before_cursor_execute", spend_before_the_locks)
    assert spent[1] is not None and (lots, points) == (6, 20)  # m's two lots went with the spend
    moves = _expire_moves(pb)
    assert len(moves) == 6 and set(moves.values()) == {1}
    assert pb.balance(m)["available"] == 7
    check_ledger(pb.db, pb.brand_id)
