"""Concurrent writers on one wallet, on both databases: no overdraft, one effect per idempotency
key, no deadlock between payments, re-binds, refunds and the ledger's sweeps.

Every writer runs in its own ``unit_of_work`` on its own thread; the threads are released together
(``tests.points.helpers.race``).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest

from huiyuan.kit.clock import FrozenClock
from huiyuan.kit.db import Database
from huiyuan.kit.errors import IdempotencyMismatch, NotFound
from huiyuan.members import service as members
from huiyuan.members.schemas import MemberEnroll
from huiyuan.points import ledger
from huiyuan.points.ledger import ReservationClosed
from huiyuan.wallet import accounts
from huiyuan.wallet.core import InsufficientBalance, WalletResult
from huiyuan.wallet.schemas import RebindIn, VerificationIn
from tests.points.helpers import frozen_clock, race
from tests.wallet.helpers import WalletWorld, check_wallet, make_wallet_world


@pytest.fixture
def clock() -> Iterator[FrozenClock]:
    with frozen_clock() as c:
        yield c


@pytest.fixture
def w(db: Database, clock: FrozenClock) -> WalletWorld:
    return make_wallet_world(db, stores_count=1)


def _outcomes(results: list[Any]) -> Counter[str]:
    return Counter(type(r).__name__ for r in results)


def _unexpected(results: list[Any], *allowed: type[Exception]) -> list[Any]:
    return [r for r in results if isinstance(r, Exception) and not isinstance(r, allowed)]


def test_thirty_payments_of_ten_against_a_hundred(w: WalletWorld) -> None:
    m = w.members[0]
    w.add_rule("r", bonus_kind="fixed", bonus_fixed=Decimal("20"), min_amount=Decimal("80"))
    w.top_up(m, "80.00", "t1")  # 80 principal + 20 bonus: payments draw both sub-ledgers

    results = race(30, lambda i: w.pay(m, "10.00", f"p{i}", store=w.stores[0]))

    assert not _unexpected(results, InsufficientBalance), results
    assert _outcomes(results) == {"WalletResult": 10, "InsufficientBalance": 20}
    assert w.yuan(m) == ("0.00", "0.00", "0.00")
    paid = [r.data for r in results if isinstance(r, WalletResult)]
    assert sum(Decimal(p["principal_amount"]) for p in paid) == Decimal("80.00")
    assert sum(Decimal(p["bonus_amount"]) for p in paid) == Decimal("20.00")
    check_wallet(w.db, w.brand_id)


def test_concurrent_holds_never_overdraw_and_settle_once(w: WalletWorld) -> None:
    m = w.members[0]
    w.top_up(m, "100.00", "t1")

    results = race(30, lambda i: w.pay(m, "10.00", f"h{i}", hold=True))

    assert _outcomes(results) == {"WalletResult": 10, "InsufficientBalance": 20}, results
    held = [r.data["key"] for r in results if isinstance(r, WalletResult)]
    assert w.yuan(m) == ("0.00", "0.00", "100.00")

    # Racing confirms and releases of each hold: exactly one of them wins per hold.
    outcomes = race(20, lambda i: (w.confirm if i % 2 else w.release)(held[i % 10]))
    assert not _unexpected(outcomes, ReservationClosed), outcomes
    settled = [r for r in outcomes if isinstance(r, WalletResult) and not r.replayed]
    assert len(settled) == 10
    states = Counter(r.data["state"] for r in settled)
    confirmed = states["confirmed"]
    assert w.yuan(m) == (f"{100 - 10 * confirmed}.00", "0.00", "0.00")
    check_wallet(w.db, w.brand_id)


def test_thirty_top_ups_with_one_key_land_once(w: WalletWorld) -> None:
    # The member has no wallet yet: the racers also race to open it.
    m = w.members[0]
    w.add_rule("r", bonus_kind="percent", bonus_percent=Decimal("10"))

    results = race(30, lambda i: w.top_up(m, "50.00", "same-key"))

    assert not _unexpected(results), results
    assert all(r.data == results[0].data for r in results)
    assert sorted(r.replayed for r in results) == [False] + [True] * 29
    assert w.yuan(m) == ("50.00", "5.00", "0.00")
    check_wallet(w.db, w.brand_id)


def test_one_key_raced_by_two_members_lands_once(w: WalletWorld) -> None:
    # Different wallets, so different account locks: only the key itself orders the racers.
    a, b = w.members

    results = race(20, lambda i: w.top_up(a if i % 2 else b, "5.00", "shared-key"))

    assert not _unexpected(results, IdempotencyMismatch), results
    winners = [r for r in results if isinstance(r, WalletResult) and not r.replayed]
    assert len(winners) == 1
    winner = winners[0].data["member_id"]
    for i, r in enumerate(results):
        same_request = (a if i % 2 else b) == winner
        assert isinstance(r, WalletResult) if same_request else isinstance(r, IdempotencyMismatch), (i, r)
    check_wallet(w.db, w.brand_id)


def test_payments_refunds_rebind_and_sweeps_do_not_deadlock(w: WalletWorld, clock: FrozenClock) -> None:
    a, b = w.members
    w.add_rule("r", bonus_kind="fixed", bonus_fixed=Decimal("10"))
    w.top_up(a, "100.00", "t1")
    w.top_up(b, "100.00", "t2")
    w.pay(a, "10.00", "pa")
    w.pay(b, "10.00", "pb")
    w.pay(b, "1.00", "old-hold", hold=True, ttl_minutes=1)
    clock.advance(minutes=2)
    account_a = w.account(a).id
    third = w.run(
        lambda s, actor: members.enroll_member(s, actor=actor, data=MemberEnroll(enroll_channel="store")).id
    )
    rebind = RebindIn(
        to_member_id=third,
        verification=VerificationIn(method="in_store", reference="柜台核验"),
        reason="转赠",
    )
    now = clock.now()

    def work(i: int) -> Any:
        if i == 0:
            return w.run(accounts.rebind, account_id=account_a, data=rebind)
        if i == 1:
            return w.run(ledger.release_due_reservations, now=now)
        if i == 2:
            return w.run(ledger.expire_due, now=now)
        if i == 3:
            return w.refund_payment("pb", "rb")
        member = a if i % 2 else b
        return w.pay(member, "3.00", f"p{i}")

    results = race(14, work)

    # Payments of a's wallet that lost the race to the re-bind find no wallet for member a.
    assert not _unexpected(results, NotFound), results
    assert results[0].member_id == third
    check_wallet(w.db, w.brand_id)
