"""The points ledger, verb by verb, under a frozen clock on both databases: spending order, pending
and expiring lots, decay and grace, reservations, the refund policy, transfers, freezes, adjustments,
idempotency and brand isolation."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta

import pytest

from huiyuan.kit.clock import FrozenClock
from huiyuan.kit.db import Database
from huiyuan.kit.errors import IdempotencyMismatch, NotFound, ValidationFailed
from huiyuan.points import ledger
from huiyuan.points.expiry_policy import carry_over, expiry_for, parse_policy, with_grace
from huiyuan.points.ledger import InsufficientPoints, PointsNotAllowed, ReservationClosed
from tests.points.helpers import (
    DECAYING,
    MONTHLY,
    T0,
    PointsBrand,
    check_ledger,
    frozen_clock,
    make_points_brand,
    set_policy,
)

TZ = "Asia/Shanghai"


@pytest.fixture
def clock() -> Iterator[FrozenClock]:
    with frozen_clock() as c:
        yield c


@pytest.fixture
def pb(db: Database, clock: FrozenClock) -> PointsBrand:
    return make_points_brand(db, members_count=2)


def _move_to(clock: FrozenClock, at: datetime) -> None:
    clock.advance(seconds=(at - clock.now()).total_seconds())


def _balance(available: int = 0, pending: int = 0, frozen: int = 0, reserved: int = 0, debt: int = 0) -> dict:
    return {"available": available, "pending": pending, "frozen": frozen, "reserved": reserved, "debt": debt}


def _kinds(pb: PointsBrand, result: ledger.LedgerResult) -> list[str]:
    return [e.kind for e in pb.entries(operation_id=result.operation_id)]


# -- spending order -------------------------------------------------------------------------------


def test_spend_draws_the_soonest_expiring_lot_first_then_the_oldest(pb: PointsBrand) -> None:
    m = pb.members[0]
    late1 = pb.earn(m, 10, "e1").extra["lot_id"]
    early = pb.earn(m, 10, "e2", earned_at=T0 - timedelta(days=5)).extra["lot_id"]
    late2 = pb.earn(m, 10, "e3").extra["lot_id"]
    assert pb.lot(early).expires_at < pb.lot(late1).expires_at == pb.lot(late2).expires_at

    spent = pb.spend(m, 25, "s1")

    assert pb.moves(spent.entries[-1]) == [(early, -10), (late1, -10), (late2, -5)]
    assert pb.balance(m) == _balance(available=5)
    check_ledger(pb.db, pb.brand_id)


def test_lots_without_expiry_are_spent_last(pb: PointsBrand) -> None:
    m = pb.members[0]
    set_policy(pb, "pts", {"kind": "never"})
    forever = pb.earn(m, 10, "e1").extra["lot_id"]
    set_policy(pb, "pts", MONTHLY)
    expiring = pb.earn(m, 10, "e2").extra["lot_id"]
    assert pb.lot(forever).expires_at is None

    spent = pb.spend(m, 15, "s1")

    assert pb.moves(spent.entries[-1]) == [(expiring, -10), (forever, -5)]
    check_ledger(pb.db, pb.brand_id)


def test_pending_lots_are_not_spendable_until_activated(pb: PointsBrand, clock: FrozenClock) -> None:
    m = pb.members[0]
    earned = pb.earn(m, 50, "e1", pending_days=7)
    assert earned.extra["state"] == "pending"
    assert pb.balance(m) == _balance(pending=50)
    with pytest.raises(InsufficientPoints):
        pb.spend(m, 1, "s1")

    clock.advance(days=7)
    # The return window closed, but only the activation job makes the points spendable.
    with pytest.raises(InsufficientPoints):
        pb.spend(m, 1, "s1")
    assert pb.run(ledger.activate_due, now=clock.now())[:2] == (1, 50)
    assert pb.run(ledger.activate_due, now=clock.now())[:2] == (0, 0)
    assert pb.balance(m) == _balance(available=50)

    pb.spend(m, 50, "s1")
    assert pb.balance(m) == _balance()
    check_ledger(pb.db, pb.brand_id)


def test_point_type_pending_days_apply_to_earns(db: Database, clock: FrozenClock) -> None:
    pb = make_points_brand(db, pending_days=3)
    m = pb.members[0]
    assert pb.earn(m, 5, "e1").extra["state"] == "pending"
    assert pb.earn(m, 5, "e2", pending_days=0).extra["state"] == "active"
    assert pb.balance(m) == _balance(available=5, pending=5)
    check_ledger(db, pb.brand_id)


# -- expiry ---------------------------------------------------------------------------------------


def test_a_spend_after_expiry_sees_the_lot_expired_without_the_job(
    pb: PointsBrand, clock: FrozenClock
) -> None:
    m = pb.members[0]
    old = pb.earn(m, 100, "e1").extra["lot_id"]
    clock.advance(days=20)
    new = pb.earn(m, 50, "e2").extra["lot_id"]
    expires = pb.lot(old).expires_at
    assert expires == expiry_for(parse_policy(MONTHLY), T0, TZ).effective

    # One second before the (exclusive) expiry the old lot is still spent first.
    _move_to(clock, expires - timedelta(seconds=1))
    first = pb.spend(m, 1, "s0")
    assert pb.moves(first.entries[-1]) == [(old, -1)]

    _move_to(clock, expires)
    # Only the new lot's 50 count now; the refused spend leaves no expire entry behind.
    with pytest.raises(InsufficientPoints):
        pb.spend(m, 60, "s1")
    assert pb.entries(kind="expire") == []
    assert pb.lot(old).state == "active"

    spent = pb.spend(m, 10, "s1")
    assert _kinds(pb, spent) == ["expire", "spend"]
    assert pb.moves(spent.entries[-1]) == [(new, -10)]
    assert pb.lot(old).state == "expired"
    assert pb.lot(old).remaining == 0
    assert pb.balance(m) == _balance(available=40)
    assert pb.account(m).expired_total == 99
    # Nothing is left for the job.
    assert pb.run(ledger.expire_due, now=clock.now())[:2] == (0, 0)
    check_ledger(pb.db, pb.brand_id)


def test_expire_due_is_idempotent_and_resumable(pb: PointsBrand, clock: FrozenClock) -> None:
    a, b = pb.members
    lots = [pb.earn(m, 10 + i, f"e{m}-{i}").extra["lot_id"] for m in (a, b) for i in range(2)]
    lots.append(pb.earn(b, 7, "p1", pending_days=3).extra["lot_id"])
    pb.spend(a, 5, "s1")
    pb.run(ledger.freeze, member_id=b, point_type="pts", key="f1", reason="check", lot_ids=[lots[2]])
    clock.advance(days=40)

    chunks = []
    after = 0
    points = 0
    while True:
        n, p, after = pb.run(ledger.expire_due, now=clock.now(), after_lot_id=after, limit=1)
        if n == 0:
            break
        chunks.append(after)
        points += p
    assert chunks == sorted(lots)
    assert points == 10 + 11 - 5 + 10 + 11 + 7
    # A second run finds nothing and writes nothing.
    entries = len(pb.entries())
    assert pb.run(ledger.expire_due, now=clock.now()) == (0, 0, 0)
    assert len(pb.entries()) == entries
    for m in (a, b):
        assert pb.balance(m) == _balance()
        assert all(lot.state == "expired" for lot in pb.lots(m))
    assert pb.account(a).expired_total == 16
    assert pb.account(b).expired_total == 28
    check_ledger(pb.db, pb.brand_id)


def test_decay_carries_part_of_the_expiring_points_into_a_new_lot(
    pb: PointsBrand, clock: FrozenClock
) -> None:
    m = pb.members[0]
    policy = parse_policy(DECAYING)
    lot = pb.lot(pb.earn(m, 101, "e1", point_type="dec").extra["lot_id"])
    expected = expiry_for(policy, T0, TZ)
    assert (lot.nominal_expires_at, lot.expires_at) == (expected.nominal, expected.effective)

    _move_to(clock, lot.expires_at)
    assert pb.run(ledger.expire_due, now=clock.now())[:2] == (1, 101)

    old, carried = pb.lots(m, "dec")
    assert old.state == "expired"
    assert (carried.amount, carried.remaining, carried.state) == (50, 50, "active")
    assert (carried.source_type, carried.source_id) == ("carry", str(lot.id))
    amount, nominal = carry_over(policy, 101, lot.expires_at, TZ)
    assert amount == 50
    assert carried.nominal_expires_at == nominal
    assert carried.expires_at == with_grace(policy, nominal, TZ).effective
    assert carried.expires_at >= lot.expires_at + timedelta(days=30)
    assert pb.balance(m, "dec") == _balance(available=50)
    assert pb.account(m, "dec").expired_total == 51
    assert [e.kind for e in pb.entries()][-2:] == ["expire", "carry"]

    # The carried lot decays in its turn.
    _move_to(clock, carried.expires_at)
    assert pb.run(ledger.expire_due, now=clock.now())[:2] == (1, 50)
    assert pb.balance(m, "dec") == _balance(available=25)
    check_ledger(pb.db, pb.brand_id)


def test_points_carried_past_their_own_expiry_expire_at_once(pb: PointsBrand, clock: FrozenClock) -> None:
    m = pb.members[0]
    pb.earn(m, 100, "e1", point_type="dec")
    # Long past the lot's expiry and past that of the lot its decay would carry into.
    clock.advance(days=70)

    touched = pb.earn(m, 1, "e2", point_type="dec")

    assert _kinds(pb, touched) == ["expire", "carry", "expire", "carry", "earn"]
    first, second, third, _new = pb.lots(m, "dec")
    assert [(lot.amount, lot.state) for lot in (first, second, third)] == [
        (100, "expired"),
        (50, "expired"),
        (25, "active"),
    ]
    assert third.expires_at > clock.now()
    assert pb.balance(m, "dec") == _balance(available=26)
    assert pb.account(m, "dec").expired_total == 75
    check_ledger(pb.db, pb.brand_id)


def test_points_carried_from_a_frozen_lot_stay_frozen(pb: PointsBrand, clock: FrozenClock) -> None:
    m = pb.members[0]
    lot = pb.earn(m, 100, "e1", point_type="dec").extra["lot_id"]
    pb.run(ledger.freeze, member_id=m, point_type="dec", key="f1", reason="fraud check")
    _move_to(clock, pb.lot(lot).expires_at)
    pb.run(ledger.expire_due, now=clock.now())

    carried = pb.lots(m, "dec")[-1]
    assert (carried.amount, carried.state, carried.frozen_reason) == (50, "frozen", "fraud check")
    assert pb.balance(m, "dec") == _balance(frozen=50)
    with pytest.raises(InsufficientPoints):
        pb.spend(m, 1, "s1", point_type="dec")
    pb.run(ledger.freeze, member_id=m, point_type="dec", key="u1", reason="cleared", unfreeze=True)
    assert pb.balance(m, "dec") == _balance(available=50)
    check_ledger(pb.db, pb.brand_id)


def test_grace_days_keep_points_usable_past_the_nominal_date(pb: PointsBrand, clock: FrozenClock) -> None:
    m = pb.members[0]
    lot = pb.lot(pb.earn(m, 30, "e1", point_type="dec").extra["lot_id"])
    assert lot.expires_at - lot.nominal_expires_at == timedelta(days=2)

    _move_to(clock, lot.nominal_expires_at + timedelta(days=1))
    pb.spend(m, 10, "s1", point_type="dec")
    assert pb.run(ledger.expire_due, now=clock.now()) == (0, 0, 0)
    assert pb.balance(m, "dec") == _balance(available=20)

    _move_to(clock, lot.expires_at)
    assert pb.run(ledger.expire_due, now=clock.now())[:2] == (1, 20)
    assert pb.balance(m, "dec") == _balance(available=10)  # half carried over
    check_ledger(pb.db, pb.brand_id)


# -- reservations ---------------------------------------------------------------------------------


def _reserve(pb: PointsBrand, m: int, amount: int, key: str, **kw: object) -> ledger.LedgerResult:
    return pb.run(ledger.reserve, member_id=m, point_type="pts", amount=amount, key=key, **kw)


def test_a_timed_out_reservation_is_released_on_the_next_touch(pb: PointsBrand, clock: FrozenClock) -> None:
    m = pb.members[0]
    pb.earn(m, 100, "e1")
    _reserve(pb, m, 30, "r1", ttl_minutes=15)
    assert pb.balance(m) == _balance(available=70, reserved=30)

    clock.advance(minutes=14, seconds=59)
    pb.earn(m, 1, "e2")
    assert pb.balance(m) == _balance(available=71, reserved=30)

    clock.advance(seconds=1)
    touched = pb.earn(m, 1, "e3")
    assert _kinds(pb, touched) == ["release", "earn"]
    assert pb.balance(m) == _balance(available=102)
    with pytest.raises(ReservationClosed):
        pb.run(ledger.confirm, reservation_key="r1")
    assert pb.run(ledger.release_due_reservations, now=clock.now()) == 0
    check_ledger(pb.db, pb.brand_id)


def test_release_due_reservations_releases_timed_out_holds(pb: PointsBrand, clock: FrozenClock) -> None:
    a, b = pb.members
    pb.earn(a, 50, "e1")
    pb.earn(b, 50, "e2")
    _reserve(pb, a, 20, "r1", ttl_minutes=5)
    _reserve(pb, b, 10, "r2", ttl_minutes=5)
    _reserve(pb, b, 10, "r3", ttl_minutes=60)
    clock.advance(minutes=5)

    assert pb.run(ledger.release_due_reservations, now=clock.now()) == 2
    assert pb.run(ledger.release_due_reservations, now=clock.now()) == 0
    assert pb.balance(a) == _balance(available=50)
    assert pb.balance(b) == _balance(available=40, reserved=10)
    pb.run(ledger.confirm, reservation_key="r3")
    assert pb.balance(b) == _balance(available=40)
    check_ledger(pb.db, pb.brand_id)


def test_release_returns_points_to_their_lots_with_their_expiry(pb: PointsBrand, clock: FrozenClock) -> None:
    m = pb.members[0]
    l1 = pb.earn(m, 10, "e1").extra["lot_id"]
    clock.advance(days=1)
    l2 = pb.earn(m, 20, "e2").extra["lot_id"]
    before = {lot.id: lot.expires_at for lot in pb.lots(m)}
    held = _reserve(pb, m, 25, "r1")
    assert pb.moves(held.entries[-1]) == [(l1, -10), (l2, -15)]

    released = pb.run(ledger.release, reservation_key="r1")

    assert pb.moves(released.entries[-1]) == [(l1, 10), (l2, 15)]
    assert {lot.id: (lot.remaining, lot.expires_at) for lot in pb.lots(m)} == {
        l1: (10, before[l1]),
        l2: (20, before[l2]),
    }
    assert pb.balance(m) == _balance(available=30)
    # Released twice: the first result again; confirming now is refused.
    assert pb.run(ledger.release, reservation_key="r1").replayed
    with pytest.raises(ReservationClosed):
        pb.run(ledger.confirm, reservation_key="r1")
    check_ledger(pb.db, pb.brand_id)


def test_released_points_of_a_lot_that_expired_meanwhile_expire_at_once(
    pb: PointsBrand, clock: FrozenClock
) -> None:
    m = pb.members[0]
    l1 = pb.earn(m, 10, "e1").extra["lot_id"]
    clock.advance(days=10)
    l2 = pb.earn(m, 20, "e2").extra["lot_id"]
    _reserve(pb, m, 15, "r1", ttl_minutes=60 * 24 * 30)
    _move_to(clock, pb.lot(l1).expires_at)

    released = pb.run(ledger.release, reservation_key="r1")

    assert _kinds(pb, released) == ["release", "expire"]
    assert pb.lot(l1).state == "expired"
    assert pb.lot(l1).remaining == 0
    assert pb.lot(l2).remaining == 20
    assert pb.balance(m) == _balance(available=20)
    assert pb.account(m).expired_total == 10
    check_ledger(pb.db, pb.brand_id)


def test_confirm_spends_the_reservation_once(pb: PointsBrand) -> None:
    m = pb.members[0]
    pb.earn(m, 40, "e1")
    _reserve(pb, m, 25, "r1", order_ref="O-1")
    first = pb.run(ledger.confirm, reservation_key="r1")
    again = pb.run(ledger.confirm, reservation_key="r1")
    assert again.replayed
    assert again.to_json() == first.to_json()
    assert len(pb.entries(kind="confirm")) == 1
    with pytest.raises(ReservationClosed):
        pb.run(ledger.release, reservation_key="r1")
    assert pb.balance(m) == _balance(available=15)
    assert pb.account(m).spent_total == 25
    check_ledger(pb.db, pb.brand_id)


# -- refunds --------------------------------------------------------------------------------------


def _reverse(pb: PointsBrand, lot_id: int, amount: int, key: str) -> ledger.LedgerResult:
    return pb.run(ledger.reverse_lot, lot_id=lot_id, amount=amount, key=key, reason="order refunded")


def test_reverse_lot_takes_from_the_lot_then_the_soonest_expiring_lots_then_debt(
    pb: PointsBrand, clock: FrozenClock
) -> None:
    m = pb.members[0]
    refunded = pb.earn(m, 100, "e1").extra["lot_id"]
    pb.spend(m, 80, "s1")
    clock.advance(days=1)
    later = pb.earn(m, 30, "e2").extra["lot_id"]
    sooner = pb.earn(m, 40, "e3", earned_at=T0 - timedelta(days=5)).extra["lot_id"]

    result = _reverse(pb, refunded, 100, "rv1")

    entries = pb.entries(operation_id=result.operation_id)
    assert [e.kind for e in entries] == ["reverse", "reverse", "reverse"]
    assert pb.moves(entries[0].id) == [(refunded, -20)]
    assert pb.moves(entries[1].id) == [(sooner, -40), (later, -30)]
    assert (entries[2].amount, entries[2].d_debt) == (0, 10)
    assert result.extra == {"debt_added": 10, "forgiven": 0}
    assert pb.balance(m) == _balance(debt=10)
    check_ledger(pb.db, pb.brand_id)


def test_debt_is_repaid_by_the_next_points_that_become_active(pb: PointsBrand, clock: FrozenClock) -> None:
    m = pb.members[0]
    lot = pb.earn(m, 100, "e1").extra["lot_id"]
    pb.spend(m, 100, "s1")
    assert _reverse(pb, lot, 60, "rv1").extra["debt_added"] == 60

    small = pb.earn(m, 40, "e2")
    assert _kinds(pb, small) == ["earn", "reverse"]
    assert pb.lot(small.extra["lot_id"]).remaining == 0
    assert pb.balance(m) == _balance(debt=20)

    # Pending points repay nothing until they become active.
    pending = pb.earn(m, 50, "e3", pending_days=2)
    assert pb.balance(m) == _balance(pending=50, debt=20)
    clock.advance(days=2)
    pb.run(ledger.activate_due, now=clock.now())
    assert pb.lot(pending.extra["lot_id"]).remaining == 30
    assert pb.balance(m) == _balance(available=30)
    check_ledger(pb.db, pb.brand_id)


def test_the_expired_unused_share_of_a_reversed_lot_is_forgiven(pb: PointsBrand, clock: FrozenClock) -> None:
    m = pb.members[0]
    lot = pb.earn(m, 100, "e1").extra["lot_id"]
    pb.spend(m, 30, "s1")
    _move_to(clock, pb.lot(lot).expires_at)
    assert pb.run(ledger.expire_due, now=clock.now())[:2] == (1, 70)
    pb.earn(m, 50, "e2")

    result = _reverse(pb, lot, 100, "rv1")

    # 70 expired unused: nothing to take back; the 30 spent come from the other lot.
    assert result.extra == {"debt_added": 0, "forgiven": 70}
    assert pb.balance(m) == _balance(available=20)
    refunded = pb.lot(lot)
    assert (refunded.reversed_amount, refunded.forgiven_amount) == (100, 70)
    with pytest.raises(ValidationFailed):
        _reverse(pb, lot, 1, "rv2")
    check_ledger(pb.db, pb.brand_id)


def test_points_carried_over_from_a_reversed_lot_are_not_forgiven(
    pb: PointsBrand, clock: FrozenClock
) -> None:
    m = pb.members[0]
    lot = pb.earn(m, 100, "e1", point_type="dec").extra["lot_id"]
    _move_to(clock, pb.lot(lot).expires_at)
    pb.run(ledger.expire_due, now=clock.now())
    assert pb.balance(m, "dec") == _balance(available=50)  # 50 expired, 50 carried over

    result = _reverse(pb, lot, 100, "rv1")

    # Only what really expired is forgiven; the carried points go back with the refund.
    assert result.extra == {"debt_added": 0, "forgiven": 50}
    assert pb.balance(m, "dec") == _balance()
    check_ledger(pb.db, pb.brand_id)


def test_partial_reversals_are_bounded_by_the_lot_amount(pb: PointsBrand) -> None:
    m = pb.members[0]
    lot = pb.earn(m, 50, "e1", pending_days=7).extra["lot_id"]
    first = _reverse(pb, lot, 20, "rv1")
    assert pb.balance(m) == _balance(pending=30)
    entries = len(pb.entries())
    again = _reverse(pb, lot, 20, "rv1")
    assert again.replayed
    assert again.to_json() == first.to_json()
    assert len(pb.entries()) == entries

    with pytest.raises(ValidationFailed):
        _reverse(pb, lot, 31, "rv2")
    with pytest.raises(ValidationFailed):
        _reverse(pb, lot, 0, "rv2")
    _reverse(pb, lot, 30, "rv2")
    with pytest.raises(ValidationFailed):
        _reverse(pb, lot, 1, "rv3")
    assert pb.balance(m) == _balance()
    assert pb.lot(lot).reversed_amount == 50
    check_ledger(pb.db, pb.brand_id)


def _restore(pb: PointsBrand, entry_id: int, amount: int, key: str) -> ledger.LedgerResult:
    return pb.run(ledger.restore_entry, entry_id=entry_id, amount=amount, key=key, reason="order refunded")


def test_restore_entry_gives_back_the_latest_drawn_lots_first_and_never_more(
    pb: PointsBrand, clock: FrozenClock
) -> None:
    a, b = pb.members
    pb.earn(a, 100, "e1")
    clock.advance(days=10)
    own = pb.earn(b, 100, "e2").extra["lot_id"]
    # The transferred lot is newer (higher id) but keeps the sender's sooner expiry.
    pb.run(ledger.transfer, from_member_id=a, to_member_id=b, point_type="pts", amount=50, key="t1")
    moved = pb.lots(b)[-1].id
    assert moved > own
    spent = pb.spend(b, 80, "s1")
    entry = spent.entries[-1]
    assert pb.moves(entry) == [(moved, -50), (own, -30)]

    assert pb.moves(_restore(pb, entry, 20, "rs1").entries[-1]) == [(own, 20)]
    assert pb.moves(_restore(pb, entry, 20, "rs2").entries[-1]) == [(own, 10), (moved, 10)]
    with pytest.raises(ValidationFailed):
        _restore(pb, entry, 41, "rs3")
    _restore(pb, entry, 40, "rs3")
    with pytest.raises(ValidationFailed):
        _restore(pb, entry, 1, "rs4")
    assert pb.balance(b) == _balance(available=150)
    assert pb.account(b).spent_total == 0
    check_ledger(pb.db, pb.brand_id)


def test_restore_of_a_confirmed_reservation_and_of_a_negative_adjustment(pb: PointsBrand) -> None:
    m = pb.members[0]
    lot = pb.earn(m, 100, "e1").extra["lot_id"]
    _reserve(pb, m, 30, "r1")
    confirmed = pb.run(ledger.confirm, reservation_key="r1")
    assert pb.moves(_restore(pb, confirmed.entries[-1], 30, "rs1").entries[-1]) == [(lot, 30)]
    adjusted = pb.run(ledger.adjust, member_id=m, point_type="pts", amount=-10, key="a1", reason="typo")
    _restore(pb, adjusted.entries[-1], 10, "rs2")
    assert pb.balance(m) == _balance(available=100)
    earned_entry = pb.entries(kind="earn")[0].id
    with pytest.raises(NotFound):
        _restore(pb, earned_entry, 1, "rs3")
    check_ledger(pb.db, pb.brand_id)


def test_restored_points_of_an_expired_lot_expire_at_once(pb: PointsBrand, clock: FrozenClock) -> None:
    m = pb.members[0]
    lot = pb.earn(m, 10, "e1").extra["lot_id"]
    spent = pb.spend(m, 10, "s1")
    _move_to(clock, pb.lot(lot).expires_at + timedelta(days=1))
    pb.run(ledger.expire_due, now=clock.now())

    restored = _restore(pb, spent.entries[-1], 10, "rs1")

    assert _kinds(pb, restored) == ["restore", "expire"]
    assert pb.balance(m) == _balance()
    assert pb.account(m).expired_total == 10
    check_ledger(pb.db, pb.brand_id)


# -- transfers, freezes, adjustments --------------------------------------------------------------


def test_transfer_keeps_each_lots_expiry(pb: PointsBrand, clock: FrozenClock) -> None:
    a, b = pb.members
    first = pb.lot(pb.earn(a, 60, "e1").extra["lot_id"])
    clock.advance(days=10)
    second = pb.lot(pb.earn(a, 40, "e2").extra["lot_id"])

    result = pb.run(ledger.transfer, from_member_id=a, to_member_id=b, point_type="pts", amount=70, key="t1")

    assert result.extra["to_balance"] == _balance(available=70)
    got = pb.lots(b)
    assert [(lot.amount, lot.expires_at, lot.earned_at, lot.source_id) for lot in got] == [
        (60, first.expires_at, first.earned_at, str(first.id)),
        (10, second.expires_at, second.earned_at, str(second.id)),
    ]
    assert pb.balance(a) == _balance(available=30)
    with pytest.raises(InsufficientPoints):
        pb.run(ledger.transfer, from_member_id=a, to_member_id=b, point_type="pts", amount=31, key="t2")
    with pytest.raises(ValidationFailed):
        pb.run(ledger.transfer, from_member_id=a, to_member_id=a, point_type="pts", amount=1, key="t2")
    check_ledger(pb.db, pb.brand_id)


def test_transfer_needs_a_transferable_point_type(pb: PointsBrand) -> None:
    a, b = pb.members
    pb.earn(a, 10, "e1", point_type="dec")
    with pytest.raises(PointsNotAllowed):
        pb.run(ledger.transfer, from_member_id=a, to_member_id=b, point_type="dec", amount=5, key="t1")
    assert pb.balance(a, "dec") == _balance(available=10)


def test_freeze_and_unfreeze_need_a_reason(pb: PointsBrand) -> None:
    m = pb.members[0]
    lot = pb.earn(m, 50, "e1").extra["lot_id"]
    for reason in ("", "   "):
        with pytest.raises(ValidationFailed):
            pb.run(ledger.freeze, member_id=m, point_type="pts", key="f1", reason=reason)
    frozen = pb.run(ledger.freeze, member_id=m, point_type="pts", key="f1", reason="fraud check")
    assert frozen.amount == 50
    assert pb.balance(m) == _balance(frozen=50)
    assert pb.lot(lot).frozen_reason == "fraud check"
    with pytest.raises(InsufficientPoints):
        pb.spend(m, 1, "s1")

    with pytest.raises(ValidationFailed):
        pb.run(ledger.freeze, member_id=m, point_type="pts", key="u1", reason="", unfreeze=True)
    pb.run(ledger.freeze, member_id=m, point_type="pts", key="u1", reason="cleared", unfreeze=True)
    assert pb.balance(m) == _balance(available=50)
    assert pb.lot(lot).frozen_reason is None
    pb.spend(m, 50, "s1")
    check_ledger(pb.db, pb.brand_id)


def test_adjust_needs_a_reason_and_a_nonzero_amount(pb: PointsBrand) -> None:
    m = pb.members[0]
    with pytest.raises(ValidationFailed):
        pb.run(ledger.adjust, member_id=m, point_type="pts", amount=5, key="a1", reason=" ")
    with pytest.raises(ValidationFailed):
        pb.run(ledger.adjust, member_id=m, point_type="pts", amount=0, key="a1", reason="fix")
    pb.run(ledger.adjust, member_id=m, point_type="pts", amount=20, key="a1", reason="goodwill")
    pb.run(ledger.adjust, member_id=m, point_type="pts", amount=-5, key="a2", reason="typo")
    with pytest.raises(InsufficientPoints):
        pb.run(ledger.adjust, member_id=m, point_type="pts", amount=-16, key="a3", reason="typo")
    account = pb.account(m)
    assert ledger.balance_of(account) == _balance(available=15)
    assert (account.earned_total, account.spent_total) == (20, 5)
    check_ledger(pb.db, pb.brand_id)


# -- idempotency and brands -----------------------------------------------------------------------


def test_the_same_key_replays_and_another_request_under_it_is_refused(pb: PointsBrand) -> None:
    m = pb.members[0]
    first = pb.earn(m, 10, "k1")
    entries = len(pb.entries())
    again = pb.earn(m, 10, "k1")
    assert again.replayed and not first.replayed
    assert again.to_json() == first.to_json()
    assert len(pb.entries()) == entries

    with pytest.raises(IdempotencyMismatch) as err:
        pb.earn(m, 11, "k1")
    assert err.value.code == "idempotency-key-reused"
    assert err.value.status == 422
    with pytest.raises(IdempotencyMismatch):
        pb.spend(m, 10, "k1")
    assert len(pb.entries()) == entries
    assert pb.balance(m) == _balance(available=10)


def test_a_brand_cannot_touch_another_brands_points(db: Database, pb: PointsBrand) -> None:
    other = make_points_brand(db, members_count=1)
    m = pb.members[0]
    lot = pb.earn(m, 10, "e1").extra["lot_id"]
    spent = pb.spend(m, 5, "s1")
    _reserve(pb, m, 2, "r1")

    with pytest.raises(NotFound):
        other.run(ledger.reverse_lot, lot_id=lot, amount=1, key="x1", reason="refund")
    with pytest.raises(NotFound):
        other.run(ledger.restore_entry, entry_id=spent.entries[-1], amount=1, key="x2", reason="refund")
    with pytest.raises(NotFound):
        other.run(ledger.confirm, reservation_key="r1")
    with pytest.raises(NotFound):
        other.spend(m, 1, "x3")
    assert pb.balance(m) == _balance(available=3, reserved=2)
    assert check_ledger(db, other.brand_id).entries == {}
    check_ledger(db, pb.brand_id)
