"""Concurrent writers on one points ledger, on both databases: no overdraft, one effect per
idempotency key, no deadlock between opposite transfers or between verbs and the sweeps.

Every writer runs in its own ``unit_of_work`` on its own thread; the threads are released together.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest

from huiyuan.kit.clock import FrozenClock
from huiyuan.kit.db import Database
from huiyuan.kit.errors import IdempotencyMismatch
from huiyuan.points import ledger
from huiyuan.points.ledger import InsufficientPoints, LedgerResult, ReservationClosed
from tests.points.helpers import PointsBrand, check_ledger, frozen_clock, make_points_brand, race


@pytest.fixture
def clock() -> Iterator[FrozenClock]:
    with frozen_clock() as c:
        yield c


@pytest.fixture
def pb(db: Database, clock: FrozenClock) -> PointsBrand:
    return make_points_brand(db, members_count=2)


def _outcomes(results: list[Any]) -> Counter[str]:
    return Counter(type(r).__name__ for r in results)


def _unexpected(results: list[Any], *allowed: type[Exception]) -> list[Any]:
    return [r for r in results if isinstance(r, Exception) and not isinstance(r, allowed)]


def test_concurrent_spends_never_overdraw(pb: PointsBrand) -> None:
    m = pb.members[0]
    pb.earn(m, 10, "e1")

    results = race(100, lambda i: pb.spend(m, 1, f"s{i}"))

    assert not _unexpected(results, InsufficientPoints), results
    assert _outcomes(results) == {"LedgerResult": 10, "InsufficientPoints": 90}
    assert pb.balance(m)["available"] == 0
    assert pb.account(m).spent_total == 10
    assert len(pb.entries(kind="spend")) == 10
    check_ledger(pb.db, pb.brand_id)


def test_concurrent_reserves_never_overdraw(pb: PointsBrand) -> None:
    m = pb.members[0]
    pb.earn(m, 10, "e1")

    def hold(i: int) -> LedgerResult:
        return pb.run(ledger.reserve, member_id=m, point_type="pts", amount=1, key=f"r{i}")

    results = race(100, hold)

    assert not _unexpected(results, InsufficientPoints), results
    assert _outcomes(results) == {"LedgerResult": 10, "InsufficientPoints": 90}
    assert pb.balance(m) == {"available": 0, "pending": 0, "frozen": 0, "reserved": 10, "debt": 0}
    check_ledger(pb.db, pb.brand_id)


def test_concurrent_earns_with_one_key_grant_once(pb: PointsBrand) -> None:
    # The member has no account yet: the racers also race to open it.
    m = pb.members[0]

    results = race(50, lambda i: pb.earn(m, 7, "same-key", source_id="O-1"))

    assert not _unexpected(results), results
    assert all(r.to_json() == results[0].to_json() for r in results)
    assert sorted(r.replayed for r in results) == [False] + [True] * 49
    assert len(pb.lots(m)) == 1
    assert len(pb.entries(kind="earn")) == 1
    assert pb.balance(m)["available"] == 7
    check_ledger(pb.db, pb.brand_id)


def test_one_key_raced_by_different_requests_lands_once(pb: PointsBrand) -> None:
    # Different members, so different accounts: only the idempotency key itself orders the racers.
    a, b = pb.members

    results = race(20, lambda i: pb.earn(a if i % 2 else b, 5, "shared-key"))

    assert not _unexpected(results, IdempotencyMismatch), results
    winners = [r for r in results if isinstance(r, LedgerResult) and not r.replayed]
    assert len(winners) == 1
    winner = winners[0].member_id
    for i, r in enumerate(results):
        same_request = (a if i % 2 else b) == winner
        assert isinstance(r, LedgerResult) if same_request else isinstance(r, IdempotencyMismatch), (i, r)
    assert len(pb.entries(kind="earn")) == 1
    check_ledger(pb.db, pb.brand_id)


def test_opposite_transfers_do_not_deadlock_and_keep_totals(pb: PointsBrand) -> None:
    a, b = pb.members
    pb.earn(a, 100, "ea")
    pb.earn(b, 100, "eb")

    def move(i: int) -> LedgerResult:
        src, dst = (a, b) if i % 2 else (b, a)
        return pb.run(
            ledger.transfer,
            from_member_id=src,
            to_member_id=dst,
            point_type="pts",
            amount=1 + i % 3,
            key=f"t{i}",
        )

    results = race(40, move)

    assert not _unexpected(results), results
    sent = Counter()
    for i, _r in enumerate(results):
        sent[a if i % 2 else b] += 1 + i % 3
    assert pb.balance(a)["available"] == 100 - sent[a] + sent[b]
    assert pb.balance(b)["available"] == 100 - sent[b] + sent[a]
    check_ledger(pb.db, pb.brand_id)


def test_transfers_racing_the_sweeps_do_not_deadlock(pb: PointsBrand, clock: FrozenClock) -> None:
    # Account ids in the opposite order of member ids, so "by member" and "by account" orders differ.
    a, b = pb.members
    pb.earn(b, 100, "eb")
    pb.earn(a, 100, "ea")
    assert pb.account(a).id > pb.account(b).id
    # Due work in both accounts for every sweep: pending lots to activate, lots to expire.
    for n in range(3):
        for m in (b, a):
            pb.earn(m, 5, f"p{m}-{n}", pending_days=1)
            pb.earn(m, 5, f"x{m}-{n}", earned_at=clock.now().replace(year=2025))
            pb.run(ledger.reserve, member_id=m, point_type="pts", amount=1, key=f"r{m}-{n}", ttl_minutes=1)
    clock.advance(days=1)
    now = clock.now()

    def work(i: int) -> Any:
        if i == 0:
            return pb.run(ledger.expire_due, now=now)
        if i == 1:
            return pb.run(ledger.activate_due, now=now)
        if i == 2:
            return pb.run(ledger.release_due_reservations, now=now)
        src, dst = (a, b) if i % 2 else (b, a)
        return pb.run(
            ledger.transfer, from_member_id=src, to_member_id=dst, point_type="pts", amount=1, key=f"t{i}"
        )

    results = race(12, work)

    assert not _unexpected(results), results
    for m in (a, b):
        assert pb.balance(m)["pending"] == 0
        assert pb.balance(m)["reserved"] == 0
    total = sum(pb.balance(m)["available"] for m in (a, b))
    assert total == 200 + 2 * 3 * 5
    check_ledger(pb.db, pb.brand_id)


def test_concurrent_confirms_of_one_reservation_confirm_once(pb: PointsBrand) -> None:
    m = pb.members[0]
    pb.earn(m, 50, "e1")
    pb.run(ledger.reserve, member_id=m, point_type="pts", amount=20, key="r1")

    results = race(50, lambda i: pb.run(ledger.confirm, reservation_key="r1"))

    assert not _unexpected(results), results
    assert all(r.to_json() == results[0].to_json() for r in results)
    assert sorted(r.replayed for r in results) == [False] + [True] * 49
    assert len(pb.entries(kind="confirm")) == 1
    assert pb.balance(m) == {"available": 30, "pending": 0, "frozen": 0, "reserved": 0, "debt": 0}
    assert pb.account(m).spent_total == 20
    check_ledger(pb.db, pb.brand_id)


def test_racing_confirms_and_releases_settle_a_reservation_once(pb: PointsBrand) -> None:
    m = pb.members[0]
    pb.earn(m, 50, "e1")
    pb.run(ledger.reserve, member_id=m, point_type="pts", amount=20, key="r1")

    results = race(20, lambda i: pb.run(ledger.confirm if i % 2 else ledger.release, reservation_key="r1"))

    assert not _unexpected(results, ReservationClosed), results
    settled = [r for r in results if isinstance(r, LedgerResult)]
    assert len({r.kind for r in settled}) == 1
    assert [r.replayed for r in settled].count(False) == 1
    assert len(pb.entries(kind="confirm")) + len(pb.entries(kind="release")) == 1
    check_ledger(pb.db, pb.brand_id)
