"""The per-lot sweeps of due work (expiry with decay carry-over, activation of pending lots,
timed-out holds) and the invariant totals of an account."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from huiyuan.kit.scope import Principal
from huiyuan.points.ledger.core import (
    _check,
    _entry,
    _expire_lot,
    _hash,
    _lock,
    _Op,
    _release,
    _repay_debt,
    _start,
)
from huiyuan.points.models import (
    PointAccount,
    PointEntry,
    PointLot,
    PointReservation,
)


def _sweep_op(session: Session, actor: Principal, brand_id: int, kind: str, marker: str) -> _Op:
    digest = _hash({"op": kind, "marker": marker})
    return _start(
        session,
        actor=actor,
        brand_id=brand_id,
        key=f"{kind}:{marker}",
        kind=kind,
        member_id=None,
        digest=digest,
    )


def expire_due(
    session: Session,
    *,
    actor: Principal,
    now: datetime,
    after_lot_id: int = 0,
    limit: int = 1000,
) -> tuple[int, int, int]:
    """Expire up to ``limit`` due lots with id > ``after_lot_id``; returns (lots, points, last id).

    Idempotent: an expired lot is skipped, so a re-run or a resumed run expires nothing twice.
    """
    brand_id = actor.scope.require_brand()
    lots = list(
        session.scalars(
            select(PointLot)
            .where(
                PointLot.brand_id == brand_id,
                PointLot.id > after_lot_id,
                PointLot.state.in_(("active", "frozen", "pending")),
                PointLot.expires_at.is_not(None),
                PointLot.expires_at <= now,
            )
            .order_by(PointLot.id)
            .limit(limit)
        )
    )
    if not lots:
        return 0, 0, after_lot_id
    op = _sweep_op(session, actor, brand_id, "expire", f"{now.isoformat()}:{lots[0].id}-{lots[-1].id}")
    op.now = now
    points = 0
    accounts: dict[int, PointAccount] = {}
    for account_id in sorted({lot.account_id for lot in lots}):
        accounts[account_id] = _lock(session, account_id)
    for lot in lots:
        session.refresh(lot)
        if lot.state == "expired":
            continue
        points += _expire_lot(session, op, accounts[lot.account_id], lot)
    for account in accounts.values():
        _check(account)
    session.flush()
    op.row.result = {"lots": len(lots), "points": points}
    return len(lots), points, lots[-1].id


def activate_due(
    session: Session,
    *,
    actor: Principal,
    now: datetime,
    after_lot_id: int = 0,
    limit: int = 1000,
) -> tuple[int, int, int]:
    """Make pending lots whose return window closed spendable; returns (lots, points, last id)."""
    brand_id = actor.scope.require_brand()
    lots = list(
        session.scalars(
            select(PointLot)
            .where(
                PointLot.brand_id == brand_id,
                PointLot.id > after_lot_id,
                PointLot.state == "pending",
                PointLot.activates_at <= now,
            )
            .order_by(PointLot.id)
            .limit(limit)
        )
    )
    if not lots:
        return 0, 0, after_lot_id
    op = _sweep_op(session, actor, brand_id, "activate", f"{now.isoformat()}:{lots[0].id}-{lots[-1].id}")
    op.now = now
    points = 0
    # Every account first, in id order, like ``expire_due`` and ``transfer``: no lock cycles.
    accounts = {aid: _lock(session, aid) for aid in sorted({lot.account_id for lot in lots})}
    for lot in lots:
        account = accounts[lot.account_id]
        session.refresh(lot)
        if lot.state != "pending":
            continue
        lot.state = "active"
        if lot.remaining:
            _entry(
                session,
                op,
                account,
                "activate",
                d_pending=-lot.remaining,
                d_available=lot.remaining,
                source_type="lot",
                source_id=str(lot.id),
            )
            points += lot.remaining
        _repay_debt(session, op, account, lot)
        _check(account)
    session.flush()
    op.row.result = {"lots": len(lots), "points": points}
    return len(lots), points, lots[-1].id


def release_due_reservations(session: Session, *, actor: Principal, now: datetime, limit: int = 500) -> int:
    """Release reservations whose hold timed out; returns how many."""
    brand_id = actor.scope.require_brand()
    due = list(
        session.scalars(
            select(PointReservation)
            .where(
                PointReservation.brand_id == brand_id,
                PointReservation.status == "held",
                PointReservation.expires_at <= now,
            )
            .order_by(PointReservation.id)
            .limit(limit)
        )
    )
    if not due:
        return 0
    op = _sweep_op(session, actor, brand_id, "timeout", f"{now.isoformat()}:{due[0].id}-{due[-1].id}")
    op.now = now
    count = 0
    # Every account first, in id order, like ``expire_due`` and ``transfer``: no lock cycles.
    accounts = {aid: _lock(session, aid) for aid in sorted({r.account_id for r in due})}
    for reservation in due:
        account = accounts[reservation.account_id]
        session.refresh(reservation)
        if reservation.status != "held":
            continue
        _release(session, op, account, reservation, reason="reservation timed out")
        _check(account)
        count += 1
    session.flush()
    op.row.result = {"released": count}
    return count


def account_totals(session: Session, account_id: int) -> dict[str, int]:
    """Σ of the entries' bucket deltas and Σ lot remaining (the invariants the cache must match)."""
    sums = session.execute(
        select(
            func.coalesce(func.sum(PointEntry.amount), 0),
            func.coalesce(func.sum(PointEntry.d_available), 0),
            func.coalesce(func.sum(PointEntry.d_pending), 0),
            func.coalesce(func.sum(PointEntry.d_frozen), 0),
            func.coalesce(func.sum(PointEntry.d_reserved), 0),
            func.coalesce(func.sum(PointEntry.d_debt), 0),
        ).where(PointEntry.account_id == account_id)
    ).one()
    lots = session.execute(
        select(PointLot.state, func.coalesce(func.sum(PointLot.remaining), 0))
        .where(PointLot.account_id == account_id)
        .group_by(PointLot.state)
    ).all()
    by_state = {state: int(total) for state, total in lots}
    return {
        "entries_balance": int(sums[0]),
        "entries_available": int(sums[1]),
        "entries_pending": int(sums[2]),
        "entries_frozen": int(sums[3]),
        "entries_reserved": int(sums[4]),
        "entries_debt": int(sums[5]),
        "lots_active": by_state.get("active", 0),
        "lots_pending": by_state.get("pending", 0),
        "lots_frozen": by_state.get("frozen", 0),
        "lots_expired": by_state.get("expired", 0),
    }
