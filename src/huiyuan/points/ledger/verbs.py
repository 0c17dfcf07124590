"""The verbs that move points: earn, spend, checkout holds (reserve, confirm, release), freeze,
adjust and transfer (see ``huiyuan.points.ledger``)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from huiyuan.kit.errors import (
    Conflict,
    NotFound,
    ValidationFailed,
    field_error,
)
from huiyuan.kit.scope import Principal
from huiyuan.outbox.service import emit
from huiyuan.points import expiry_policy
from huiyuan.points.ledger.core import (
    LedgerResult,
    PointsNotAllowed,
    ReservationClosed,
    _account_id,
    _check,
    _entry,
    _finish,
    _hash,
    _lock,
    _member,
    _new_lot,
    _plan_draw,
    _release,
    _repay_debt,
    _replay,
    _settle_account,
    _spendable_lots,
    _start,
    _tz,
    balance_of,
    earn_digest,
    open_account,
    point_type_by_code,
)
from huiyuan.points.models import (
    PointLot,
    PointReservation,
    PointType,
)


def _require_positive(amount: int, verb: str) -> None:
    if amount <= 0:
        raise ValidationFailed(
            f"Points to {verb} must be positive.", errors=[field_error("amount", "must be > 0")]
        )


def earn(
    session: Session,
    *,
    actor: Principal,
    member_id: int,
    point_type: str,
    amount: int,
    key: str,
    source_type: str,
    source_id: str | None = None,
    reason: str | None = None,
    store_id: int | None = None,
    funded_by: str = "brand",
    rule_id: int | None = None,
    earned_at: datetime | None = None,
    pending_days: int | None = None,
    kind: str = "earn",
) -> LedgerResult:
    """Grant ``amount`` points as a new lot (pending for ``pending_days``, else active)."""
    brand_id = actor.scope.require_brand()
    _require_positive(amount, "grant")
    pt = point_type_by_code(session, brand_id, point_type)
    member = _member(session, member_id)
    digest = earn_digest(
        kind=kind,
        member_id=member_id,
        point_type=point_type,
        amount=amount,
        source_type=source_type,
        source_id=source_id,
        store_id=store_id,
        funded_by=funded_by,
        rule_id=rule_id,
        reason=reason,
        earned_at=earned_at,
        pending_days=pending_days,
    )
    account = open_account(session, brand_id=brand_id, member_id=member_id, point_type_id=pt.id)
    if (done := _replay(session, brand_id, key, kind, digest)) is not None:
        return done  # a retry gets its first result even if the member or type changed since
    if member.status == "closed":
        raise PointsNotAllowed("A closed member cannot earn points.")
    if pt.status != "active":
        raise PointsNotAllowed(f"Point type '{pt.code}' is retired and grants no new points.")
    op = _start(
        session, actor=actor, brand_id=brand_id, key=key, kind=kind, member_id=member_id, digest=digest
    )
    _settle_account(session, op, account)
    when = earned_at or op.now
    days = pt.pending_days if pending_days is None else pending_days
    activates_at = when + timedelta(days=days) if days > 0 else None
    pending = activates_at is not None and activates_at > op.now
    expiry = expiry_policy.expiry_for(
        expiry_policy.parse_policy(pt.expiry_policy), when, _tz(session, brand_id)
    )
    lot = _new_lot(
        session,
        op,
        account,
        pt,
        amount,
        earned_at=when,
        state="pending" if pending else "active",
        activates_at=activates_at,
        expiry=expiry,
        source_type=source_type,
        source_id=source_id,
        store_id=store_id,
        funded_by=funded_by,
        rule_id=rule_id,
    )
    _entry(
        session,
        op,
        account,
        kind,
        moves=[(lot, amount)],
        reason=reason,
        source_type=source_type,
        source_id=source_id,
        store_id=store_id,
        held=(lot.state, amount),
    )
    account.earned_total += amount
    _repay_debt(session, op, account, lot)
    session.flush()
    result = _finish(
        session,
        op,
        account,
        pt,
        amount,
        lot_id=lot.id,
        state=lot.state,
        expires_at=lot.expires_at.isoformat() if lot.expires_at else None,
    )
    emit(
        session,
        type="points.earned",
        brand_id=brand_id,
        aggregate_type="member",
        aggregate_id=member_id,
        payload={
            "member_id": member_id,
            "point_type": pt.code,
            "point_type_kind": pt.kind,
            "amount": amount,
            "lot_id": lot.id,
            "state": lot.state,
            "source_type": source_type,
            "source_id": source_id,
            "operation_id": result.operation_id,
        },
    )
    return result


def spend(
    session: Session,
    *,
    actor: Principal,
    member_id: int,
    point_type: str,
    amount: int,
    key: str,
    source_type: str,
    source_id: str | None = None,
    reason: str | None = None,
    store_id: int | None = None,
    kind: str = "spend",
) -> LedgerResult:
    """Take ``amount`` available points at once, soonest-expiring lots first."""
    brand_id = actor.scope.require_brand()
    _require_positive(amount, "spend")
    pt = point_type_by_code(session, brand_id, point_type)
    if not pt.spendable and kind != "adjust":  # an operator may correct growth value downwards
        raise PointsNotAllowed(f"Points of type '{pt.code}' cannot be spent.")
    digest = _hash(
        {
            "op": kind,
            "member": member_id,
            "type": point_type,
            "amount": amount,
            "source": [source_type, source_id],
            "store": store_id,
            "reason": reason,
        }
    )
    _member(session, member_id)
    account = open_account(session, brand_id=brand_id, member_id=member_id, point_type_id=pt.id)
    if (done := _replay(session, brand_id, key, kind, digest)) is not None:
        return done
    op = _start(
        session, actor=actor, brand_id=brand_id, key=key, kind=kind, member_id=member_id, digest=digest
    )
    _settle_account(session, op, account)
    moves = _plan_draw(_spendable_lots(session, account, op.now), amount)
    _entry(
        session,
        op,
        account,
        kind,
        d_available=-amount,
        moves=moves,
        reason=reason,
        source_type=source_type,
        source_id=source_id,
        store_id=store_id,
    )
    account.spent_total += amount
    return _finish(session, op, account, pt, amount)


def reserve(
    session: Session,
    *,
    actor: Principal,
    member_id: int,
    point_type: str,
    amount: int,
    key: str,
    order_ref: str | None = None,
    store_id: int | None = None,
    ttl_minutes: int | None = None,
) -> LedgerResult:
    """Hold points for a checkout; ``key`` also names the reservation for confirm and release."""
    brand_id = actor.scope.require_brand()
    _require_positive(amount, "reserve")
    pt = point_type_by_code(session, brand_id, point_type)
    if not pt.spendable:
        raise PointsNotAllowed(f"Points of type '{pt.code}' cannot be spent.")
    digest = _hash(
        {
            "op": "reserve",
            "member": member_id,
            "type": point_type,
            "amount": amount,
            "order": order_ref,
            "store": store_id,
            "ttl": ttl_minutes,
        }
    )
    _member(session, member_id)
    account = open_account(session, brand_id=brand_id, member_id=member_id, point_type_id=pt.id)
    if (done := _replay(session, brand_id, key, "reserve", digest)) is not None:
        return done
    op = _start(
        session, actor=actor, brand_id=brand_id, key=key, kind="reserve", member_id=member_id, digest=digest
    )
    _settle_account(session, op, account)
    moves = _plan_draw(_spendable_lots(session, account, op.now), amount)
    minutes = ttl_minutes if ttl_minutes is not None else pt.reservation_minutes
    if minutes <= 0:
        raise ValidationFailed(
            "A reservation must be held for at least a minute.",
            errors=[field_error("ttl_minutes", "must be > 0")],
        )
    reservation = PointReservation(
        brand_id=brand_id,
        key=key,
        account_id=account.id,
        member_id=member_id,
        amount=amount,
        status="held",
        order_ref=order_ref,
        store_id=store_id,
        expires_at=op.now + timedelta(minutes=minutes),
    )
    session.add(reservation)
    _entry(
        session,
        op,
        account,
        "reserve",
        d_available=-amount,
        d_reserved=amount,
        moves=moves,
        source_type="order" if order_ref else None,
        source_id=order_ref,
        store_id=store_id,
        reservation=reservation,
    )
    session.flush()
    return _finish(
        session,
        op,
        account,
        pt,
        amount,
        reservation_id=reservation.id,
        expires_at=reservation.expires_at.isoformat(),
    )


def _reservation(session: Session, brand_id: int, key: str) -> PointReservation:
    found = session.scalars(
        select(PointReservation).where(PointReservation.brand_id == brand_id, PointReservation.key == key)
    ).one_or_none()
    if found is None:
        raise NotFound(f"No reservation '{key}'.")
    return found


def confirm(session: Session, *, actor: Principal, reservation_key: str) -> LedgerResult:
    """Turn a held reservation into a spend; confirming twice returns the first result."""
    return _settle_reservation(session, actor=actor, reservation_key=reservation_key, outcome="confirm")


def release(session: Session, *, actor: Principal, reservation_key: str) -> LedgerResult:
    """Give a held reservation's points back to the lots they came from."""
    return _settle_reservation(session, actor=actor, reservation_key=reservation_key, outcome="release")


def _settle_reservation(
    session: Session, *, actor: Principal, reservation_key: str, outcome: str
) -> LedgerResult:
    brand_id = actor.scope.require_brand()
    reservation = _reservation(session, brand_id, reservation_key)
    account = _lock(session, reservation.account_id)
    session.refresh(reservation)
    pt = session.get(PointType, account.point_type_id)
    assert pt is not None
    # "#" is outside the characters clients may use in keys, so no client key can collide.
    key = f"{reservation_key}#{outcome}"
    digest = _hash({"op": outcome, "reservation": reservation_key})
    if (done := _replay(session, brand_id, key, outcome, digest)) is not None:
        return done
    op = _start(
        session,
        actor=actor,
        brand_id=brand_id,
        key=key,
        kind=outcome,
        member_id=account.member_id,
        digest=digest,
    )
    # Settling first may time the reservation out (released), which a confirm must then refuse.
    _settle_account(session, op, account)
    if reservation.status != "held":
        raise ReservationClosed(
            f"The reservation is {reservation.status}.", reservation_status=reservation.status
        )
    if outcome == "confirm":
        _entry(
            session,
            op,
            account,
            "confirm",
            d_reserved=-reservation.amount,
            reservation=reservation,
            source_type="order" if reservation.order_ref else None,
            source_id=reservation.order_ref,
            store_id=reservation.store_id,
        )
        account.spent_total += reservation.amount
        reservation.status = "confirmed"
        reservation.settled_at = op.now
    else:
        _release(session, op, account, reservation, reason=None)
    return _finish(
        session, op, account, pt, reservation.amount, reservation_id=reservation.id, status=reservation.status
    )


def freeze(
    session: Session,
    *,
    actor: Principal,
    member_id: int,
    point_type: str,
    key: str,
    reason: str,
    lot_ids: Sequence[int] | None = None,
    unfreeze: bool = False,
) -> LedgerResult:
    """Freeze (or unfreeze) the given lots, or every active (frozen) lot of the account."""
    brand_id = actor.scope.require_brand()
    if not reason or not reason.strip():
        raise ValidationFailed(
            "A reason is required.", errors=[field_error("reason", "required", "required")]
        )
    kind = "unfreeze" if unfreeze else "freeze"
    pt = point_type_by_code(session, brand_id, point_type)
    _member(session, member_id)
    digest = _hash(
        {
            "op": kind,
            "member": member_id,
            "type": point_type,
            "lots": sorted(lot_ids or []),
            "all": lot_ids is None,
            "reason": reason,
        }
    )
    account = open_account(session, brand_id=brand_id, member_id=member_id, point_type_id=pt.id)
    if (done := _replay(session, brand_id, key, kind, digest)) is not None:
        return done
    op = _start(
        session, actor=actor, brand_id=brand_id, key=key, kind=kind, member_id=member_id, digest=digest
    )
    _settle_account(session, op, account)
    source_state, target_state = ("frozen", "active") if unfreeze else ("active", "frozen")
    stmt = select(PointLot).where(PointLot.account_id == account.id, PointLot.state == source_state)
    # Named lots are taken as they are; "all" skips lots with nothing left.
    chosen = PointLot.id.in_(lot_ids) if lot_ids is not None else PointLot.remaining > 0
    stmt = stmt.where(chosen)
    lots = list(session.scalars(stmt.order_by(PointLot.id).with_for_update()))
    if lot_ids is not None and len(lots) != len(set(lot_ids)):
        raise Conflict(
            f"Some lots are not {source_state} in this account.",
            errors=[field_error("lot_ids", f"every lot must be {source_state}", "wrong-state")],
        )
    moved = sum(lot.remaining for lot in lots)
    for lot in lots:
        lot.state = target_state
        lot.frozen_reason = None if unfreeze else reason
    if moved:
        sign = 1 if unfreeze else -1
        _entry(
            session,
            op,
            account,
            kind,
            d_available=sign * moved,
            d_frozen=-sign * moved,
            reason=reason,
            source_type="lots",
            source_id=",".join(str(lot.id) for lot in lots)[:64],
        )
    return _finish(session, op, account, pt, moved, lots=[lot.id for lot in lots])


def adjust(
    session: Session,
    *,
    actor: Principal,
    member_id: int,
    point_type: str,
    amount: int,
    key: str,
    reason: str,
) -> LedgerResult:
    """An operator's correction: a positive amount is a new lot, a negative one draws like a spend."""
    if not reason or not reason.strip():
        raise ValidationFailed(
            "A reason is required.", errors=[field_error("reason", "required", "required")]
        )
    if amount == 0:
        raise ValidationFailed(
            "The adjustment cannot be zero.", errors=[field_error("amount", "must not be 0")]
        )
    if amount > 0:
        return earn(
            session,
            actor=actor,
            member_id=member_id,
            point_type=point_type,
            amount=amount,
            key=key,
            source_type="adjust",
            reason=reason,
            kind="adjust",
            pending_days=0,
        )
    return spend(
        session,
        actor=actor,
        member_id=member_id,
        point_type=point_type,
        amount=-amount,
        key=key,
        source_type="adjust",
        reason=reason,
        kind="adjust",
    )


def transfer(
    session: Session,
    *,
    actor: Principal,
    from_member_id: int,
    to_member_id: int,
    point_type: str,
    amount: int,
    key: str,
    reason: str | None = None,
) -> LedgerResult:
    """Move available points to another member of the brand; each lot keeps its expiry."""
    brand_id = actor.scope.require_brand()
    _require_positive(amount, "transfer")
    if from_member_id == to_member_id:
        raise ValidationFailed(
            "Cannot transfer to the same member.",
            errors=[field_error("to_member_id", "must differ from the sender")],
        )
    pt = point_type_by_code(session, brand_id, point_type)
    if not pt.transferable:
        raise PointsNotAllowed(f"Points of type '{pt.code}' cannot be transferred.")
    _member(session, from_member_id)
    receiver = _member(session, to_member_id)
    if receiver.status == "closed":
        raise PointsNotAllowed("A closed member cannot receive points.")
    digest = _hash(
        {
            "op": "transfer",
            "from": from_member_id,
            "to": to_member_id,
            "type": point_type,
            "amount": amount,
            "reason": reason,
        }
    )
    ids = {
        mid: _account_id(session, brand_id=brand_id, member_id=mid, point_type_id=pt.id)
        for mid in (from_member_id, to_member_id)
    }
    # In account id order, the order of every writer that locks several accounts (the sweeps too).
    locked = {account_id: _lock(session, account_id) for account_id in sorted(ids.values())}
    sender = locked[ids[from_member_id]]
    target = locked[ids[to_member_id]]
    if (done := _replay(session, brand_id, key, "transfer", digest)) is not None:
        return done
    op = _start(
        session,
        actor=actor,
        brand_id=brand_id,
        key=key,
        kind="transfer",
        member_id=from_member_id,
        digest=digest,
    )
    _settle_account(session, op, sender)
    _settle_account(session, op, target)
    moves = _plan_draw(_spendable_lots(session, sender, op.now), amount)
    _entry(
        session,
        op,
        sender,
        "transfer_out",
        d_available=-amount,
        moves=moves,
        reason=reason,
        source_type="member",
        source_id=str(to_member_id),
    )
    new_moves: list[tuple[PointLot, int]] = []
    for lot, n in moves:
        new = _new_lot(
            session,
            op,
            target,
            pt,
            -n,
            earned_at=lot.earned_at,
            state="active",
            activates_at=None,
            expiry=expiry_policy.LotExpiry(nominal=lot.nominal_expires_at, effective=lot.expires_at),
            source_type="transfer",
            source_id=str(lot.id),
            store_id=lot.store_id,
            funded_by=lot.funded_by,
            rule_id=lot.rule_id,
            unit_value=lot.unit_value,
        )
        new_moves.append((new, -n))
    _entry(
        session,
        op,
        target,
        "transfer_in",
        d_available=amount,
        moves=new_moves,
        reason=reason,
        source_type="member",
        source_id=str(from_member_id),
    )
    for new, _n in new_moves:
        _repay_debt(session, op, target, new)
    _check(target)
    return _finish(session, op, sender, pt, amount, to_member_id=to_member_id, to_balance=balance_of(target))


# -- sweeps (jobs call these chunk by chunk) ------------------------------------------------------
