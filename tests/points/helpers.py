"""Shared set-up and checks for the points ledger tests.

``make_points_brand`` builds a brand, its point types and a few members through the real services
(point types are added as rows); ``check_ledger`` reads every account, entry and lot of a brand and
asserts the ledger's invariants, returning what it read so callers can compare further.
"""

from __future__ import annotations

import itertools
import threading
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from huiyuan.kit.clock import FrozenClock, get_clock, set_clock
from huiyuan.kit.db import Database
from huiyuan.kit.scope import SYSTEM, Principal, system_for_brand
from huiyuan.members import service as members
from huiyuan.members.schemas import MemberEnroll
from huiyuan.points import ledger
from huiyuan.points.models import (
    PointAccount,
    PointEntry,
    PointEntryLot,
    PointLot,
    PointOperation,
    PointReservation,
    PointType,
)
from huiyuan.tenancy import service as tenancy

T0 = datetime(2026, 1, 31, 4, 0, tzinfo=UTC)  # 12:00 in Asia/Shanghai

# Lots expire at the end of the local day 30 days after they were earned.
MONTHLY = {"kind": "relative", "days": 30, "round_to": "end_of_day"}
# Same, plus two grace days and half of what expires carried into a new lot.
DECAYING = {"kind": "relative", "days": 30, "round_to": "end_of_day", "grace_days": 2, "decay_ratio": 0.5}

_codes = itertools.count(1)


@contextmanager
def frozen_clock(at: datetime = T0) -> Iterator[FrozenClock]:
    """Install a ``FrozenClock`` for the block and put the previous clock back afterwards."""
    before = get_clock()
    clock = FrozenClock(at)
    set_clock(clock)
    try:
        yield clock
    finally:
        set_clock(before)


@dataclass
class PointsBrand:
    db: Database
    brand_id: int
    actor: Principal
    members: list[int] = field(default_factory=list)

    def run(self, fn: Callable[..., Any], **kwargs: Any) -> Any:
        """Call a ledger verb in a transaction of its own (rolled back if it raises)."""
        with self.db.unit_of_work(self.actor.scope) as s:
            return fn(s, actor=self.actor, **kwargs)

    def earn(self, member: int, amount: int, key: str, point_type: str = "pts", **kw: Any) -> Any:
        kw.setdefault("source_type", "order")
        return self.run(ledger.earn, member_id=member, point_type=point_type, amount=amount, key=key, **kw)

    def spend(self, member: int, amount: int, key: str, point_type: str = "pts", **kw: Any) -> Any:
        kw.setdefault("source_type", "mall")
        return self.run(ledger.spend, member_id=member, point_type=point_type, amount=amount, key=key, **kw)

    def account(self, member: int, point_type: str = "pts") -> PointAccount:
        with self.db.unit_of_work(self.actor.scope, write=False) as s:
            pt = ledger.point_type_by_code(s, self.brand_id, point_type)
            found = s.scalars(
                select(PointAccount).where(
                    PointAccount.member_id == member, PointAccount.point_type_id == pt.id
                )
            ).one()
            s.expunge(found)
            return found

    def balance(self, member: int, point_type: str = "pts") -> dict[str, int]:
        return ledger.balance_of(self.account(member, point_type))

    def lot(self, lot_id: int) -> PointLot:
        with self.db.unit_of_work(self.actor.scope, write=False) as s:
            found = s.get(PointLot, lot_id)
            assert found is not None
            s.expunge(found)
            return found

    def lots(self, member: int, point_type: str = "pts") -> list[PointLot]:
        account_id = self.account(member, point_type).id
        with self.db.unit_of_work(self.actor.scope, write=False) as s:
            found = list(
                s.scalars(select(PointLot).where(PointLot.account_id == account_id).order_by(PointLot.id))
            )
            s.expunge_all()
            return found

    def entries(self, **where: Any) -> list[PointEntry]:
        with self.db.unit_of_work(self.actor.scope, write=False) as s:
            stmt = select(PointEntry).order_by(PointEntry.id)
            for name, value in where.items():
                stmt = stmt.where(getattr(PointEntry, name) == value)
            found = list(s.scalars(stmt))
            s.expunge_all()
            return found

    def moves(self, entry_id: int) -> list[tuple[int, int]]:
        """(lot id, amount) of an entry's lot moves, in the order they were written."""
        with self.db.unit_of_work(self.actor.scope, write=False) as s:
            rows = s.execute(
                select(PointEntryLot.lot_id, PointEntryLot.amount)
                .where(PointEntryLot.entry_id == entry_id)
                .order_by(PointEntryLot.id)
            ).all()
            return [(lot_id, amount) for lot_id, amount in rows]


def make_points_brand(
    db: Database,
    *,
    members_count: int = 2,
    pts_policy: dict[str, Any] | None = None,
    pending_days: int = 0,
) -> PointsBrand:
    """A brand with two point types and ``members_count`` members.

    ``pts``: spendable, transferable, ``MONTHLY`` expiry (or ``pts_policy``); ``dec``: spendable,
    not transferable, ``DECAYING`` expiry.
    """
    code = f"p{next(_codes)}{uuid.uuid4().hex[:8]}"
    with db.unit_of_work() as s:
        brand = tenancy.create_brand(s, actor=SYSTEM, code=code, name=code.upper(), member_number_prefix="P")
        brand_id = brand.id
    actor = system_for_brand(brand_id)
    world = PointsBrand(db=db, brand_id=brand_id, actor=actor)
    with db.unit_of_work(actor.scope) as s:
        s.add(
            PointType(
                brand_id=brand_id,
                code="pts",
                name="积分",
                kind="spendable",
                expiry_policy=pts_policy or MONTHLY,
                pending_days=pending_days,
                transferable=True,
            )
        )
        s.add(
            PointType(
                brand_id=brand_id,
                code="dec",
                name="衰减积分",
                kind="spendable",
                expiry_policy=DECAYING,
                transferable=False,
            )
        )
        for n in range(members_count):
            member = members.enroll_member(
                s, actor=actor, data=MemberEnroll(enroll_channel="store", name=f"m{n}")
            )
            world.members.append(member.id)
    return world


def race(n: int, work: Callable[[int], Any]) -> list[Any]:
    """Run ``work(i)`` in ``n`` threads released together; results (or exceptions) in index order."""
    barrier = threading.Barrier(n)
    out: list[Any] = [None] * n

    def run(i: int) -> None:
        barrier.wait()
        try:
            out[i] = work(i)
        except Exception as exc:  # collected and asserted on by the caller
            out[i] = exc

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return out


def set_policy(world: PointsBrand, point_type: str, policy: dict[str, Any]) -> None:
    with world.db.unit_of_work(world.actor.scope) as s:
        pt = ledger.point_type_by_code(s, world.brand_id, point_type)
        pt.expiry_policy = policy


# -- invariants -----------------------------------------------------------------------------------

ENTRY_FIELDS = (
    "account_id",
    "kind",
    "amount",
    "d_available",
    "d_pending",
    "d_frozen",
    "d_reserved",
    "d_debt",
)


@dataclass
class LedgerSnapshot:
    """Everything of one brand's ledger, as plain tuples."""

    accounts: dict[int, dict[str, int]]
    entries: dict[int, tuple[Any, ...]]
    entry_lots: dict[int, tuple[int, int, int]]
    lots: dict[int, dict[str, Any]]
    reservations: dict[int, tuple[int, int, str, datetime]]  # account id, amount, status, expires_at
    operations: int

    @property
    def held(self) -> dict[int, int]:
        """Points held by open reservations, per account."""
        out: dict[int, int] = defaultdict(int)
        for account_id, amount, status, _expires_at in self.reservations.values():
            if status == "held":
                out[account_id] += amount
        return out


ACCOUNT_FIELDS = (
    "member_id",
    "point_type_id",
    "available",
    "pending",
    "frozen",
    "reserved",
    "debt",
    "earned_total",
    "spent_total",
    "expired_total",
)
LOT_FIELDS = (
    "account_id",
    "state",
    "amount",
    "remaining",
    "reversed_amount",
    "forgiven_amount",
    "expires_at",
    "activates_at",
)


def _rows(session: Session, model: Any, brand_id: int, fields: tuple[str, ...]) -> dict[int, tuple[Any, ...]]:
    stmt = select(model.id, *(getattr(model, f) for f in fields)).where(model.brand_id == brand_id)
    return {row[0]: tuple(row[1:]) for row in session.execute(stmt)}


def read_ledger(db: Database, brand_id: int, *, with_totals: bool = True) -> LedgerSnapshot:
    """Read and check a brand's ledger; ``with_totals`` also compares ``ledger.account_totals``."""
    scope = system_for_brand(brand_id).scope
    with db.unit_of_work(scope, write=False) as s:
        accounts = {
            i: dict(zip(ACCOUNT_FIELDS, row, strict=True))
            for i, row in _rows(s, PointAccount, brand_id, ACCOUNT_FIELDS).items()
        }
        entries = _rows(s, PointEntry, brand_id, ENTRY_FIELDS)
        entry_lots = _rows(s, PointEntryLot, brand_id, ("entry_id", "lot_id", "amount"))
        lots = {
            i: dict(zip(LOT_FIELDS, row, strict=True))
            for i, row in _rows(s, PointLot, brand_id, LOT_FIELDS).items()
        }
        reservations = _rows(s, PointReservation, brand_id, ("account_id", "amount", "status", "expires_at"))
        operations = s.scalar(select(func.count()).where(PointOperation.brand_id == brand_id)) or 0
        totals = (
            {account_id: ledger.account_totals(s, account_id) for account_id in accounts}
            if with_totals
            else {}
        )
    snap = LedgerSnapshot(
        accounts=accounts,
        entries=entries,
        entry_lots=entry_lots,  # type: ignore[arg-type]
        lots=lots,
        reservations=reservations,  # type: ignore[arg-type]
        operations=operations,
    )
    _assert_invariants(snap, totals)
    return snap


def check_ledger(db: Database, brand_id: int) -> LedgerSnapshot:
    """Assert every invariant of a brand's ledger; returns the snapshot it checked."""
    return read_ledger(db, brand_id)


def _assert_invariants(snap: LedgerSnapshot, totals: dict[int, dict[str, int]]) -> None:
    sums: dict[int, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for account_id, kind, amount, d_av, d_pe, d_fr, d_re, d_de in snap.entries.values():
        acc = sums[account_id]
        assert amount == d_av + d_pe + d_fr, (account_id, kind)
        acc["amount"] += amount
        acc["available"] += d_av
        acc["pending"] += d_pe
        acc["frozen"] += d_fr
        acc["reserved"] += d_re
        acc["debt"] += d_de
        if kind in ("expire", "carry"):
            acc["expired"] -= amount
    lot_moves: dict[int, int] = defaultdict(int)
    for entry_id, lot_id, amount in snap.entry_lots.values():
        assert entry_id in snap.entries
        lot_moves[lot_id] += amount
    in_lots: dict[int, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for lot_id, lot in snap.lots.items():
        assert 0 <= lot["remaining"] <= lot["amount"], (lot_id, lot)
        assert lot["remaining"] == lot_moves[lot_id], f"lot {lot_id}: remaining != Σ its moves"
        assert 0 <= lot["forgiven_amount"] <= lot["reversed_amount"] <= lot["amount"], (lot_id, lot)
        if lot["state"] == "expired":
            assert lot["remaining"] == 0, (lot_id, lot)
        in_lots[lot["account_id"]][lot["state"]] += lot["remaining"]
    held = snap.held
    for account_id, acc in snap.accounts.items():
        mine = sums[account_id]
        for bucket in ("available", "pending", "frozen", "reserved", "debt"):
            assert acc[bucket] >= 0, (account_id, bucket, acc)
            assert acc[bucket] == mine[bucket], (account_id, bucket, acc, dict(mine))
        balance = acc["available"] + acc["pending"] + acc["frozen"]
        assert balance == mine["amount"], (account_id, acc)
        assert acc["available"] == in_lots[account_id]["active"], (account_id, acc, dict(in_lots[account_id]))
        assert acc["pending"] == in_lots[account_id]["pending"], (account_id, acc)
        assert acc["frozen"] == in_lots[account_id]["frozen"], (account_id, acc)
        assert acc["reserved"] == held.get(account_id, 0), (account_id, acc)
        assert acc["expired_total"] == mine["expired"], (account_id, acc)
        if account_id not in totals:
            continue
        # The ledger's own sums agree with the ones computed here.
        t = totals[account_id]
        assert t["entries_balance"] == balance
        assert (t["entries_available"], t["entries_pending"], t["entries_frozen"]) == (
            acc["available"],
            acc["pending"],
            acc["frozen"],
        )
        assert (t["entries_reserved"], t["entries_debt"]) == (acc["reserved"], acc["debt"])
        assert t["lots_active"] + t["lots_pending"] + t["lots_frozen"] == balance
        assert t["lots_expired"] == 0
