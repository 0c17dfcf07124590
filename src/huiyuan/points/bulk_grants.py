"""Set-based points grants: many ``ledger.earn`` calls of one brand written together (the upgrade
gifts of a batch of tier evaluations, through ``benefits.grant_many``).

Every grant writes what ``ledger.earn`` writes for it, row for row: one ``PointOperation`` under its
key with the request hash of ``ledger.earn_digest`` and the result ``ledger.earn`` stores (the
balance after the grant included), one lot, one ``earn`` entry and its lot move, the account cache
raised, one ``points.earned`` event. What differs is how: members, point types, accounts and earlier
operations are read for the whole batch with a handful of queries, and the rows are written with
executemany statements.

Grants this path does not take go through ``ledger.earn`` one by one, after the others and in their
order, and so do exactly what it does: a key used before (a replay, or a mismatch that raises) or
twice in the batch, a non-positive amount, an unknown or retired point type, a missing or closed
member (``ledger.earn`` raises), an account with a refund debt (new points repay it first), and an
account with lots past their expiry or holds past their timeout (``ledger.earn`` settles it first).

Concurrency as in ``ledger.earn`` and ``points.bulk``: accounts are created if missing and locked in
id order, earlier operations are looked up under the locks, and the operations are inserted with
``ON CONFLICT DO NOTHING``, so a key another writer took meanwhile goes to ``ledger.earn``, which
replays it. Nothing here commits.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from huiyuan.kit.bulkinsert import add_to_columns, executemany_rows, insert_returning_ids
from huiyuan.kit.clock import utcnow
from huiyuan.kit.scope import Principal
from huiyuan.members.models import Member
from huiyuan.points import expiry_policy, ledger
from huiyuan.points.bulk import (
    ACCOUNTS,
    CHUNK,
    ENTRIES,
    EVENTS,
    LOTS,
    MOVES,
    OPERATIONS,
    create_accounts,
    dialect_insert,
    set_results,
)
from huiyuan.points.ledger.core import _tz
from huiyuan.points.models import (
    PointLot,
    PointReservation,
    PointType,
)


@dataclass(frozen=True)
class PointsGrant:
    """The arguments of one ``ledger.earn`` call (kind ``earn``, earned now)."""

    member_id: int
    point_type: str
    amount: int
    key: str
    source_type: str
    source_id: str | None = None
    reason: str | None = None
    funded_by: str = "brand"
    pending_days: int | None = None

    def digest(self) -> str:
        return ledger.earn_digest(
            kind="earn",
            member_id=self.member_id,
            point_type=self.point_type,
            amount=self.amount,
            source_type=self.source_type,
            source_id=self.source_id,
            store_id=None,
            funded_by=self.funded_by,
            rule_id=None,
            reason=self.reason,
            earned_at=None,
            pending_days=self.pending_days,
        )


def _chunks(values: Sequence[Any]) -> list[Sequence[Any]]:
    return [values[i : i + CHUNK] for i in range(0, len(values), CHUNK)]


def earn_many(
    session: Session, *, actor: Principal, grants: Sequence[PointsGrant]
) -> list[ledger.LedgerResult]:
    """``ledger.earn`` for each grant (one brand), written set-based; the results in ``grants`` order."""
    brand_id = actor.scope.require_brand()
    results: list[ledger.LedgerResult | None] = [None] * len(grants)
    now = utcnow()
    types = {pt.code: pt for pt in session.scalars(select(PointType).where(PointType.brand_id == brand_id))}
    member_ids = sorted({g.member_id for g in grants})
    open_members: set[int] = set()
    for chunk in _chunks(member_ids):
        open_members.update(
            session.scalars(select(Member.id).where(Member.id.in_(chunk), Member.status != "closed"))
        )
    taken: list[int] = []
    seen_keys: set[str] = set()
    for i, g in enumerate(grants):
        pt = types.get(g.point_type)
        fits = g.amount > 0 and pt is not None and pt.status == "active" and g.member_id in open_members
        if fits and g.key not in seen_keys:
            taken.append(i)
        seen_keys.add(g.key)

    # Accounts: create the missing ones, lock all in id order; settle-needing ones go one by one.
    pairs = sorted({(grants[i].member_id, types[grants[i].point_type].id) for i in taken})
    accounts: dict[tuple[int, int], dict[str, Any]] = {}
    if pairs:
        create_accounts(session, brand_id, pairs, now)
        wanted = set(pairs)
        ids: list[int] = []
        for chunk in _chunks(sorted({m for m, _ in pairs})):
            ids += [
                account_id
                for account_id, m, t in session.execute(
                    select(ACCOUNTS.c.id, ACCOUNTS.c.member_id, ACCOUNTS.c.point_type_id).where(
                        ACCOUNTS.c.brand_id == brand_id, ACCOUNTS.c.member_id.in_(chunk)
                    )
                )
                if (m, t) in wanted
            ]
        # Locked in one id order across chunks, like every writer of accounts: no lock cycles.
        for chunk in _chunks(sorted(ids)):
            for row in session.execute(
                select(ACCOUNTS).where(ACCOUNTS.c.id.in_(chunk)).order_by(ACCOUNTS.c.id).with_for_update()
            ):
                accounts[(row.member_id, row.point_type_id)] = dict(row._mapping)
    unsettled = _accounts_to_settle(session, [a["id"] for a in accounts.values()], now)
    taken = [
        i
        for i in taken
        if (a := accounts[(grants[i].member_id, types[grants[i].point_type].id)])["debt"] == 0
        and a["id"] not in unsettled
    ]

    # Keys used before (looked up under the account locks, as ``ledger.earn`` does) replay one by one.
    used: set[str] = set()
    for chunk in _chunks([grants[i].key for i in taken]):
        used.update(
            session.scalars(
                select(OPERATIONS.c.key).where(OPERATIONS.c.brand_id == brand_id, OPERATIONS.c.key.in_(chunk))
            )
        )
    taken = [i for i in taken if grants[i].key not in used]
    label = actor.label[:120]
    op_ids: dict[str, int] = {}
    op_rows = [
        {
            "brand_id": brand_id,
            "key": grants[i].key,
            "kind": "earn",
            "request_hash": grants[i].digest(),
            "member_id": grants[i].member_id,
            "result": {},
            "actor": label,
            "created_at": now,
        }
        for i in taken
    ]
    for chunk in _chunks(op_rows):
        for op_id, key in session.execute(
            dialect_insert(session)(OPERATIONS)
            .on_conflict_do_nothing(index_elements=["brand_id", "key"])
            .returning(OPERATIONS.c.id, OPERATIONS.c.key),
            list(chunk),
        ):
            op_ids[key] = op_id
    taken = [i for i in taken if grants[i].key in op_ids]
    if taken:
        _write(
            session,
            brand_id=brand_id,
            grants=grants,
            taken=taken,
            types=types,
            accounts=accounts,
            op_ids=op_ids,
            label=label,
            now=now,
            results=results,
        )

    for i, g in enumerate(grants):
        if results[i] is None:
            results[i] = ledger.earn(
                session,
                actor=actor,
                member_id=g.member_id,
                point_type=g.point_type,
                amount=g.amount,
                key=g.key,
                source_type=g.source_type,
                source_id=g.source_id,
                reason=g.reason,
                funded_by=g.funded_by,
                pending_days=g.pending_days,
            )
    return [r for r in results if r is not None]


def _accounts_to_settle(session: Session, account_ids: list[int], now: Any) -> set[int]:
    """Accounts with lots past their expiry or holds past their timeout (``ledger.earn`` settles them)."""
    found: set[int] = set()
    for chunk in _chunks(sorted(account_ids)):
        found.update(
            session.scalars(
                select(PointLot.account_id)
                .where(
                    PointLot.account_id.in_(chunk),
                    PointLot.state.in_(("active", "frozen", "pending")),
                    PointLot.expires_at.is_not(None),
                    PointLot.expires_at <= now,
                )
                .distinct()
            )
        )
        found.update(
            session.scalars(
                select(PointReservation.account_id)
                .where(
                    PointReservation.account_id.in_(chunk),
                    PointReservation.status == "held",
                    PointReservation.expires_at <= now,
                )
                .distinct()
            )
        )
    return found


def _write(
    session: Session,
    *,
    brand_id: int,
    grants: Sequence[PointsGrant],
    taken: list[int],
    types: dict[str, PointType],
    accounts: dict[tuple[int, int], dict[str, Any]],
    op_ids: dict[str, int],
    label: str,
    now: Any,
    results: list[ledger.LedgerResult | None],
) -> None:
    tz = _tz(session, brand_id)
    expiries = {
        code: expiry_policy.expiry_for(expiry_policy.parse_policy(pt.expiry_policy), now, tz)
        for code, pt in types.items()
        if any(grants[i].point_type == code for i in taken)
    }
    lot_rows: list[dict[str, Any]] = []
    entry_rows: list[dict[str, Any]] = []
    balances: list[dict[str, int]] = []
    deltas: dict[int, dict[str, int]] = {}
    for i in taken:
        g = grants[i]
        pt = types[g.point_type]
        account = accounts[(g.member_id, pt.id)]
        days = pt.pending_days if g.pending_days is None else g.pending_days
        activates_at = now + timedelta(days=days) if days > 0 else None
        pending = activates_at is not None and activates_at > now
        expiry = expiries[g.point_type]
        lot_rows.append(
            {
                "brand_id": brand_id,
                "account_id": account["id"],
                "member_id": g.member_id,
                "point_type_id": pt.id,
                "amount": g.amount,
                "remaining": g.amount,
                "state": "pending" if pending else "active",
                "earned_at": now,
                "activates_at": activates_at,
                "expires_at": expiry.effective,
                "nominal_expires_at": expiry.nominal,
                "source_type": g.source_type,
                "source_id": g.source_id,
                "store_id": None,
                "funded_by": g.funded_by,
                "rule_id": None,
                "unit_value": pt.fair_value,
                "frozen_reason": None,
                "reversed_amount": 0,
                "forgiven_amount": 0,
                "created_at": now,
            }
        )
        entry_rows.append(
            {
                "brand_id": brand_id,
                "operation_id": op_ids[g.key],
                "account_id": account["id"],
                "member_id": g.member_id,
                "point_type_id": pt.id,
                "kind": "earn",
                "amount": g.amount,
                "d_available": 0 if pending else g.amount,
                "d_pending": g.amount if pending else 0,
                "d_frozen": 0,
                "d_reserved": 0,
                "d_debt": 0,
                "reason": g.reason,
                "source_type": g.source_type,
                "source_id": g.source_id,
                "store_id": None,
                "reservation_id": None,
                "reverses_entry_id": None,
                "actor": label,
                "occurred_at": now,
                "created_at": now,
            }
        )
        # The balance each result reports is the account's right after its own grant.
        account["pending" if pending else "available"] += g.amount
        balances.append({k: account[k] for k in ("available", "pending", "frozen", "reserved", "debt")})
        d = deltas.setdefault(account["id"], {"available": 0, "pending": 0, "earned_total": 0})
        d["pending" if pending else "available"] += g.amount
        d["earned_total"] += g.amount

    lot_ids = insert_returning_ids(session, LOTS, lot_rows)
    entry_ids = insert_returning_ids(session, ENTRIES, entry_rows)
    executemany_rows(
        session,
        MOVES,
        [
            {"brand_id": brand_id, "entry_id": e, "lot_id": lot, "amount": row["amount"]}
            for e, lot, row in zip(entry_ids, lot_ids, lot_rows, strict=True)
        ],
    )
    add_to_columns(session, ACCOUNTS, list(deltas.items()), also={"updated_at": now})
    for i, entry_id, lot_id, lot, balance in zip(taken, entry_ids, lot_ids, lot_rows, balances, strict=True):
        g = grants[i]
        results[i] = ledger.LedgerResult(
            operation_id=op_ids[g.key],
            kind="earn",
            member_id=g.member_id,
            point_type=g.point_type,
            amount=g.amount,
            entries=[entry_id],
            lots=[lot_id],
            balance=balance,
            extra={
                "lot_id": lot_id,
                "state": lot["state"],
                "expires_at": lot["expires_at"].isoformat() if lot["expires_at"] else None,
            },
        )
    # One executemany, at the driver on SQLite (as set-based earning stores its results).
    set_results(
        session,
        [(result.operation_id, result.to_json()) for i in taken if (result := results[i]) is not None],
    )
    executemany_rows(
        session,
        EVENTS,
        [
            {
                "type": "points.earned",
                "brand_id": brand_id,
                "aggregate_type": "member",
                "aggregate_id": str(grants[i].member_id),
                "payload": {
                    "member_id": grants[i].member_id,
                    "point_type": grants[i].point_type,
                    "point_type_kind": types[grants[i].point_type].kind,
                    "amount": grants[i].amount,
                    "lot_id": lot_id,
                    "state": lot["state"],
                    "source_type": grants[i].source_type,
                    "source_id": grants[i].source_id,
                    "operation_id": op_ids[grants[i].key],
                },
                "occurred_at": now,
                "attempts": 0,
                "next_attempt_at": None,
            }
            for i, lot_id, lot in zip(taken, lot_ids, lot_rows, strict=True)
        ],
    )
