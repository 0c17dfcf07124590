"""The wallet as a Hypothesis state machine, on both databases.

Every example gets a fresh brand with one wallet type (spending order and bonus expiry drawn), two
top-up rules (a capped percentage, and a fixed bonus for the ``app`` channel with a higher
priority), two members and a frozen clock of its own. The rules top up, pay in one step, hold,
confirm, release, refund payments and top-ups, lock and unlock, move the clock (holds time out,
bonus expires) with or without the ledger's sweeps, and retry earlier requests under their keys.
After every step the invariant re-reads the wallet's rows and sub-ledgers and checks
(``tests.wallet.helpers.check_wallet``):

* the ledger's invariants on both sub-ledgers, nothing negative;
* payments, top-ups and refunds agree with the ledger, refunds and claw-backs are proportional,
  and per wallet the money in each sub-ledger is what the wallet rows say it must be;
* entries, once seen, never change; a refused request or a retry leaves everything as it was;
* a retry with the same key returns the first result; the same key with another request is refused.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Callable
from dataclasses import dataclass, replace
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from huiyuan.kit.clock import FrozenClock, get_clock, set_clock
from huiyuan.kit.db import Database
from huiyuan.kit.errors import Conflict, IdempotencyMismatch, NotFound, ValidationFailed
from huiyuan.points import ledger
from huiyuan.points.ledger import ReservationClosed
from huiyuan.wallet import accounts, configuration
from huiyuan.wallet.core import (
    HoldsOpen,
    InsufficientBalance,
    NothingRefundable,
    WalletLocked,
    WalletResult,
)
from huiyuan.wallet.schemas import TopUpRuleIn, WalletTypeIn
from tests.points.helpers import T0
from tests.wallet.helpers import WalletSnapshot, WalletWorld, make_wallet_world, read_wallet, wallet_type_ids

# More for a deeper local run: HUIYUAN_WALLET_EXAMPLES=2000 pytest tests/wallet/test_wallet_stateful.py
EXAMPLES = int(os.environ.get("HUIYUAN_WALLET_EXAMPLES", "200"))
STEPS = 6

# Refusals a caller must expect; each must leave no trace.
EXPECTED = (
    InsufficientBalance,
    WalletLocked,
    ReservationClosed,
    Conflict,
    NothingRefundable,
    ValidationFailed,
    HoldsOpen,
    NotFound,  # paying from a wallet not opened yet
)

DAY = 24 * 60
members = st.integers(0, 1)
picks = st.integers(0, 1_000)
fen = st.integers(1, 20_000)
_types = itertools.count(1)


def _yuan(units: int) -> str:
    return f"{Decimal(units) / 100:.2f}"


@dataclass
class Done:
    """A request that succeeded, for retries: ``changed`` makes it a different request."""

    call: Callable[..., WalletResult]
    kwargs: dict[str, Any]
    data: dict[str, Any]
    changed: dict[str, Any] | None


class WalletMachine(RuleBasedStateMachine):
    db: Database  # set by the test
    base: WalletWorld  # the brand, its store and members, shared by the examples of one test

    def __init__(self) -> None:
        super().__init__()
        self.clock = FrozenClock(T0)
        self.previous_clock = get_clock()
        set_clock(self.clock)
        self.ww: WalletWorld | None = None
        self.n = 0
        self.topups: list[str] = []
        self.payments: list[str] = []
        self.holds: list[str] = []
        self.done: list[Done] = []
        self.last: WalletSnapshot | None = None
        self.ids: tuple[int, int, int] | None = None
        self.traceless = False

    @initialize(
        order=st.sampled_from(("principal_first", "bonus_first")),
        expiry=st.sampled_from((None, 2)),
        opening=fen,
    )
    def open_wallet_type(self, order: str, expiry: int | None, opening: int) -> None:
        # A wallet type of its own per example (so fresh wallets for the same members): cheaper
        # than a brand per example, and nothing an example reads is shared with another.
        code = f"g{next(_types)}"
        self.ww = replace(self.base, wallet=code)
        with self.db.unit_of_work(self.base.actor.scope) as s:
            actor = self.base.actor
            configuration.create_type(
                s,
                actor=actor,
                data=WalletTypeIn(code=code, name=code, spend_order=order, bonus_expiry_days=expiry),  # type: ignore[arg-type]
            )
            for rule in (
                TopUpRuleIn(
                    code=f"{code}-pct",
                    name="12.5 %",
                    wallet_type=code,
                    bonus_kind="percent",
                    bonus_percent=Decimal("12.5"),
                    bonus_cap=Decimal("15"),
                    min_amount=Decimal("10"),
                ),
                TopUpRuleIn(
                    code=f"{code}-app",
                    name="app",
                    wallet_type=code,
                    bonus_kind="fixed",
                    bonus_fixed=Decimal("3.33"),
                    channels=["app"],
                    priority=1,
                ),
            ):
                configuration.create_rule(s, actor=actor, data=rule)
        # The first member starts with money, so payments and refunds have something to work on;
        # the second has no wallet until a top-up opens one.
        self.top_up(0, opening, app=False)

    def teardown(self) -> None:
        set_clock(self.previous_clock)

    @property
    def w(self) -> WalletWorld:
        assert self.ww is not None
        return self.ww

    def _key(self) -> str:
        self.n += 1
        return f"{self.w.wallet}.k{self.n}"  # keys are unique per brand, and the brand is shared

    def _call(
        self, call: Callable[..., WalletResult], changed: dict[str, Any] | None = None, **kwargs: Any
    ) -> WalletResult | None:
        try:
            result = call(**kwargs)
        except EXPECTED:
            self.traceless = True
            return None
        if result.replayed:  # confirm and release repeat their (derived) key
            self.traceless = True
            return None
        self.done.append(Done(call=call, kwargs=kwargs, data=result.data, changed=changed))
        return result

    # -- money in and out (Hypothesis draws the rules defined first more often) --------------------

    @rule(
        m=members,
        units=st.integers(1, 15_000),
        how=st.sampled_from(("pay", "hold", "hold+confirm", "hold+release")),
        ttl=st.sampled_from((5, 1440)),
    )
    def pay(self, m: int, units: int, how: str, ttl: int) -> None:
        key = self._key()
        hold = how != "pay"
        extra: dict[str, Any] = {"ttl_minutes": ttl} if hold else {}
        r = self._call(
            self.w.pay,
            {"amount": _yuan(units + 1)},
            member=self.w.members[m],
            amount=_yuan(units),
            key=key,
            hold=hold,
            order_ref=f"SO-{key}",
            **extra,
        )
        if r is None:
            return
        (self.holds if hold else self.payments).append(key)
        if "+" in how:  # settled at once, in a request of its own (a checkout that completes)
            self._settle(key, confirm=how.endswith("confirm"))

    @precondition(lambda self: self.holds)
    @rule(pick=picks, confirm=st.booleans())
    def settle(self, pick: int, confirm: bool) -> None:
        self._settle(self.holds[pick % len(self.holds)], confirm=confirm)

    def _settle(self, key: str, *, confirm: bool) -> None:
        r = self._call(self.w.confirm if confirm else self.w.release, key=key)
        if r is not None and confirm:
            self.payments.append(key)

    @precondition(lambda self: self.payments)
    @rule(pick=picks, share=st.sampled_from((None, 0.3, 0.5)))
    def refund_payment(self, pick: int, share: float | None) -> None:
        key = self.payments[pick % len(self.payments)]
        paid = next(d.data for d in self.done if d.data.get("key") == key)
        amount = None if share is None else _yuan(max(1, int(Decimal(paid["amount"]) * 100 * Decimal(share))))
        self._call(
            self.w.refund_payment, {"reason": "another"}, key=key, refund_key=self._key(), amount=amount
        )

    @precondition(lambda self: self.topups)
    @rule(pick=picks, share=st.sampled_from((None, 0.25, 0.5)))
    def refund_topup(self, pick: int, share: float | None) -> None:
        key = self.topups[pick % len(self.topups)]
        topped = next(d.data for d in self.done if d.data.get("key") == key)
        amount = (
            None if share is None else _yuan(max(1, int(Decimal(topped["amount"]) * 100 * Decimal(share))))
        )
        self._call(self.w.refund_topup, {"reason": "another"}, key=key, refund_key=self._key(), amount=amount)

    @rule(m=members, units=fen, app=st.booleans())
    def top_up(self, m: int, units: int, app: bool) -> None:
        key = self._key()
        r = self._call(
            self.w.top_up,
            {"amount": _yuan(units + 1)},
            member=self.w.members[m],
            amount=_yuan(units),
            key=key,
            channel="app" if app else "store",
            store=None if app else self.w.stores[0],
        )
        if r is not None:
            self.topups.append(key)

    @rule(m=members, locked=st.booleans())
    def lock_or_unlock(self, m: int, locked: bool) -> None:
        try:
            account = self.w.account(self.w.members[m])
        except Exception:  # no wallet yet
            self.traceless = True
            return
        if locked:
            self.w.run(accounts.lock, account_id=account.id, reason="risk review")
        else:
            self.w.run(accounts.unlock, account_id=account.id, reason="cleared")
        self.last = None  # the account row changed on purpose

    # -- time -------------------------------------------------------------------------------------

    @rule(minutes=st.sampled_from((1, 20, DAY, 3 * DAY)), sweep=st.booleans())
    def advance(self, minutes: int, sweep: bool) -> None:
        self.clock.advance(minutes=minutes)
        if not sweep:
            self.traceless = True
            return
        now = self.clock.now()
        with self.w.db.unit_of_work(self.w.actor.scope) as s:
            ledger.expire_due(s, actor=self.w.actor, now=now)
            ledger.release_due_reservations(s, actor=self.w.actor, now=now)

    # -- retries ----------------------------------------------------------------------------------

    @precondition(lambda self: self.done)
    @rule(pick=picks)
    def retry_same_request(self, pick: int) -> None:
        done = self.done[pick % len(self.done)]
        again = done.call(**done.kwargs)
        assert again.replayed
        assert again.data == done.data
        self.traceless = True

    @precondition(lambda self: any(d.changed for d in self.done))
    @rule(pick=picks, other_verb=st.booleans())
    def reuse_key_for_another_request(self, pick: int, other_verb: bool) -> None:
        keyed = [d for d in self.done if d.changed]
        done = keyed[pick % len(keyed)]
        key = done.kwargs.get("refund_key") or done.kwargs["key"]
        with pytest.raises(IdempotencyMismatch) as err:
            if other_verb:
                self.w.top_up(self.w.members[0], "1.00", key)
            else:
                assert done.changed is not None
                done.call(**{**done.kwargs, **done.changed})
        assert err.value.code == "idempotency-key-reused"
        self.traceless = True

    # -- the invariant ----------------------------------------------------------------------------

    @invariant()
    def wallet_is_consistent(self) -> None:
        if self.ww is None:
            return
        if self.ids is None:
            self.ids = wallet_type_ids(self.db, self.ww.brand_id, self.ww.wallet)
        snap = read_wallet(self.db, self.ww.brand_id, self.ww.wallet, ids=self.ids)
        last = self.last
        if last is not None:
            for entry_id, row in last.ledger.entries.items():
                assert snap.ledger.entries.get(entry_id) == row, f"entry {entry_id} changed"
            for move_id, row in last.ledger.entry_lots.items():
                assert snap.ledger.entry_lots.get(move_id) == row, f"lot move {move_id} changed"
            if self.traceless:
                assert snap == last, "a refused request or a retry changed the wallet"
        self.traceless = False
        self.last = snap


@pytest.mark.slow
def test_wallet_state_machine(db: Database) -> None:
    base = make_wallet_world(db, members_count=2, stores_count=1, wallet="seed")
    machine = type("WalletOn" + db.engine.dialect.name.title(), (WalletMachine,), {"db": db, "base": base})
    run_state_machine_as_test(
        machine,
        settings=settings(
            max_examples=EXAMPLES,
            stateful_step_count=STEPS,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
        ),
    )
