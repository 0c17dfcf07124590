"""Shared set-up and checks for the wallet tests.

``make_wallet_world`` builds a brand with stores, members and one wallet type through the real
services; ``WalletWorld`` calls the wallet's verbs each in a transaction of its own, the way a
request would. ``check_wallet`` reads the wallet's ledger rows and wallet rows and asserts:

* the ledger's own invariants on the wallet's sub-ledgers (``tests.points.helpers``): buckets ==
  Σ entries == Σ lot remaining, nothing negative, every lot within 0..amount;
* every payment: parts add up, refunds within the parts, its state agrees with its ledger holds;
* every top-up: its lots granted exactly its amount and bonus, refunds and claw-back agree with
  what the ledger took back, and the claw-back owed is exactly proportional;
* per wallet never re-bound: the money in the principal sub-ledger (in lots or held) equals
  top-ups − top-up refunds − payments still standing + payment refunds, and the bonus sub-ledger
  likewise (less what expired).
"""

from __future__ import annotations

import itertools
import uuid
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from sqlalchemy import func, select

from huiyuan.kit.db import Database
from huiyuan.kit.scope import SYSTEM, Principal, system_for_brand
from huiyuan.members import service as members
from huiyuan.members.schemas import MemberEnroll
from huiyuan.points.models import (
    PointAccount,
    PointEntry,
    PointEntryLot,
    PointLot,
    PointOperation,
    PointReservation,
)
from huiyuan.tenancy import service as tenancy
from huiyuan.wallet import accounts, configuration, payments, refunds
from huiyuan.wallet.core import WalletResult
from huiyuan.wallet.models import (
    WalletAccount,
    WalletBinding,
    WalletPayment,
    WalletRefund,
    WalletTopUp,
    WalletType,
)
from huiyuan.wallet.rules import proportional
from huiyuan.wallet.schemas import (
    BalanceOut,
    PayIn,
    RefundIn,
    ReserveIn,
    TopUpIn,
    TopUpRuleIn,
    WalletTypeIn,
)
from tests.points import helpers as points_helpers
from tests.points.helpers import ACCOUNT_FIELDS, ENTRY_FIELDS, LOT_FIELDS, LedgerSnapshot

_codes = itertools.count(1)


@dataclass
class WalletWorld:
    db: Database
    brand_id: int
    actor: Principal
    wallet: str
    members: list[int] = field(default_factory=list)
    stores: list[str] = field(default_factory=list)

    def run(self, fn: Callable[..., Any], **kwargs: Any) -> Any:
        """Call a wallet verb in a transaction of its own (rolled back if it raises)."""
        with self.db.unit_of_work(self.actor.scope) as s:
            return fn(s, actor=self.actor, **kwargs)

    def read(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        with self.db.unit_of_work(self.actor.scope, write=False) as s:
            return fn(s, *args, **kwargs)

    # -- verbs ------------------------------------------------------------------------------------

    def top_up(self, member: int, amount: str, key: str, **kw: Any) -> WalletResult:
        kw.setdefault("channel", "store")
        kw.setdefault("payment_ref", f"PAY-{key}")
        data = TopUpIn(member_id=member, wallet_type=self.wallet, amount=Decimal(amount), **kw)
        return self.run(payments.top_up, data=data, key=key)  # type: ignore[no-any-return]

    def pay(self, member: int, amount: str, key: str, *, hold: bool = False, **kw: Any) -> WalletResult:
        model = ReserveIn if hold else PayIn
        data = model(member_id=member, wallet_type=self.wallet, amount=Decimal(amount), **kw)
        return self.run(payments.pay, data=data, key=key, hold=hold)  # type: ignore[no-any-return]

    def confirm(self, key: str) -> WalletResult:
        return self.run(payments.settle, payment_key=key, confirm=True)  # type: ignore[no-any-return]

    def release(self, key: str) -> WalletResult:
        return self.run(payments.settle, payment_key=key, confirm=False)  # type: ignore[no-any-return]

    def refund_payment(self, key: str, refund_key: str, amount: str | None = None, **kw: Any) -> WalletResult:
        data = RefundIn(amount=Decimal(amount) if amount else None, reason=kw.pop("reason", "退货"), **kw)
        return self.run(refunds.refund_payment, payment_key=key, data=data, key=refund_key)  # type: ignore[no-any-return]

    def refund_topup(self, key: str, refund_key: str, amount: str | None = None, **kw: Any) -> WalletResult:
        data = RefundIn(amount=Decimal(amount) if amount else None, reason=kw.pop("reason", "退卡"), **kw)
        return self.run(refunds.refund_topup, topup_key=key, data=data, key=refund_key)  # type: ignore[no-any-return]

    def add_rule(self, code: str, **fields: Any) -> int:
        data = TopUpRuleIn(code=code, name=code, wallet_type=self.wallet, **fields)
        return self.run(configuration.create_rule, data=data).id  # type: ignore[no-any-return]

    # -- reads ------------------------------------------------------------------------------------

    def account(self, member: int) -> WalletAccount:
        with self.db.unit_of_work(self.actor.scope, write=False) as s:
            wt = s.scalars(select(WalletType).where(WalletType.code == self.wallet)).one()
            found = s.scalars(
                select(WalletAccount).where(
                    WalletAccount.member_id == member, WalletAccount.wallet_type_id == wt.id
                )
            ).one()
            s.expunge(found)
            return found

    def balance(self, member: int) -> BalanceOut:
        return self.read(lambda s: accounts.balance_of(s, self.account(member)))  # type: ignore[no-any-return]

    def yuan(self, member: int) -> tuple[str, str, str]:
        """(principal, bonus, held) as strings, for terse assertions."""
        b = self.balance(member)
        return str(b.principal), str(b.bonus), str(b.held)

    def wallet_type(self) -> WalletType:
        with self.db.unit_of_work(self.actor.scope, write=False) as s:
            wt = s.scalars(select(WalletType).where(WalletType.code == self.wallet)).one()
            s.expunge(wt)
            return wt


def make_wallet_world(
    db: Database,
    *,
    members_count: int = 2,
    stores_count: int = 2,
    wallet: str = "gift",
    **type_fields: Any,
) -> WalletWorld:
    """A brand with stores ``<brand>-s1`` …, members, and one wallet type ``wallet``."""
    code = f"w{next(_codes)}{uuid.uuid4().hex[:8]}"
    with db.unit_of_work() as s:
        brand_id = tenancy.create_brand(
            s, actor=SYSTEM, code=code, name=code.upper(), member_number_prefix="W"
        ).id
    actor = system_for_brand(brand_id)
    world = WalletWorld(db=db, brand_id=brand_id, actor=actor, wallet=wallet)
    with db.unit_of_work(actor.scope) as s:
        for i in range(stores_count):
            store = tenancy.create_store(s, actor=actor, code=f"{code}-s{i + 1}", name=f"store {i + 1}")
            world.stores.append(store.code)
        for n in range(members_count):
            member = members.enroll_member(
                s, actor=actor, data=MemberEnroll(enroll_channel="store", name=f"m{n}")
            )
            world.members.append(member.id)
        configuration.create_type(
            s, actor=actor, data=WalletTypeIn(code=wallet, name="礼品卡", **type_fields)
        )
    return world


# -- invariants -----------------------------------------------------------------------------------


@dataclass
class WalletSnapshot:
    ledger: LedgerSnapshot
    payments: dict[int, tuple[Any, ...]]
    topups: dict[int, tuple[Any, ...]]
    refunds: int
    accounts: dict[int, tuple[Any, ...]]


def _rows(
    conn: Any, model: Any, where: Any, fields: tuple[str, ...], *joins: Any
) -> dict[int, tuple[Any, ...]]:
    table = model.__table__
    stmt = select(table.c.id, *(table.c[f] for f in fields))
    for target, on in joins:
        stmt = stmt.join_from(table, target, on)
    return {row[0]: tuple(row[1:]) for row in conn.execute(stmt.where(where))}


PAYMENT_FIELDS = (
    "wallet_account_id",
    "amount",
    "principal_amount",
    "bonus_amount",
    "state",
    "principal_reservation_id",
    "bonus_reservation_id",
    "principal_entry_id",
    "bonus_entry_id",
    "refunded_principal",
    "refunded_bonus",
    "binding_id",
)
TOPUP_FIELDS = (
    "wallet_account_id",
    "amount",
    "bonus",
    "principal_lot_id",
    "bonus_lot_id",
    "principal_refunded",
    "cash_refunded",
    "bonus_reversed",
    "bonus_forgiven",
    "bonus_charged",
    "state",
    "binding_id",
)


def wallet_type_ids(db: Database, brand_id: int, wallet: str) -> tuple[int, int, int]:
    """(wallet type id, principal point type id, bonus point type id)."""
    wtt = WalletType.__table__
    with db.engine.connect() as conn:
        row = conn.execute(
            select(wtt.c.id, wtt.c.principal_point_type_id, wtt.c.bonus_point_type_id).where(
                wtt.c.brand_id == brand_id, wtt.c.code == wallet
            )
        ).one()
    return int(row[0]), int(row[1]), int(row[2])


def read_wallet(
    db: Database, brand_id: int, wallet: str, *, ids: tuple[int, int, int] | None = None
) -> WalletSnapshot:
    """Read one wallet type's rows and its sub-ledgers, and assert the invariants.

    Plain Core reads on one connection, as few as the checks allow: the state machine calls this
    after every step (``ids``: the wallet type's ids, known to the caller)."""
    pa, pe, pel, pl, pr = (
        m.__table__ for m in (PointAccount, PointEntry, PointEntryLot, PointLot, PointReservation)
    )
    wa, wb, wp, wtu, wr = (
        m.__table__ for m in (WalletAccount, WalletBinding, WalletPayment, WalletTopUp, WalletRefund)
    )
    wt_id, principal_type, bonus_type = ids or wallet_type_ids(db, brand_id, wallet)
    wt = WalletType(id=wt_id, principal_point_type_id=principal_type, bonus_point_type_id=bonus_type)
    types = (principal_type, bonus_type)
    with db.engine.connect() as conn:
        # The ledger accounts of the two point types (a small table); everything after goes through
        # an index of those accounts, so its cost does not grow with the brand (the state machine
        # shares one brand between its examples).
        point_accounts = {
            i: dict(zip(ACCOUNT_FIELDS, r, strict=True))
            for i, r in _rows(conn, PointAccount, pa.c.point_type_id.in_(types), ACCOUNT_FIELDS).items()
        }
        accounts_ids = list(point_accounts)
        entries = _rows(conn, PointEntry, pe.c.account_id.in_(accounts_ids), ENTRY_FIELDS)
        entry_lots = _rows(
            conn,
            PointEntryLot,
            pe.c.account_id.in_(accounts_ids),
            ("entry_id", "lot_id", "amount"),
            (pe, pe.c.id == pel.c.entry_id),
        )
        lots = {
            i: dict(zip(LOT_FIELDS, r, strict=True))
            for i, r in _rows(conn, PointLot, pl.c.account_id.in_(accounts_ids), LOT_FIELDS).items()
        }
        reservations = _rows(
            conn,
            PointReservation,
            pr.c.account_id.in_(accounts_ids),
            ("account_id", "amount", "status", "expires_at"),
        )
        mine = wa.c.wallet_type_id == wt.id
        counted = (
            select(func.count()).where(wb.c.wallet_account_id == wa.c.id).scalar_subquery(),
            select(func.count()).where(wr.c.wallet_account_id == wa.c.id).scalar_subquery(),
        )
        wallet_accounts: dict[int, tuple[Any, ...]] = {}
        bindings: dict[int, int] = {}
        refund_count = 0
        for aid, member_id, status, attempts, bound, refunded in conn.execute(
            select(wa.c.id, wa.c.member_id, wa.c.status, wa.c.pin_failed_attempts, *counted).where(mine)
        ):
            wallet_accounts[aid] = (member_id, status, attempts)
            bindings[aid] = bound
            refund_count += refunded
        operations = (
            conn.scalar(
                select(func.count())
                .select_from(PointOperation.__table__)
                .where(PointOperation.__table__.c.brand_id == brand_id)
            )
            or 0
        )
        pays = _rows(conn, WalletPayment, mine, PAYMENT_FIELDS, (wa, wa.c.id == wp.c.wallet_account_id))
        tops = _rows(conn, WalletTopUp, mine, TOPUP_FIELDS, (wa, wa.c.id == wtu.c.wallet_account_id))
    ledger = LedgerSnapshot(
        accounts=point_accounts,
        entries=entries,
        entry_lots=entry_lots,  # type: ignore[arg-type]
        lots=lots,
        reservations=reservations,  # type: ignore[arg-type]
        operations=operations,
    )
    points_helpers._assert_invariants(ledger, {})
    snap = WalletSnapshot(
        ledger=ledger, payments=pays, topups=tops, refunds=refund_count, accounts=wallet_accounts
    )
    _assert_wallet(snap, wt, bindings)
    return snap


def check_wallet(db: Database, brand_id: int, wallet: str = "gift") -> WalletSnapshot:
    return read_wallet(db, brand_id, wallet)


def _assert_wallet(snap: WalletSnapshot, wt: WalletType, bindings: dict[int, int]) -> None:
    led = snap.ledger
    # Per wallet account: what the wallet rows say the sub-ledgers must hold.
    expect: dict[int, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for payment_id, row in snap.payments.items():
        p = dict(zip(PAYMENT_FIELDS, row, strict=True))
        assert p["amount"] == p["principal_amount"] + p["bonus_amount"] > 0, (payment_id, p)
        assert 0 <= p["refunded_principal"] <= p["principal_amount"], (payment_id, p)
        assert 0 <= p["refunded_bonus"] <= p["bonus_amount"], (payment_id, p)
        refunded = p["refunded_principal"] + p["refunded_bonus"]
        if refunded:
            # Proportional, on running totals.
            assert p["refunded_principal"] == proportional(p["principal_amount"], refunded, p["amount"]), p
        for part in ("principal", "bonus"):
            units = p[f"{part}_amount"]
            rid = p[f"{part}_reservation_id"]
            if units == 0:
                assert rid is None and p[f"{part}_entry_id"] is None, (payment_id, p)
                continue
            consumed = True  # a one-step spend, or a confirmed hold (held money is still in the wallet)
            if rid is not None:
                _account, amount, status, _expires = led.reservations[rid]
                assert amount == units, (payment_id, p)
                if p["state"] == "held":
                    assert status in ("held", "released"), (payment_id, p, status)  # released: timed out
                elif p["state"] == "released":
                    assert status in ("held", "released"), (payment_id, p, status)  # held: past due
                else:
                    assert status == "confirmed", (payment_id, p, status)
                consumed = status == "confirmed"
            if p["state"] in ("confirmed", "refunded", "partially_refunded"):
                assert p[f"{part}_entry_id"] is not None, (payment_id, p)
            if consumed:
                expect[p["wallet_account_id"]][part] -= units - p[f"refunded_{part}"]
    for topup_id, row in snap.topups.items():
        t = dict(zip(TOPUP_FIELDS, row, strict=True))
        principal_lot = led.lots[t["principal_lot_id"]]
        assert principal_lot["amount"] == t["amount"], (topup_id, t)
        assert principal_lot["reversed_amount"] == t["principal_refunded"], (topup_id, t)
        assert 0 <= t["principal_refunded"] <= t["amount"], (topup_id, t)
        assert t["cash_refunded"] == t["principal_refunded"] - t["bonus_charged"] >= 0, (topup_id, t)
        clawed = t["bonus_reversed"] + t["bonus_forgiven"] + t["bonus_charged"]
        assert clawed == proportional(t["bonus"], t["principal_refunded"], t["amount"]), (topup_id, t)
        if t["bonus"]:
            bonus_lot = led.lots[t["bonus_lot_id"]]
            assert bonus_lot["amount"] == t["bonus"] <= t["amount"], (topup_id, t)
            assert bonus_lot["reversed_amount"] == t["bonus_reversed"], (topup_id, t)
        else:
            assert t["bonus_lot_id"] is None, (topup_id, t)
        expected_state = (
            "completed"
            if t["principal_refunded"] == 0
            else "refunded"
            if t["principal_refunded"] == t["amount"]
            else "partially_refunded"
        )
        assert t["state"] == expected_state, (topup_id, t)
        acc = expect[t["wallet_account_id"]]
        acc["principal"] += t["amount"] - t["principal_refunded"]
        acc["bonus"] += t["bonus"] - t["bonus_reversed"]
    by_member_type = {(a["member_id"], a["point_type_id"]): (i, a) for i, a in led.accounts.items()}
    for account_id, (member_id, _status, _attempts) in snap.accounts.items():
        if bindings.get(account_id, 0) != 1:
            continue  # re-bound: its money moved between members' sub-ledgers
        for part, pt_id in (("principal", wt.principal_point_type_id), ("bonus", wt.bonus_point_type_id)):
            found = by_member_type.get((member_id, pt_id))
            held = 0
            if found is not None:
                _i, a = found
                held = a["available"] + a["pending"] + a["frozen"] + a["reserved"]
                if part == "bonus":
                    held += a["expired_total"]
            assert held == expect[account_id][part], (account_id, part, held, dict(expect[account_id]))
