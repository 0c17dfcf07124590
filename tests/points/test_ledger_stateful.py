"""The points ledger as a Hypothesis state machine, on both databases.

Every example gets a fresh brand (two or three members, the ``pts`` and decaying ``dec`` point
types of ``tests.points.helpers``) in the test's database and a frozen clock of its own. The rules
call every verb (each in its own transaction), move the clock, run the sweeps and retry earlier
requests under their keys; after every step the invariant re-reads the brand's whole ledger and
checks it against the ledger's own rules and a small model kept here:

* buckets == Σ entry deltas == Σ remaining of the lots in the matching state, nothing negative,
  every lot's remaining == Σ its moves and within 0..amount (``helpers.check_ledger``);
* entries and lot moves, once seen, never change or disappear;
* a refused request or a retry leaves the ledger exactly as it was;
* per account, from the results the verbs returned: ``earned_total``, ``spent_total`` and
  available + pending + frozen + reserved + expired − debt
  == earned + received − sent − spent − taken by refunds − debt added;
* an account a verb touched at time *t* has no lot left unexpired past *t* and no reservation
  left held past *t*; after the sweeps at *t*, the same holds for the whole brand, and no pending
  lot is left due.

The clock moves two ways: ``advance`` runs the ledger's per-lot sweeps (``ledger.expire_due``
and friends) or none; ``advance_and_run_the_jobs`` runs the jobs the worker runs (``points.expire``
over the set-based ``sweeps.expire_due_bulk``, ``points.activate``, ``points.release_reservations``)
and checks that the set-based expiry leaves exactly what the per-lot one would have left from the
same state (accounts, every lot, the carry-over lots).
"""

from __future__ import annotations

import math
import os
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
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
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from huiyuan.jobs.context import JobContext
from huiyuan.jobs.registry import get_job
from huiyuan.kit.clock import FrozenClock, get_clock, set_clock
from huiyuan.kit.db import Database
from huiyuan.kit.errors import IdempotencyMismatch, ValidationFailed
from huiyuan.points import ledger
from huiyuan.points.ledger import InsufficientPoints, LedgerResult, PointsNotAllowed, ReservationClosed
from huiyuan.points.models import PointAccount, PointLot, PointType
from tests.points.helpers import (
    ACCOUNT_FIELDS,
    LOT_FIELDS,
    T0,
    LedgerSnapshot,
    PointsBrand,
    check_ledger,
    make_points_brand,
    read_ledger,
)

# More for a deeper local run: HUIYUAN_LEDGER_EXAMPLES=2000 pytest tests/points/test_ledger_stateful.py
EXAMPLES = int(os.environ.get("HUIYUAN_LEDGER_EXAMPLES", "200"))
STEPS = 10

# Refusals a caller must expect; each must leave no trace.
EXPECTED = (InsufficientPoints, ReservationClosed, ValidationFailed, PointsNotAllowed)

DAY = 24 * 60
members = st.integers(0, 2)
point_types = st.sampled_from(("pts", "dec"))
picks = st.integers(0, 1_000)
shares = st.sampled_from((0.25, 0.5, 1.0))


@dataclass
class Model:
    """What the verbs reported for one account."""

    earned: int = 0  # earn, positive adjust
    spent: int = 0  # spend, negative adjust, confirm; less restores
    received: int = 0
    sent: int = 0
    reversed: int = 0  # taken out of lots by refunds
    debt_added: int = 0


@dataclass
class Done:
    """A request that succeeded, for retries: ``changed`` makes it a different request."""

    fn: Callable[..., LedgerResult]
    kwargs: dict[str, Any]
    result: dict[str, Any]
    changed: dict[str, Any] | None


@dataclass
class _Expected:
    """What the per-lot expiry did from a state (then rolled back)."""

    lots_before: int  # the highest lot id before it ran
    lots: int
    points: int
    outcome: dict[str, Any]


class _Undo(Exception):
    def __init__(self, expected: _Expected) -> None:
        super().__init__("rolled back on purpose")
        self.expected = expected


def _expiry_outcome(session: Session, brand_id: int, lots_before: int) -> dict[str, Any]:
    """Everything an expiry may change, comparable across the two paths: every account row, every
    lot that existed before (by id), and the lots written since (decay carry-overs, whose ids
    differ between a rolled-back run and a committed one on PostgreSQL) as a sorted list. The lot
    moves need no comparison of their own: ``check_ledger`` holds each lot's remaining to Σ its
    moves, and the buckets to Σ the entries."""
    accounts = {
        row.id: tuple(getattr(row, f) for f in ACCOUNT_FIELDS)
        for row in session.execute(
            select(PointAccount.id, *(getattr(PointAccount, f) for f in ACCOUNT_FIELDS)).where(
                PointAccount.brand_id == brand_id
            )
        )
    }
    fields = (*LOT_FIELDS, "source_type", "source_id", "frozen_reason")
    old: dict[int, tuple[Any, ...]] = {}
    new: list[tuple[Any, ...]] = []
    for row in session.execute(
        select(PointLot.id, *(getattr(PointLot, f) for f in fields)).where(PointLot.brand_id == brand_id)
    ):
        values = tuple(row[1:])
        if row.id <= lots_before:
            old[row.id] = values
        elif row.source_type == "carry" and int(row.source_id) > lots_before:
            new.append((*values[:-2], "a new lot", values[-1]))  # carried from a carry-over lot
        else:
            new.append(values)
    return {"accounts": accounts, "lots": old, "new_lots": sorted(new, key=repr)}


class LedgerMachine(RuleBasedStateMachine):
    db: Database  # set by the test

    def __init__(self) -> None:
        super().__init__()
        self.clock = FrozenClock(T0)
        self.previous_clock = get_clock()
        set_clock(self.clock)
        self.pb: PointsBrand | None = None
        self.type_codes: dict[int, str] = {}
        self.n = 0
        self.model: dict[tuple[int, str], Model] = defaultdict(Model)
        self.earn_lots: list[tuple[int, int]] = []  # (lot id, amount)
        self.spend_entries: list[tuple[int, int]] = []  # (entry id, amount)
        self.reservations: list[str] = []
        self.done: list[Done] = []
        self.touched: dict[tuple[int, str], datetime] = {}
        self.swept: datetime | None = None
        self.last: LedgerSnapshot | None = None
        self.traceless = False

    # -- plumbing ---------------------------------------------------------------------------------

    @initialize(count=st.integers(2, 3))
    def open_brand(self, count: int) -> None:
        self.pb = make_points_brand(self.db, members_count=count)
        with self.db.unit_of_work(self.pb.actor.scope, write=False) as s:
            self.type_codes = {pt.id: pt.code for pt in s.scalars(select(PointType))}

    def teardown(self) -> None:
        set_clock(self.previous_clock)
        if self.pb is not None:
            check_ledger(self.db, self.pb.brand_id)  # with the ledger's own ``account_totals``

    @property
    def brand(self) -> PointsBrand:
        assert self.pb is not None
        return self.pb

    def _member(self, i: int) -> int:
        return self.brand.members[i % len(self.brand.members)]

    def _key(self) -> str:
        self.n += 1
        return f"k{self.n}"

    def _call(
        self, fn: Callable[..., LedgerResult], changed: dict[str, Any] | None = None, **kwargs: Any
    ) -> LedgerResult | None:
        try:
            result: LedgerResult = self.brand.run(fn, **kwargs)
        except EXPECTED:
            self.traceless = True
            return None
        if result.replayed:  # only confirm and release repeat their (derived) key here
            self.traceless = True
            return None
        self.done.append(Done(fn=fn, kwargs=kwargs, result=result.to_json(), changed=changed))
        now = self.clock.now()
        self.touched[(result.member_id, result.point_type)] = now
        if "to_member_id" in result.extra:
            self.touched[(result.extra["to_member_id"], result.point_type)] = now
        return result

    # -- verbs ------------------------------------------------------------------------------------

    @rule(m=members, pt=point_types, amount=st.integers(1, 100), pending=st.booleans())
    def earn(self, m: int, pt: str, amount: int, pending: bool) -> None:
        member = self._member(m)
        r = self._call(
            ledger.earn,
            {"amount": amount + 1},
            member_id=member,
            point_type=pt,
            amount=amount,
            key=self._key(),
            source_type="order",
            source_id=f"O{self.n}",
            pending_days=3 if pending else None,
        )
        if r is not None:
            self.model[(member, pt)].earned += amount
            self.earn_lots.append((r.extra["lot_id"], amount))

    @rule(m=members, pt=point_types, amount=st.integers(1, 80))
    def spend(self, m: int, pt: str, amount: int) -> None:
        member = self._member(m)
        r = self._call(
            ledger.spend,
            {"amount": amount + 1},
            member_id=member,
            point_type=pt,
            amount=amount,
            key=self._key(),
            source_type="mall",
        )
        if r is not None:
            self.model[(member, pt)].spent += amount
            self.spend_entries.append((r.entries[-1], amount))

    @rule(m=members, pt=point_types, amount=st.integers(-30, 30).filter(bool))
    def adjust(self, m: int, pt: str, amount: int) -> None:
        member = self._member(m)
        r = self._call(
            ledger.adjust,
            {"reason": "another reason"},
            member_id=member,
            point_type=pt,
            amount=amount,
            key=self._key(),
            reason="correction",
        )
        if r is None:
            return
        if amount > 0:
            self.model[(member, pt)].earned += amount
            self.earn_lots.append((r.extra["lot_id"], amount))
        else:
            self.model[(member, pt)].spent -= amount
            self.spend_entries.append((r.entries[-1], -amount))

    @rule(m=members, pt=point_types, amount=st.integers(1, 60), ttl=st.sampled_from((5, 60, 3 * DAY)))
    def reserve(self, m: int, pt: str, amount: int, ttl: int) -> None:
        key = self._key()
        r = self._call(
            ledger.reserve,
            {"ttl_minutes": ttl + 1},
            member_id=self._member(m),
            point_type=pt,
            amount=amount,
            key=key,
            ttl_minutes=ttl,
        )
        if r is not None:
            self.reservations.append(key)

    @precondition(lambda self: self.reservations)
    @rule(pick=picks)
    def confirm(self, pick: int) -> None:
        key = self.reservations[pick % len(self.reservations)]
        r = self._call(ledger.confirm, reservation_key=key)
        if r is not None:
            self.model[(r.member_id, r.point_type)].spent += r.amount
            self.spend_entries.append((r.entries[-1], r.amount))

    @precondition(lambda self: self.reservations)
    @rule(pick=picks)
    def release(self, pick: int) -> None:
        self._call(ledger.release, reservation_key=self.reservations[pick % len(self.reservations)])

    @precondition(lambda self: self.earn_lots)
    @rule(pick=picks, share=shares)
    def reverse_lot(self, pick: int, share: float) -> None:
        lot_id, granted = self.earn_lots[pick % len(self.earn_lots)]
        amount = max(1, math.ceil(granted * share))
        r = self._call(
            ledger.reverse_lot,
            {"amount": amount + 1},
            lot_id=lot_id,
            amount=amount,
            key=self._key(),
            reason="refund",
        )
        if r is not None:
            model = self.model[(r.member_id, r.point_type)]
            debt, forgiven = r.extra["debt_added"], r.extra["forgiven"]
            assert 0 <= debt + forgiven <= amount
            model.reversed += amount - debt - forgiven
            model.debt_added += debt

    @precondition(lambda self: self.spend_entries)
    @rule(pick=picks, share=shares)
    def restore_entry(self, pick: int, share: float) -> None:
        entry_id, drawn = self.spend_entries[pick % len(self.spend_entries)]
        amount = max(1, math.ceil(drawn * share))
        r = self._call(
            ledger.restore_entry,
            {"amount": amount + 1},
            entry_id=entry_id,
            amount=amount,
            key=self._key(),
            reason="refund",
        )
        if r is not None:
            self.model[(r.member_id, r.point_type)].spent -= amount

    @rule(m=members, pt=point_types, unfreeze=st.booleans())
    def freeze(self, m: int, pt: str, unfreeze: bool) -> None:
        self._call(
            ledger.freeze,
            {"reason": "another reason"},
            member_id=self._member(m),
            point_type=pt,
            key=self._key(),
            reason="risk check",
            unfreeze=unfreeze,
        )

    @rule(
        m=members,
        step=st.integers(1, 2),
        pt=st.sampled_from(("pts", "pts", "pts", "dec")),
        amount=st.integers(1, 60),
    )
    def transfer(self, m: int, step: int, pt: str, amount: int) -> None:
        sender, receiver = self._member(m), self._member(m + step)
        r = self._call(
            ledger.transfer,
            {"amount": amount + 1},
            from_member_id=sender,
            to_member_id=receiver,
            point_type=pt,
            amount=amount,
            key=self._key(),
        )
        if r is not None:
            self.model[(sender, pt)].sent += amount
            self.model[(receiver, pt)].received += amount

    # -- time -------------------------------------------------------------------------------------

    @rule(
        minutes=st.sampled_from((1, 20, DAY, 3 * DAY, 10 * DAY, 35 * DAY, 70 * DAY)),
        sweep=st.booleans(),
        chunk=st.sampled_from((1, 1000)),
    )
    def advance(self, minutes: int, sweep: bool, chunk: int) -> None:
        self.clock.advance(minutes=minutes)
        now = self.clock.now()
        self.swept = None
        if not sweep:
            self.traceless = True
            return
        for job in (ledger.expire_due, ledger.activate_due):
            after = 0
            while True:
                count, _points, after = self.brand.run(job, now=now, after_lot_id=after, limit=chunk)
                if count == 0:
                    break
        while self.brand.run(ledger.release_due_reservations, now=now, limit=chunk):
            pass
        self.swept = now

    @rule(
        minutes=st.sampled_from((1, DAY, 3 * DAY, 10 * DAY, 35 * DAY, 70 * DAY)),
        chunk=st.sampled_from((1, 2, 1000)),
    )
    def advance_and_run_the_jobs(self, minutes: int, chunk: int) -> None:
        """The production path: the ``points.expire`` job (set-based, ``sweeps.expire_due_bulk``),
        then ``points.activate`` and ``points.release_reservations``, in chunks that commit one by
        one. The expiry must leave the ledger exactly as the per-lot path would have from the same
        state: that path runs first in a transaction that is rolled back, and both are compared."""
        self.clock.advance(minutes=minutes)
        now = self.clock.now()
        self.swept = None
        expected = self._per_lot_expiry(now, chunk)
        done = self._job("points.expire", now, chunk)
        with self.db.unit_of_work(self.brand.actor.scope, write=False) as s:
            got = _expiry_outcome(s, self.brand.brand_id, expected.lots_before)
        assert (done["lots"], done["points"]) == (expected.lots, expected.points)
        assert got == expected.outcome, "the set-based expiry left another ledger than the per-lot path"
        self._job("points.activate", now, chunk)
        self._job("points.release_reservations", now, chunk)
        self.swept = now

    def _per_lot_expiry(self, now: datetime, chunk: int) -> _Expected:
        try:
            with self.db.unit_of_work(self.brand.actor.scope) as s:
                lots_before = s.scalar(select(func.coalesce(func.max(PointLot.id), 0))) or 0
                after, lots, points = 0, 0, 0
                while True:
                    count, got, after = ledger.expire_due(
                        s, actor=self.brand.actor, now=now, after_lot_id=after, limit=chunk
                    )
                    if count == 0:
                        break
                    lots, points = lots + count, points + got
                outcome = _expiry_outcome(s, self.brand.brand_id, lots_before)
                raise _Undo(_Expected(lots_before, lots, points, outcome))
        except _Undo as undo:
            return undo.expected

    def _job(self, kind: str, now: datetime, chunk: int) -> dict[str, Any]:
        job = get_job(kind)
        assert job is not None
        ctx = JobContext(
            db=self.db,
            run_id=0,
            kind=kind,
            brand_id=self.brand.brand_id,
            params={"at": now.isoformat(), "chunk": chunk},
            actor=self.brand.actor,
        )
        ctx.progress = lambda *_args, **_kw: None  # type: ignore[method-assign]
        result = job(ctx)
        assert result is not None
        return dict(result)

    # -- retries ----------------------------------------------------------------------------------

    @precondition(lambda self: self.done)
    @rule(pick=picks)
    def retry_same_request(self, pick: int) -> None:
        done = self.done[pick % len(self.done)]
        again = self.brand.run(done.fn, **done.kwargs)
        assert again.replayed
        assert again.to_json() == done.result
        self.traceless = True

    @precondition(lambda self: any(d.changed for d in self.done))
    @rule(pick=picks, other_verb=st.booleans())
    def reuse_key_for_another_request(self, pick: int, other_verb: bool) -> None:
        keyed = [d for d in self.done if d.changed]
        done = keyed[pick % len(keyed)]
        with pytest.raises(IdempotencyMismatch) as err:
            if other_verb:
                self.brand.run(
                    ledger.spend,
                    member_id=self._member(0),
                    point_type="pts",
                    amount=1,
                    key=done.kwargs["key"],
                    source_type="retry",
                )
            else:
                assert done.changed is not None
                self.brand.run(done.fn, **{**done.kwargs, **done.changed})
        assert err.value.code == "idempotency-key-reused"
        self.traceless = True

    # -- the invariant ----------------------------------------------------------------------------

    @invariant()
    def ledger_is_consistent(self) -> None:
        if self.pb is None:
            return
        snap = read_ledger(self.db, self.pb.brand_id, with_totals=False)
        last = self.last
        if last is not None:
            for entry_id, row in last.entries.items():
                assert snap.entries.get(entry_id) == row, f"entry {entry_id} changed"
            for move_id, row in last.entry_lots.items():
                assert snap.entry_lots.get(move_id) == row, f"lot move {move_id} changed"
            if self.traceless:
                assert snap == last, "a refused request or a retry changed the ledger"
        self.traceless = False
        self.last = snap

        for account_id, acc in snap.accounts.items():
            code = self.type_codes[acc["point_type_id"]]
            model = self.model[(acc["member_id"], code)]
            assert acc["earned_total"] == model.earned, (account_id, acc, model)
            assert acc["spent_total"] == model.spent, (account_id, acc, model)
            held = acc["available"] + acc["pending"] + acc["frozen"] + acc["reserved"]
            booked = held + acc["expired_total"] - acc["debt"]
            reported = model.earned + model.received - model.sent - model.spent - model.reversed
            assert booked == reported - model.debt_added, (account_id, acc, model)

            touched = self.touched.get((acc["member_id"], code))
            if touched is not None:
                self._nothing_due(snap, touched, account_id)
        if self.swept is not None:
            self._nothing_due(snap, self.swept, None, pending_too=True)

    @staticmethod
    def _nothing_due(
        snap: LedgerSnapshot, at: datetime, account_id: int | None, pending_too: bool = False
    ) -> None:
        for lot_id, lot in snap.lots.items():
            if account_id is not None and lot["account_id"] != account_id:
                continue
            if lot["state"] != "expired" and lot["expires_at"] is not None:
                assert lot["expires_at"] > at, f"lot {lot_id} is past its expiry but {lot['state']}"
            if pending_too and lot["state"] == "pending":
                assert lot["activates_at"] > at, f"lot {lot_id} is still pending past its activation"
        for reservation_id, (owner, _amount, status, expires_at) in snap.reservations.items():
            if status == "held" and account_id in (None, owner):
                assert expires_at > at, f"reservation {reservation_id} is held past its timeout"


@pytest.mark.slow
def test_ledger_state_machine(db: Database) -> None:
    machine = type("LedgerOn" + db.engine.dialect.name.title(), (LedgerMachine,), {"db": db})
    run_state_machine_as_test(
        machine,
        settings=settings(
            max_examples=EXAMPLES,
            stateful_step_count=STEPS,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
        ),
    )
