"""The wallet's verbs on both databases: top-up rules, spending order, holds, refunds with the
claw-back policy (the worked example of ``docs/wallet.md``), close, re-bind and the PIN lockout."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal

import pytest
from sqlalchemy import select

from huiyuan.kit.clock import FrozenClock
from huiyuan.kit.db import Database
from huiyuan.kit.errors import Conflict, IdempotencyMismatch, NotFound, ValidationFailed
from huiyuan.points import ledger
from huiyuan.points.ledger import ReservationClosed
from huiyuan.points.models import PointLot
from huiyuan.wallet import accounts, payments, statements
from huiyuan.wallet.core import (
    BalanceLimit,
    HoldsOpen,
    InsufficientBalance,
    NothingRefundable,
    PinIncorrect,
    PinLocked,
    PinNotSet,
    PinRequired,
    Rebound,
    WalletLocked,
    WalletNotEmpty,
)
from huiyuan.wallet.models import WalletBinding
from huiyuan.wallet.rules import RuleTerms, TopUpFacts, best_rule, bonus_for, proportional
from huiyuan.wallet.schemas import PayIn, RebindIn, VerificationIn
from tests.points.helpers import T0, frozen_clock
from tests.wallet.helpers import WalletWorld, check_wallet, make_wallet_world


@pytest.fixture
def clock() -> Iterator[FrozenClock]:
    with frozen_clock() as c:
        yield c


@pytest.fixture
def w(db: Database, clock: FrozenClock) -> WalletWorld:
    return make_wallet_world(db, bonus_expiry_days=30)


# -- rules (pure) ---------------------------------------------------------------------------------


def _facts(amount: int, **kw: object) -> TopUpFacts:
    base = {"channel": "store", "tier_code": None, "at": T0, "local_weekday": 6}
    return TopUpFacts(amount=amount, **{**base, **kw})  # type: ignore[arg-type]


def test_the_highest_priority_rule_applies_then_the_larger_bonus() -> None:
    percent = RuleTerms(id=1, priority=0, min_amount=0, bonus_kind="percent", bonus_percent=Decimal("10"))
    fixed = RuleTerms(id=2, priority=0, min_amount=0, bonus_kind="fixed", bonus_fixed=3000)
    campaign = RuleTerms(id=3, priority=5, min_amount=50000, bonus_kind="fixed", bonus_fixed=1000)
    assert best_rule([percent, fixed], _facts(100000)) == (percent, 10000)  # 10 % of 1000 yuan > 30
    assert best_rule([percent, fixed], _facts(10000)) == (fixed, 3000)
    assert best_rule([percent, fixed, campaign], _facts(100000)) == (campaign, 1000)  # priority wins
    assert best_rule([percent, fixed, campaign], _facts(20000)) == (fixed, 3000)  # below its minimum
    twin = RuleTerms(id=4, priority=0, min_amount=0, bonus_kind="fixed", bonus_fixed=3000)
    assert best_rule([twin, fixed], _facts(10000))[0] == fixed  # the older rule on a tie


def test_rule_conditions_and_bonus_limits() -> None:
    rule = RuleTerms(
        id=1,
        priority=0,
        min_amount=0,
        bonus_kind="percent",
        bonus_percent=Decimal("33.33"),
        bonus_cap=500,
        tier_codes=["gold"],
        channels=["app"],
        weekdays=[6, 7],
        valid_from=datetime(2026, 1, 1, tzinfo=UTC),
        valid_to=datetime(2026, 2, 1, tzinfo=UTC),
    )
    ok = {"channel": "app", "tier_code": "gold"}
    assert best_rule([rule], _facts(1000, **ok)) == (rule, 333)  # rounded down to the fen
    assert bonus_for(rule, 100000) == 500  # capped
    assert best_rule([rule], _facts(1000, channel="store", tier_code="gold")) == (None, 0)
    assert best_rule([rule], _facts(1000, channel="app", tier_code="silver")) == (None, 0)
    assert best_rule([rule], _facts(1000, local_weekday=1, **ok)) == (None, 0)
    assert best_rule([rule], _facts(1000, at=datetime(2026, 2, 1, tzinfo=UTC), **ok)) == (None, 0)
    huge = RuleTerms(id=2, priority=0, min_amount=0, bonus_kind="fixed", bonus_fixed=10**9)
    assert bonus_for(huge, 500) == 500  # never more than the top-up itself
    assert [proportional(3, r, 7) for r in range(8)] == [0, 0, 1, 1, 2, 2, 3, 3]


# -- top-ups and payments -------------------------------------------------------------------------


def test_top_up_applies_the_best_rule_and_records_the_store(w: WalletWorld) -> None:
    m = w.members[0]
    w.add_rule("pct", bonus_kind="percent", bonus_percent=Decimal("10"), bonus_cap=Decimal("30"))
    w.add_rule(
        "app", bonus_kind="fixed", bonus_fixed=Decimal("50"), channels=["app"], min_amount=Decimal("200")
    )
    first = w.top_up(m, "100.00", "t1", store=w.stores[0]).data
    assert (first["amount"], first["bonus"], first["store"]) == ("100.00", "10.00", w.stores[0])
    assert first["balance"] == {"principal": "100.00", "bonus": "10.00", "held": "0.00", "total": "110.00"}
    assert w.top_up(m, "500.00", "t2").data["bonus"] == "30.00"  # capped
    assert w.top_up(m, "300.00", "t3", channel="app").data["bonus"] == "50.00"
    assert w.top_up(m, "100.00", "t4", channel="app").data["bonus"] == "10.00"  # app rule needs 200
    assert w.yuan(m) == ("1000.00", "100.00", "0.00")

    again = w.top_up(m, "100.00", "t1", store=w.stores[0])
    assert again.replayed and again.data == first
    with pytest.raises(IdempotencyMismatch):
        w.top_up(m, "100.01", "t1", store=w.stores[0])
    with w.db.unit_of_work(w.actor.scope, write=False) as s:
        lots = s.scalars(
            select(PointLot).where(PointLot.source_type == "wallet_topup").order_by(PointLot.id)
        ).all()
        assert [(lot.amount, lot.store_id is not None, lot.source_id) for lot in lots[:2]] == [
            (10000, True, str(first["id"])),
            (1000, True, str(first["id"])),
        ]
    check_wallet(w.db, w.brand_id)


def test_tier_rules_read_the_members_tier(client, db: Database, clock: FrozenClock) -> None:  # type: ignore[no-untyped-def]
    from tests.factories import make_key
    from tests.tiers.helpers import PROGRAM, earn_growth, evaluate

    w = make_wallet_world(db)
    headers = {"Authorization": f"Bearer {make_key(db, w.brand_id)}"}
    assert client.put("/api/v1/tiers/program", json=PROGRAM, headers=headers).status_code == 200
    for level in (
        {"code": "base", "name_zh": "普卡", "name_en": "Classic", "rank": 0},
        {
            "code": "gold",
            "name_zh": "金卡",
            "name_en": "Gold",
            "rank": 1,
            "upgrade": {"basis": "growth", "min": 1000},
            "validity": {"kind": "months", "months": 12},
        },
    ):
        r = client.post("/api/v1/tiers/levels", json=level, headers=headers)
        assert r.status_code == 201, r.text
    gold, plain = w.members
    earn_growth(db, w.brand_id, gold, 6000, "g1")
    evaluate(db, w.brand_id, gold)
    w.add_rule("gold", bonus_kind="fixed", bonus_fixed=Decimal("20"), tier_codes=["gold", "platinum"])
    assert w.top_up(gold, "100.00", "t1").data["bonus"] == "20.00"
    assert w.top_up(plain, "100.00", "t2").data["bonus"] == "0.00"


def test_spending_order_and_insufficient_balance(db: Database, clock: FrozenClock) -> None:
    for order, expected in (("principal_first", ("80.00", "0.00")), ("bonus_first", ("60.00", "20.00"))):
        w = make_wallet_world(db, spend_order=order)
        m = w.members[0]
        w.add_rule("r", bonus_kind="fixed", bonus_fixed=Decimal("20"))
        w.top_up(m, "80.00", "t1")
        paid = w.pay(m, "80.00", "p1", store=w.stores[1]).data
        assert (paid["principal_amount"], paid["bonus_amount"]) == expected, order
        assert paid["state"] == "confirmed"
        with pytest.raises(InsufficientBalance) as err:
            w.pay(m, "20.01", "p2")
        assert err.value.extra["available"] == "20.00"
        check_wallet(db, w.brand_id)


def test_expired_bonus_is_not_spendable(w: WalletWorld, clock: FrozenClock) -> None:
    m = w.members[0]
    w.add_rule("r", bonus_kind="fixed", bonus_fixed=Decimal("10"))
    w.top_up(m, "50.00", "t1")
    clock.advance(days=40)
    assert w.yuan(m) == ("50.00", "0.00", "0.00")
    with pytest.raises(InsufficientBalance):
        w.pay(m, "55.00", "p1")
    assert w.pay(m, "50.00", "p2").data["bonus_amount"] == "0.00"
    check_wallet(w.db, w.brand_id)


def test_hold_confirm_release_and_timeout(w: WalletWorld, clock: FrozenClock) -> None:
    m = w.members[0]
    w.top_up(m, "100.00", "t1")
    held = w.pay(m, "30.00", "h1", hold=True, order_ref="SO-1").data
    assert held["state"] == "held" and held["balance"]["held"] == "30.00"
    confirmed = w.confirm("h1")
    assert confirmed.data["state"] == "confirmed" and not confirmed.replayed
    assert w.confirm("h1").replayed
    with pytest.raises(ReservationClosed):
        w.release("h1")

    w.pay(m, "20.00", "h2", hold=True)
    assert w.release("h2").data["state"] == "released"
    assert w.yuan(m) == ("70.00", "0.00", "0.00")

    w.pay(m, "10.00", "h3", hold=True, ttl_minutes=5)
    clock.advance(minutes=6)
    assert w.read(lambda s: payments.get_payment(s, actor=w.actor, key="h3")).state == "released"
    with pytest.raises(ReservationClosed):
        w.confirm("h3")
    w.top_up(m, "1.00", "t2")  # the next write marks the timed-out payment released
    with pytest.raises(ReservationClosed):
        w.confirm("h3")
    check_wallet(w.db, w.brand_id)
    with pytest.raises(NotFound):
        w.confirm("nope")


def test_balance_limit(db: Database, clock: FrozenClock) -> None:
    w = make_wallet_world(db, max_balance=Decimal("100.00"))
    m = w.members[0]
    w.top_up(m, "90.00", "t1")
    with pytest.raises(BalanceLimit):
        w.top_up(m, "10.01", "t2")
    w.top_up(m, "10.00", "t3")


# -- refunds --------------------------------------------------------------------------------------


def test_payment_refunds_are_proportional_and_bounded(w: WalletWorld) -> None:
    m = w.members[0]
    w.add_rule("r", bonus_kind="fixed", bonus_fixed=Decimal("30"))
    w.top_up(m, "70.00", "t1")
    paid = w.pay(m, "100.00", "p1", store=w.stores[1]).data  # 70 principal + 30 bonus
    assert (paid["principal_amount"], paid["bonus_amount"]) == ("70.00", "30.00")
    r1 = w.refund_payment("p1", "r1", "33.33").data
    assert (r1["principal"], r1["bonus"]) == ("23.33", "10.00")
    r2 = w.refund_payment("p1", "r2", "0.01").data
    assert (r2["principal"], r2["bonus"]) == ("0.01", "0.00")
    with pytest.raises(ValidationFailed) as err:
        w.refund_payment("p1", "r3", "66.67")
    assert err.value.errors[0]["field"] == "amount"
    rest = w.refund_payment("p1", "r4").data
    assert (rest["principal"], rest["bonus"]) == ("46.66", "20.00")
    assert w.read(lambda s: payments.get_payment(s, actor=w.actor, key="p1")).state == "refunded"
    assert w.yuan(m) == ("70.00", "30.00", "0.00")
    with pytest.raises(NothingRefundable):
        w.refund_payment("p1", "r5")
    assert w.refund_payment("p1", "r1", "33.33").replayed
    w.pay(m, "5.00", "h1", hold=True)
    with pytest.raises(Conflict):
        w.refund_payment("h1", "r6")
    check_wallet(w.db, w.brand_id)


def test_top_up_refund_claws_back_bonus_worked_example(w: WalletWorld, clock: FrozenClock) -> None:
    """docs/wallet.md: top up 1000 with 100 bonus (10 %), spend 950 principal first then bonus…"""
    m = w.members[0]
    w.add_rule("r", bonus_kind="percent", bonus_percent=Decimal("10"))
    w.top_up(m, "1000.00", "t1")
    w.pay(m, "400.00", "p1")  # principal only
    # Refund 300 of the 600 unspent principal: 30 bonus owed back, all still in the bonus lot.
    r1 = w.refund_topup("t1", "r1", "300.00").data
    assert (r1["principal"], r1["bonus"], r1["bonus_charged"], r1["cash_refund"]) == (
        "300.00",
        "30.00",
        "0.00",
        "300.00",
    )
    assert w.yuan(m) == ("300.00", "70.00", "0.00")
    w.pay(m, "350.00", "p2")  # 300 principal + 50 bonus
    assert w.yuan(m) == ("0.00", "20.00", "0.00")
    with pytest.raises(NothingRefundable):
        w.refund_topup("t1", "r2")
    w.refund_payment("p2", "r3", "100.00")  # back in proportion: 85.71 principal, 14.29 bonus
    assert w.yuan(m) == ("85.71", "34.29", "0.00")
    # Refund the 85.71 left: 8.57 bonus owed, taken from the lot (34.29 in it).
    r4 = w.refund_topup("t1", "r4").data
    assert (r4["principal"], r4["bonus"], r4["bonus_charged"], r4["cash_refund"]) == (
        "85.71",
        "8.57",
        "0.00",
        "85.71",
    )
    assert w.yuan(m) == ("0.00", "25.72", "0.00")
    check_wallet(w.db, w.brand_id)


def test_spent_bonus_is_charged_and_expired_bonus_forgiven(w: WalletWorld, clock: FrozenClock) -> None:
    m = w.members[0]
    w.add_rule("r", bonus_kind="percent", bonus_percent=Decimal("20"))
    w.top_up(m, "100.00", "t1")  # + 20 bonus
    w.pay(m, "15.00", "p1", order_ref="SO-1")  # principal first
    # Bonus first now, so the bonus is spent while principal remains.
    with w.db.unit_of_work(w.actor.scope) as s:
        wt = s.scalars(select(payments.WalletType)).one()
        wt.spend_order = "bonus_first"
    w.pay(m, "12.00", "p2")  # 12 bonus
    r1 = w.refund_topup("t1", "r1", "50.00").data
    # Owed back: 20 × 50 / 100 = 10; 8 left in the lot, 2 spent → charged, cash 48.
    assert (r1["bonus"], r1["bonus_forgiven"], r1["bonus_charged"], r1["cash_refund"]) == (
        "8.00",
        "0.00",
        "2.00",
        "48.00",
    )
    clock.advance(days=40)  # nothing left in the bonus lot to expire; top up again and let it expire
    w.top_up(m, "50.00", "t2")  # + 10 bonus, expires in 30 days
    clock.advance(days=31)
    r2 = w.refund_topup("t2", "r2").data
    assert (r2["bonus"], r2["bonus_forgiven"], r2["bonus_charged"], r2["cash_refund"]) == (
        "0.00",
        "10.00",
        "0.00",
        "50.00",
    )
    check_wallet(w.db, w.brand_id)


def test_top_up_refund_waits_for_holds(w: WalletWorld) -> None:
    m = w.members[0]
    w.top_up(m, "100.00", "t1")
    w.pay(m, "10.00", "h1", hold=True)
    with pytest.raises(HoldsOpen):
        w.refund_topup("t1", "r1")
    w.release("h1")
    assert w.refund_topup("t1", "r1").data["cash_refund"] == "100.00"
    check_wallet(w.db, w.brand_id)


# -- lifecycle ------------------------------------------------------------------------------------


def test_lock_unlock_and_close(w: WalletWorld) -> None:
    m = w.members[0]
    w.top_up(m, "50.00", "t1")
    account = w.account(m)
    w.pay(m, "10.00", "h1", hold=True)
    w.run(accounts.lock, account_id=account.id, reason="挂失")
    with pytest.raises(WalletLocked):
        w.pay(m, "1.00", "p1")
    with pytest.raises(WalletLocked):
        w.top_up(m, "1.00", "t2")
    w.confirm("h1")  # authorised before the lock
    w.run(accounts.unlock, account_id=account.id, reason="找回")
    with pytest.raises(WalletNotEmpty) as err:
        w.run(accounts.close, account_id=account.id, reason="销户")
    assert err.value.extra["principal"] == "40.00"
    w.pay(m, "5.00", "h2", hold=True)
    with pytest.raises(HoldsOpen):
        w.run(accounts.close, account_id=account.id, reason="销户")
    w.release("h2")
    w.refund_topup("t1", "r1")
    closed = w.run(accounts.close, account_id=account.id, reason="销户")
    assert closed.status == "closed" and closed.closed_at is not None
    with pytest.raises(Exception) as closed_err:
        w.top_up(m, "1.00", "t3")
    assert getattr(closed_err.value, "code", "") == "wallet-closed"
    check_wallet(w.db, w.brand_id)


def test_rebind_moves_both_sub_ledgers_with_their_lots(w: WalletWorld, clock: FrozenClock) -> None:
    a, b = w.members
    w.add_rule("r", bonus_kind="fixed", bonus_fixed=Decimal("10"))
    w.top_up(a, "100.00", "t1")
    w.pay(a, "30.00", "p1")
    account = w.account(a)
    data = RebindIn(
        to_member_id=b,
        verification=VerificationIn(method="id_document", reference="工单-7"),
        reason="会员换号",
    )
    w.pay(a, "5.00", "h1", hold=True)
    with pytest.raises(HoldsOpen):
        w.run(accounts.rebind, account_id=account.id, data=data)
    w.release("h1")
    rebound = w.run(accounts.rebind, account_id=account.id, data=data)
    assert rebound.member_id == b and rebound.pin_hash is None
    assert w.yuan(b) == ("70.00", "10.00", "0.00")
    with w.db.unit_of_work(w.actor.scope, write=False) as s:
        bindings = s.scalars(select(WalletBinding).order_by(WalletBinding.id)).all()
        assert [(x.member_id, x.unbound_at is None, x.verification_method) for x in bindings] == [
            (a, False, None),
            (b, True, "id_document"),
        ]
        moved = s.scalars(select(PointLot).where(PointLot.source_type == "transfer")).all()
        assert sorted(lot.amount for lot in moved) == [1000, 7000]
        assert all(lot.member_id == b for lot in moved)
    # The new holder pays with it; the previous holder's refunds are refused.
    assert w.pay(b, "75.00", "p2").data["bonus_amount"] == "5.00"
    with pytest.raises(Rebound):
        w.refund_payment("p1", "r1")
    with pytest.raises(Rebound):
        w.refund_topup("t1", "r2")
    with pytest.raises(NotFound):
        w.pay(a, "1.00", "p3")
    staff = w.read(lambda s: statements.statement(s, account.id, member_id=None, before_id=None, limit=50))
    mine = w.read(lambda s: statements.statement(s, account.id, member_id=b, before_id=None, limit=50))
    assert {line.activity for line in staff.items} >= {"top_up", "payment", "rebind"}
    assert {line.activity for line in mine.items} == {"rebind", "payment"}
    assert sum(line.amount for line in mine.items) == Decimal("5.00")
    # Another member who already holds this wallet type cannot take it.
    w.top_up(a, "1.00", "t9")
    with pytest.raises(Conflict):
        w.run(accounts.rebind, account_id=account.id, data=data.model_copy(update={"to_member_id": a}))
    check_wallet(w.db, w.brand_id)


# -- PIN ------------------------------------------------------------------------------------------


def test_pin_lockout(db: Database, clock: FrozenClock) -> None:
    w = make_wallet_world(db, require_pin=True)
    m = w.members[0]
    w.top_up(m, "100.00", "t1")
    account = w.account(m)
    with pytest.raises(PinNotSet):
        w.pay(m, "1.00", "p0")
    w.run(accounts.set_pin, member_id=m, account_id=account.id, pin="135790", current_pin=None)
    with pytest.raises(PinRequired):
        w.pay(m, "1.00", "p1")
    assert w.pay(m, "1.00", "p2", pin="135790").data["amount"] == "1.00"
    for attempt in range(accounts.PIN_ATTEMPTS):
        with pytest.raises(PinIncorrect) as err:
            w.pay(m, "1.00", f"bad{attempt}", pin="000000")
        assert err.value.extra["attempts_left"] == accounts.PIN_ATTEMPTS - attempt - 1
        w.run(accounts.record_pin_failure, account_id=err.value.account_id)  # what the router does
    with pytest.raises(PinLocked):
        w.pay(m, "1.00", "p3", pin="135790")  # the right PIN, but locked
    with pytest.raises(PinLocked):
        w.run(accounts.set_pin, member_id=m, account_id=account.id, pin="246800", current_pin="135790")
    clock.advance(minutes=accounts.PIN_LOCK_MINUTES + 1)
    assert w.pay(m, "1.00", "p4", pin="135790").data["amount"] == "1.00"
    with pytest.raises(PinIncorrect):
        w.run(accounts.set_pin, member_id=m, account_id=account.id, pin="246800", current_pin="111111")
    w.run(accounts.set_pin, member_id=m, account_id=account.id, pin="246800", current_pin="135790")
    assert w.pay(m, "1.00", "p5", pin="246800").data["amount"] == "1.00"
    with pytest.raises(NotFound):
        w.run(accounts.set_pin, member_id=w.members[1], account_id=account.id, pin="111111", current_pin=None)


def test_a_retried_payment_does_not_need_the_pin_again(db: Database, clock: FrozenClock) -> None:
    w = make_wallet_world(db, require_pin=True)
    m = w.members[0]
    w.top_up(m, "10.00", "t1")
    w.run(accounts.set_pin, member_id=m, account_id=w.account(m).id, pin="135790", current_pin=None)
    first = w.pay(m, "1.00", "p1", pin="135790")
    again = w.run(
        payments.pay,
        data=PayIn(member_id=m, wallet_type="gift", amount=Decimal("1.00")),
        key="p1",
        hold=False,
    )
    assert again.replayed and again.data == first.data


def test_wallet_point_types_stay_out_of_the_points_product(w: WalletWorld) -> None:
    from huiyuan.points import config, reads, service

    m = w.members[0]
    w.top_up(m, "10.00", "t1")
    with w.db.unit_of_work(w.actor.scope) as s:
        assert config.list_point_types(s) == []
        assert reads.member_summary(s, m).balances == []
        assert reads.liability(s).points == 0
        assert reads.list_entries(s, m, before_id=None, limit=10).rows == []
        with pytest.raises(ValidationFailed):
            service.grant(
                s, actor=w.actor, member_id=m, key="g1", point_type="w.gift.p", amount=1, reason="x"
            )
    with w.db.unit_of_work(w.actor.scope, write=False) as s:
        # The ledger itself keeps the wallet's money like any points.
        pt = ledger.point_type_by_code(s, w.brand_id, "w.gift.p")
        assert pt.kind == "wallet" and pt.transferable and pt.expiry_policy == {"kind": "never"}
