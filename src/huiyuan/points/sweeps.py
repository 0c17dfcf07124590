"""Set-based expiry of due lots: the path the ``points.expire`` job takes over millions of lots.

``ledger.expire_due`` expires lots one by one through the ORM (and handles decay carry-over).
Here a chunk of due lots is expired with a handful of statements, whatever its size: the lots'
accounts are locked in id order, one ``expire`` entry per account and bucket is written with the
lot moves of every lot it empties, the lots are closed by one ``UPDATE … WHERE id IN (…)``, and the
account caches are lowered by one executemany. Lots of point types whose policy carries a share into
the next cycle (``decay_ratio`` > 0) are handed to ``ledger.expire_due``'s per-lot path, which writes
the carry-over lot.

The effect is exactly the per-lot path's: same buckets, same lot moves, the same invariants
(``tests/points/test_sweeps.py`` runs both on the same data and compares).
"""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime
from typing import Any

from sqlalchemy import Table, insert, select, update
from sqlalchemy.orm import Session

from huiyuan.kit.bulkinsert import add_to_columns, executemany_rows, insert_returning_ids
from huiyuan.kit.scope import Principal
from huiyuan.points import expiry_policy, ledger
from huiyuan.points.models import PointAccount, PointEntry, PointEntryLot, PointLot, PointOperation, PointType

# Plain tables: these statements are executemany over rows this module selected for one brand.
ACCOUNTS: Table = PointAccount.__table__  # type: ignore[assignment]
ENTRIES: Table = PointEntry.__table__  # type: ignore[assignment]
MOVES: Table = PointEntryLot.__table__  # type: ignore[assignment]
LOTS: Table = PointLot.__table__  # type: ignore[assignment]
OPERATIONS: Table = PointOperation.__table__  # type: ignore[assignment]


def _decaying_types(session: Session, brand_id: int) -> set[int]:
    decaying: set[int] = set()
    for type_id, policy in session.execute(
        select(PointType.id, PointType.expiry_policy).where(PointType.brand_id == brand_id)
    ):
        parsed = expiry_policy.parse_policy(policy)
        if float(getattr(parsed, "decay_ratio", 0) or 0) > 0:
            decaying.add(type_id)
    return decaying


def expire_due_bulk(
    session: Session, *, actor: Principal, now: datetime, after_lot_id: int = 0, limit: int = 5000
) -> tuple[int, int, int]:
    """Expire up to ``limit`` due lots with id > ``after_lot_id``; returns (lots, points, last id).

    Idempotent like ``ledger.expire_due``: only lots still active, pending or frozen are touched.
    """
    brand_id = actor.scope.require_brand()
    rows = session.execute(
        select(PointLot.id, PointLot.account_id, PointLot.point_type_id, PointLot.state, PointLot.remaining)
        .where(
            PointLot.brand_id == brand_id,
            PointLot.id > after_lot_id,
            PointLot.state.in_(("active", "frozen", "pending")),
            PointLot.expires_at.is_not(None),
            PointLot.expires_at <= now,
        )
        .order_by(PointLot.id)
        .limit(limit)
    ).all()
    if not rows:
        return 0, 0, after_lot_id
    last_id = rows[-1].id
    decaying = _decaying_types(session, brand_id)
    slow = [r for r in rows if r.point_type_id in decaying]
    fast = [r for r in rows if r.point_type_id not in decaying]

    points = 0
    if fast:
        points += _expire_fast(session, actor=actor, brand_id=brand_id, now=now, rows=fast)
    for r in slow:
        # Lots of decaying types go one by one through the ORM path, which writes the carry lot.
        _lots, got, _last = ledger.expire_due(session, actor=actor, now=now, after_lot_id=r.id - 1, limit=1)
        points += got
    return len(rows), points, last_id


def _expire_fast(session: Session, *, actor: Principal, brand_id: int, now: datetime, rows: list[Any]) -> int:
    account_ids = sorted({r.account_id for r in rows})
    # Lock the accounts (id order), then re-read the lots under the lock: a concurrent spend may have
    # drawn from them since the first read.
    session.execute(
        select(PointAccount.id)
        .where(PointAccount.id.in_(account_ids))
        .order_by(PointAccount.id)
        .with_for_update()
    )
    lots = session.execute(
        select(
            PointLot.id,
            PointLot.account_id,
            PointLot.member_id,
            PointLot.point_type_id,
            PointLot.state,
            PointLot.remaining,
        )
        .where(PointLot.id.in_([r.id for r in rows]), PointLot.state.in_(("active", "frozen", "pending")))
        .order_by(PointLot.id)
    ).all()
    if not lots:
        return 0
    op_key = f"expire:{now.isoformat()}:{lots[0].id}-{lots[-1].id}"
    op_id = session.execute(
        insert(OPERATIONS)
        .values(
            brand_id=brand_id,
            key=op_key,
            kind="expire",
            request_hash=ledger._hash({"key": op_key}),
            member_id=None,
            result={},
            actor=actor.label[:120],
            created_at=now,
        )
        .returning(OPERATIONS.c.id)
    ).scalar_one()

    # One entry per (account, bucket); its lot moves name every lot it emptied.
    groups: dict[tuple[int, str], list[Any]] = defaultdict(list)
    for lot in lots:
        if lot.remaining > 0:
            groups[(lot.account_id, lot.state)].append(lot)
    label = actor.label[:120]
    entry_rows = []
    for (account_id, state), members in groups.items():
        total = sum(lot.remaining for lot in members)
        first = members[0]
        entry_rows.append(
            {
                "brand_id": brand_id,
                "operation_id": op_id,
                "account_id": account_id,
                "member_id": first.member_id,
                "point_type_id": first.point_type_id,
                "kind": "expire",
                "amount": -total,
                "d_available": -total if state == "active" else 0,
                "d_pending": -total if state == "pending" else 0,
                "d_frozen": -total if state == "frozen" else 0,
                "d_reserved": 0,
                "d_debt": 0,
                "reason": None,
                "source_type": "lots",
                "source_id": f"{first.id}" if len(members) == 1 else f"{first.id}..{members[-1].id}",
                "store_id": None,
                "reservation_id": None,
                "reverses_entry_id": None,
                "actor": label,
                "occurred_at": now,
                "created_at": now,
            }
        )
    points = 0
    if entry_rows:
        entry_ids = insert_returning_ids(session, ENTRIES, entry_rows)
        moves: list[dict[str, int]] = []
        for entry_id, members in zip(entry_ids, groups.values(), strict=True):
            moves.extend(
                {"brand_id": brand_id, "entry_id": entry_id, "lot_id": lot.id, "amount": -lot.remaining}
                for lot in members
            )
        executemany_rows(session, MOVES, moves)
        per_account: dict[int, dict[str, int]] = defaultdict(lambda: {"a": 0, "p": 0, "f": 0})
        for (account_id, state), members in groups.items():
            total = sum(lot.remaining for lot in members)
            per_account[account_id][{"active": "a", "pending": "p", "frozen": "f"}[state]] += total
            points += total
        # Buckets go down by what expired; expired_total up by the same.
        add_to_columns(
            session,
            ACCOUNTS,
            [
                (
                    account_id,
                    {
                        "available": -d["a"],
                        "pending": -d["p"],
                        "frozen": -d["f"],
                        "expired_total": d["a"] + d["p"] + d["f"],
                    },
                )
                for account_id, d in per_account.items()
            ],
            also={"updated_at": now},
        )
    session.execute(
        update(LOTS).where(LOTS.c.id.in_([lot.id for lot in lots])).values(state="expired", remaining=0)
    )
    session.execute(
        update(OPERATIONS)
        .where(OPERATIONS.c.id == op_id)
        .values(result={"lots": len(lots), "points": points})
    )
    return points
