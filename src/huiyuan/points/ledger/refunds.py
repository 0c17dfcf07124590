"""Taking back what a refunded order earned (``reverse_lot``) and giving back what it spent
(``restore_entry``), with the policy for points already spent or expired."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from huiyuan.kit.errors import (
    NotFound,
    ValidationFailed,
    field_error,
)
from huiyuan.kit.scope import Principal
from huiyuan.points.ledger.core import (
    LedgerResult,
    _entry,
    _finish,
    _give_back,
    _hash,
    _lock,
    _moves_of,
    _replay,
    _settle_account,
    _spendable_lots,
    _start,
)
from huiyuan.points.models import (
    PointEntry,
    PointEntryLot,
    PointLot,
    PointType,
)


def reverse_lot(
    session: Session,
    *,
    actor: Principal,
    lot_id: int,
    amount: int,
    key: str,
    reason: str,
    source_type: str = "refund",
    source_id: str | None = None,
) -> LedgerResult:
    """Take back ``amount`` points a lot granted (a refunded order).

    Policy: the points come out of the lot itself first, whatever its state (pending, active,
    frozen); if the member already spent them, the rest comes from the member's other available
    points, soonest-expiring first; what still cannot be recovered becomes the account's *debt*,
    repaid from the next points that become active. Points of the lot that already expired are not
    taken twice: expiry already removed them, so that share is forgiven and recorded as such.
    """
    brand_id = actor.scope.require_brand()
    lot = session.get(PointLot, lot_id)
    if lot is None:
        raise NotFound(f"Lot {lot_id} was not found.")
    account = _lock(session, lot.account_id)
    pt = session.get(PointType, account.point_type_id)
    assert pt is not None
    digest = _hash(
        {
            "op": "reverse",
            "lot": lot_id,
            "amount": amount,
            "reason": reason,
            "source": [source_type, source_id],
        }
    )
    if (done := _replay(session, brand_id, key, "reverse", digest)) is not None:
        return done
    op = _start(
        session,
        actor=actor,
        brand_id=brand_id,
        key=key,
        kind="reverse",
        member_id=account.member_id,
        digest=digest,
    )
    _settle_account(session, op, account)
    # Settling may have expired this very lot: write that before re-reading the lot, or the refresh
    # would drop the change (an emptied lot gets no entry, so nothing else flushes it).
    session.flush()
    session.refresh(lot)
    reversible = lot.amount - lot.reversed_amount
    if amount <= 0 or amount > reversible:
        raise ValidationFailed(
            f"Between 1 and {reversible} points of this lot can still be reversed.",
            errors=[field_error("amount", f"1–{reversible}")],
        )
    lot.reversed_amount += amount
    left = amount
    from_lot = min(lot.remaining, left)
    if from_lot:
        _entry(
            session,
            op,
            account,
            "reverse",
            moves=[(lot, -from_lot)],
            held=(lot.state, -from_lot),
            reason=reason,
            source_type=source_type,
            source_id=source_id,
        )
        left -= from_lot
    expired_in_lot = -sum(
        session.scalars(
            select(PointEntryLot.amount)
            .join(PointEntry, PointEntry.id == PointEntryLot.entry_id)
            .where(PointEntryLot.lot_id == lot.id, PointEntry.kind == "expire")
        )
    )
    # Decay carried part of those into a new lot: the member still has them, so they are not forgiven.
    carried_from_lot = sum(
        session.scalars(
            select(PointEntry.amount).where(
                PointEntry.account_id == account.id,
                PointEntry.kind == "carry",
                PointEntry.source_type == "lot",
                PointEntry.source_id == str(lot.id),
            )
        )
    )
    forgiven = min(left, max(0, expired_in_lot - carried_from_lot - lot.forgiven_amount))
    if forgiven:
        # Expiry already took these points unused: nothing to reclaim and nothing owed.
        lot.forgiven_amount += forgiven
        left -= forgiven
        _entry(
            session,
            op,
            account,
            "reverse",
            reason=f"{forgiven} points had expired unused",
            source_type=source_type,
            source_id=source_id,
        )
    if left:
        moves: list[tuple[PointLot, int]] = []
        for other in _spendable_lots(session, account, op.now):
            if left == 0:
                break
            take = min(other.remaining, left)
            moves.append((other, -take))
            left -= take
        if moves:
            taken = -sum(n for _, n in moves)
            _entry(
                session,
                op,
                account,
                "reverse",
                d_available=-taken,
                moves=moves,
                reason=reason,
                source_type=source_type,
                source_id=source_id,
            )
    if left:
        _entry(
            session,
            op,
            account,
            "reverse",
            d_debt=left,
            reason=reason,
            source_type=source_type,
            source_id=source_id,
        )
    return _finish(session, op, account, pt, amount, debt_added=left, forgiven=forgiven)


def restore_entry(
    session: Session,
    *,
    actor: Principal,
    entry_id: int,
    amount: int,
    key: str,
    reason: str,
    source_type: str = "refund",
    source_id: str | None = None,
) -> LedgerResult:
    """Give back ``amount`` of the points a spend (or confirmed reservation) took, to the same lots.

    The points go back to the lots they were drawn from with those lots' own expiry, latest-drawn
    lot first (the longest-lived). A lot that expired meanwhile takes them back and expires them
    at once: a refund never revives expired points. At most what the entry drew, less what earlier
    restores gave back, can be restored.
    """
    brand_id = actor.scope.require_brand()
    entry = session.get(PointEntry, entry_id)
    if (
        entry is None
        or entry.kind not in ("spend", "confirm", "adjust")
        or (entry.kind == "adjust" and entry.amount > 0)
    ):
        raise NotFound(f"No spend entry {entry_id}.")
    account = _lock(session, entry.account_id)
    pt = session.get(PointType, account.point_type_id)
    assert pt is not None
    digest = _hash(
        {
            "op": "restore",
            "entry": entry_id,
            "amount": amount,
            "reason": reason,
            "source": [source_type, source_id],
        }
    )
    if (done := _replay(session, brand_id, key, "restore", digest)) is not None:
        return done
    op = _start(
        session,
        actor=actor,
        brand_id=brand_id,
        key=key,
        kind="restore",
        member_id=account.member_id,
        digest=digest,
    )
    _settle_account(session, op, account)
    drawn_entry_ids = [entry.id]
    if entry.kind == "confirm":
        reserve_entry = session.scalar(
            select(PointEntry.id).where(
                PointEntry.reservation_id == entry.reservation_id, PointEntry.kind == "reserve"
            )
        )
        assert reserve_entry is not None
        drawn_entry_ids = [reserve_entry]
    drawn: dict[int, tuple[PointLot, int]] = {}
    for lot, n in _moves_of(session, drawn_entry_ids):
        prev = drawn.get(lot.id, (lot, 0))[1]
        drawn[lot.id] = (lot, prev - n)
    restored_ids = session.scalars(
        select(PointEntry.id).where(PointEntry.reverses_entry_id == entry.id, PointEntry.kind == "restore")
    ).all()
    if restored_ids:
        for lot, n in _moves_of(session, list(restored_ids)):
            got_lot, was = drawn[lot.id]
            drawn[lot.id] = (got_lot, was - n)
    left_total = sum(n for _, n in drawn.values())
    if amount <= 0 or amount > left_total:
        raise ValidationFailed(
            f"Between 1 and {left_total} points of this entry can still be restored.",
            errors=[field_error("amount", f"1–{left_total}")],
        )
    back: list[tuple[PointLot, int]] = []
    left = amount
    # ``drawn`` is in draw order (soonest expiry first); a lot's id says nothing of its expiry
    # (transferred and carried lots are newer than lots that outlive them).
    for lot, n in reversed(list(drawn.values())):
        if left == 0:
            break
        give = min(n, left)
        if give:
            back.append((lot, give))
            left -= give
    _give_back(
        session,
        op,
        account,
        back,
        "restore",
        reverses_entry_id=entry.id,
        reason=reason,
        source_type=source_type,
        source_id=source_id,
    )
    account.spent_total -= amount
    return _finish(session, op, account, pt, amount)
