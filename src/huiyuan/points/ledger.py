"""The points ledger: every change to a member's points, as append-only entries over lots.

Owns the verbs that move points (``earn``, ``spend``, ``reserve``/``confirm``/``release``,
``freeze``/``unfreeze``, ``adjust``, ``reverse_lot``, ``restore_entry``, ``transfer``) and the
system sweeps (``activate_due``, ``expire_due``, ``release_due_reservations``). Each verb:

* locks the account row first (``SELECT … FOR UPDATE`` on PostgreSQL; on SQLite the write
  transaction is ``BEGIN IMMEDIATE``, so writers are serialised anyway), accounts of a transfer
  in id order, so two writers never wait on each other in a circle;
* then looks up its idempotency key (``PointOperation``): the same key and request returns the
  first result and writes nothing; the same key with another request raises
  ``IdempotencyMismatch``. Looking up *after* the lock is what makes 50 concurrent calls with one
  key produce one effect: the losers read the winner's committed operation;
* expires the account's lots that are past due and releases its timed-out reservations before
  anything else, so what it reads as available is what may really be spent, whether or not the
  expiry job has run;
* writes entries whose bucket deltas are applied to the cached account row in the same
  transaction, and the lot moves (``PointEntryLot``) of every draw or give-back.

Spending draws the soonest-expiring active lot first, first-in-first-out (lot id) on equal expiry,
lots without expiry last. Nothing here commits; audit rows for operator actions and outbox events
are written by the callers in ``service`` where they are business events, except ``points.earned``
(tiers listen to it) which every earn emits.

Written by hand: no maintained library keeps lot-based point ledgers with these rules.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import func, or_, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from huiyuan.kit.clock import utcnow
from huiyuan.kit.errors import (
    AppError,
    Conflict,
    IdempotencyMismatch,
    NotFound,
    ValidationFailed,
    field_error,
)
from huiyuan.kit.scope import Principal
from huiyuan.members.models import Member
from huiyuan.outbox.service import emit
from huiyuan.points import expiry_policy
from huiyuan.points.models import (
    PointAccount,
    PointEntry,
    PointEntryLot,
    PointLot,
    PointOperation,
    PointReservation,
    PointType,
)
from huiyuan.tenancy.models import Brand


class InsufficientPoints(AppError):
    status = 409
    code = "insufficient-points"
    title = "Not enough points"


class PointsNotAllowed(AppError):
    status = 422
    code = "points-not-allowed"
    title = "This point type does not allow the operation"


class ReservationClosed(AppError):
    status = 409
    code = "reservation-closed"
    title = "The reservation is no longer held"


@dataclass
class LedgerResult:
    """What a ledger operation did; stored on its ``PointOperation`` and replayed for retries."""

    operation_id: int
    kind: str
    member_id: int
    point_type: str
    amount: int
    entries: list[int] = field(default_factory=list)
    lots: list[int] = field(default_factory=list)
    balance: dict[str, int] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)
    replayed: bool = False

    def to_json(self) -> dict[str, Any]:
        return {
            "operation_id": self.operation_id,
            "kind": self.kind,
            "member_id": self.member_id,
            "point_type": self.point_type,
            "amount": self.amount,
            "entries": self.entries,
            "lots": self.lots,
            "balance": self.balance,
            "extra": self.extra,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> LedgerResult:
        return cls(**data, replayed=True)


def _hash(payload: dict[str, Any]) -> str:
    canonical = json.dumps(payload, sort_keys=True, default=str, ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()


def balance_of(account: PointAccount) -> dict[str, int]:
    return {
        "available": account.available,
        "pending": account.pending,
        "frozen": account.frozen,
        "reserved": account.reserved,
        "debt": account.debt,
    }


# -- accounts, types, operations ------------------------------------------------------------------


def point_type_by_code(session: Session, brand_id: int, code: str) -> PointType:
    pt = session.scalars(
        select(PointType).where(PointType.brand_id == brand_id, PointType.code == code)
    ).one_or_none()
    if pt is None:
        raise ValidationFailed(
            f"Unknown point type '{code}'.",
            errors=[field_error("point_type", "no such point type", "unknown-point-type")],
        )
    return pt


def _member(session: Session, member_id: int) -> Member:
    member = session.get(Member, member_id)
    if member is None:
        raise NotFound(f"Member {member_id} was not found.")
    return member


def _lock(session: Session, account_id: int) -> PointAccount:
    stmt = (
        select(PointAccount)
        .where(PointAccount.id == account_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    return session.scalars(stmt).one()


def open_account(session: Session, *, brand_id: int, member_id: int, point_type_id: int) -> PointAccount:
    """The member's account of this type, created if missing, locked for this transaction."""
    found = _account_id(session, brand_id=brand_id, member_id=member_id, point_type_id=point_type_id)
    return _lock(session, found)


def _account_id(session: Session, *, brand_id: int, member_id: int, point_type_id: int) -> int:
    """The id of the member's account of this type, created if missing; not locked."""
    found = session.scalar(
        select(PointAccount.id).where(
            PointAccount.member_id == member_id, PointAccount.point_type_id == point_type_id
        )
    )
    if found is None:
        now = utcnow()
        dialect = session.get_bind().dialect.name
        insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
        stmt = (
            insert(PointAccount)
            .values(
                brand_id=brand_id,
                member_id=member_id,
                point_type_id=point_type_id,
                available=0,
                pending=0,
                frozen=0,
                reserved=0,
                debt=0,
                earned_total=0,
                spent_total=0,
                expired_total=0,
                created_at=now,
                updated_at=now,
            )
            .on_conflict_do_nothing(index_elements=["member_id", "point_type_id"])
        )
        session.execute(stmt)
        found = session.scalar(
            select(PointAccount.id).where(
                PointAccount.member_id == member_id, PointAccount.point_type_id == point_type_id
            )
        )
    assert found is not None
    return found


def _replay(session: Session, brand_id: int, key: str, kind: str, digest: str) -> LedgerResult | None:
    if session.get_bind().dialect.name == "postgresql":
        # Writers of different accounts can race one key; the account lock does not order them, so
        # queue them on the key itself: the losers then read the winner's committed operation
        # instead of failing on the unique constraint. Taken after the account locks, held to commit.
        key_hash = hashlib.sha256(f"points:{brand_id}:{key}".encode()).digest()
        lock_id = int.from_bytes(key_hash[:8], "big", signed=True)
        session.execute(select(func.pg_advisory_xact_lock(lock_id)))
    op = session.scalars(
        select(PointOperation).where(PointOperation.brand_id == brand_id, PointOperation.key == key)
    ).one_or_none()
    if op is None:
        return None
    if op.kind != kind or op.request_hash != digest:
        raise IdempotencyMismatch(
            "This idempotency key was already used for a different points operation.",
            errors=[field_error("idempotency_key", "already used with another request", "reused")],
        )
    return LedgerResult.from_json(op.result)


@dataclass
class _Op:
    """An operation being written: its row, the entries and lots it made so far."""

    row: PointOperation
    actor: Principal
    now: datetime
    entries: list[PointEntry] = field(default_factory=list)
    lots: list[PointLot] = field(default_factory=list)


def _start(
    session: Session,
    *,
    actor: Principal,
    brand_id: int,
    key: str,
    kind: str,
    member_id: int | None,
    digest: str,
) -> _Op:
    if not key or len(key) > 200:
        raise ValidationFailed(
            "An idempotency key of 1–200 characters is required.",
            errors=[field_error("idempotency_key", "1–200 characters", "required")],
        )
    row = PointOperation(
        brand_id=brand_id,
        key=key,
        kind=kind,
        request_hash=digest,
        member_id=member_id,
        result={},
        actor=actor.label[:120],
        created_at=utcnow(),
    )
    session.add(row)
    return _Op(row=row, actor=actor, now=row.created_at)


def _finish(
    session: Session, op: _Op, account: PointAccount, pt: PointType, amount: int, **extra: Any
) -> LedgerResult:
    _check(account)
    session.flush()
    result = LedgerResult(
        operation_id=op.row.id,
        kind=op.row.kind,
        member_id=account.member_id,
        point_type=pt.code,
        amount=amount,
        entries=[e.id for e in op.entries],
        lots=[lot.id for lot in op.lots],
        balance=balance_of(account),
        extra=extra,
    )
    op.row.result = result.to_json()
    return result


def _check(account: PointAccount) -> None:
    if min(account.available, account.pending, account.frozen, account.reserved, account.debt) < 0:
        # A bug, never an expected outcome: refuse to commit a ledger that went negative.
        raise RuntimeError(f"points account {account.id} would go negative: {balance_of(account)}")


def _entry(
    session: Session,
    op: _Op,
    account: PointAccount,
    kind: str,
    *,
    d_available: int = 0,
    d_pending: int = 0,
    d_frozen: int = 0,
    d_reserved: int = 0,
    d_debt: int = 0,
    moves: Sequence[tuple[PointLot, int]] = (),
    reason: str | None = None,
    source_type: str | None = None,
    source_id: str | None = None,
    store_id: int | None = None,
    reservation: PointReservation | None = None,
    reverses_entry_id: int | None = None,
    held: tuple[str, int] | None = None,
) -> PointEntry:
    if held is not None:
        # ``n`` points into (or, negative, out of) the bucket of a lot in ``state``.
        state, n = held
        if state == "pending":
            d_pending += n
        elif state == "frozen":
            d_frozen += n
        else:
            d_available += n
    account.available += d_available
    account.pending += d_pending
    account.frozen += d_frozen
    account.reserved += d_reserved
    account.debt += d_debt
    entry = PointEntry(
        brand_id=account.brand_id,
        operation=op.row,
        account_id=account.id,
        member_id=account.member_id,
        point_type_id=account.point_type_id,
        kind=kind,
        amount=d_available + d_pending + d_frozen,
        d_available=d_available,
        d_pending=d_pending,
        d_frozen=d_frozen,
        d_reserved=d_reserved,
        d_debt=d_debt,
        reason=reason,
        source_type=source_type,
        source_id=source_id,
        store_id=store_id,
        reservation=reservation,
        reverses_entry_id=reverses_entry_id,
        actor=op.actor.label[:120],
        occurred_at=op.now,
        created_at=op.now,
    )
    session.add(entry)
    for lot, delta in moves:
        lot.remaining += delta
        session.add(PointEntryLot(brand_id=account.brand_id, entry=entry, lot=lot, amount=delta))
    op.entries.append(entry)
    return entry


# -- lots -----------------------------------------------------------------------------------------


def _tz(session: Session, brand_id: int) -> str:
    brand = session.get(Brand, brand_id)
    return brand.timezone if brand is not None else "Asia/Shanghai"


def _new_lot(
    session: Session,
    op: _Op,
    account: PointAccount,
    pt: PointType,
    amount: int,
    *,
    earned_at: datetime,
    state: str,
    activates_at: datetime | None,
    expiry: expiry_policy.LotExpiry,
    source_type: str,
    source_id: str | None,
    store_id: int | None,
    funded_by: str,
    rule_id: int | None,
    unit_value: Decimal | None = None,
) -> PointLot:
    lot = PointLot(
        brand_id=account.brand_id,
        account_id=account.id,
        member_id=account.member_id,
        point_type_id=account.point_type_id,
        amount=amount,
        remaining=0,  # filled by the entry that creates it
        state=state,
        earned_at=earned_at,
        activates_at=activates_at,
        expires_at=expiry.effective,
        nominal_expires_at=expiry.nominal,
        source_type=source_type,
        source_id=source_id,
        store_id=store_id,
        funded_by=funded_by,
        rule_id=rule_id,
        unit_value=pt.fair_value if unit_value is None else unit_value,
        created_at=op.now,
    )
    session.add(lot)
    op.lots.append(lot)
    return lot


def _spendable_lots(session: Session, account: PointAccount, now: datetime) -> list[PointLot]:
    stmt = (
        select(PointLot)
        .where(
            PointLot.account_id == account.id,
            PointLot.state == "active",
            PointLot.remaining > 0,
            or_(PointLot.expires_at.is_(None), PointLot.expires_at > now),
        )
        .order_by(PointLot.expires_at.is_(None), PointLot.expires_at, PointLot.id)
        .with_for_update()
    )
    return list(session.scalars(stmt))


def _plan_draw(lots: Iterable[PointLot], amount: int) -> list[tuple[PointLot, int]]:
    moves: list[tuple[PointLot, int]] = []
    left = amount
    for lot in lots:
        if left == 0:
            break
        take = min(lot.remaining, left)
        moves.append((lot, -take))
        left -= take
    if left:
        raise InsufficientPoints(f"{amount} points were asked for; {amount - left} are available.")
    return moves


def _repay_debt(session: Session, op: _Op, account: PointAccount, lot: PointLot) -> None:
    """New active points first pay back what a refund could not claw back."""
    if account.debt == 0 or lot.state != "active" or lot.remaining == 0:
        return
    pay = min(account.debt, lot.remaining)
    _entry(
        session,
        op,
        account,
        "reverse",
        d_available=-pay,
        d_debt=-pay,
        moves=[(lot, -pay)],
        reason="debt repaid from new points",
        source_type="debt",
    )


def _settle_account(session: Session, op: _Op, account: PointAccount) -> None:
    """Expire this account's lots past due and release its timed-out reservations."""
    now = op.now
    due = session.scalars(
        select(PointLot)
        .where(
            PointLot.account_id == account.id,
            PointLot.state.in_(("active", "frozen", "pending")),
            PointLot.expires_at.is_not(None),
            PointLot.expires_at <= now,
        )
        .order_by(PointLot.id)
        .with_for_update()
    ).all()
    for lot in due:
        _expire_lot(session, op, account, lot)
    if account.reserved == 0:
        return  # nothing is held, so no hold can have timed out
    timed_out = session.scalars(
        select(PointReservation)
        .where(
            PointReservation.account_id == account.id,
            PointReservation.status == "held",
            PointReservation.expires_at <= now,
        )
        .order_by(PointReservation.id)
    ).all()
    for reservation in timed_out:
        _release(session, op, account, reservation, reason="reservation timed out")


def _expire_lot(session: Session, op: _Op, account: PointAccount, lot: PointLot) -> int:
    left = lot.remaining
    state = lot.state
    lot.state = "expired"
    if left == 0:
        return 0
    _entry(
        session,
        op,
        account,
        "expire",
        moves=[(lot, -left)],
        source_type="lot",
        source_id=str(lot.id),
        held=(state, -left),
    )
    account.expired_total += left
    pt = session.get(PointType, account.point_type_id)
    assert pt is not None
    policy = expiry_policy.parse_policy(pt.expiry_policy)
    assert lot.expires_at is not None
    tz = _tz(session, account.brand_id)
    carried, next_expiry = expiry_policy.carry_over(policy, left, lot.expires_at, tz)
    if carried > 0:
        new = _new_lot(
            session,
            op,
            account,
            pt,
            carried,
            earned_at=lot.earned_at,
            # Carried points keep the lot's hold: a frozen (or still pending) lot carries into one.
            state=state,
            activates_at=lot.activates_at if state == "pending" else None,
            expiry=expiry_policy.with_grace(policy, next_expiry, tz),
            source_type="carry",
            source_id=str(lot.id),
            store_id=lot.store_id,
            funded_by=lot.funded_by,
            rule_id=lot.rule_id,
            unit_value=lot.unit_value,
        )
        new.frozen_reason = lot.frozen_reason
        _entry(
            session,
            op,
            account,
            "carry",
            held=(state, carried),
            moves=[(new, carried)],
            source_type="lot",
            source_id=str(lot.id),
            reason="decay carry-over",
        )
        account.expired_total -= carried
        if new.expires_at is not None and new.expires_at <= op.now:
            # Expired late (the lot was long overdue): the carried lot is past its own expiry too.
            left += _expire_lot(session, op, account, new)
    return left


# -- verbs ----------------------------------------------------------------------------------------


def earn_digest(
    *,
    kind: str,
    member_id: int,
    point_type: str,
    amount: int,
    source_type: str,
    source_id: str | None,
    store_id: int | None,
    funded_by: str,
    rule_id: int | None,
    reason: str | None,
    earned_at: datetime | None,
    pending_days: int | None,
) -> str:
    """The request hash of an earn: the set-based earning path writes the same, so either path
    replays what the other did under one key."""
    return _hash(
        {
            "op": kind,
            "member": member_id,
            "type": point_type,
            "amount": amount,
            "source": [source_type, source_id],
            "store": store_id,
            "funded_by": funded_by,
            "rule": rule_id,
            "reason": reason,
            "earned_at": earned_at,
            "pending_days": pending_days,
        }
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
    if amount <= 0:
        raise ValidationFailed(
            "Points to grant must be positive.", errors=[field_error("amount", "must be > 0")]
        )
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
    if amount <= 0:
        raise ValidationFailed(
            "Points to spend must be positive.", errors=[field_error("amount", "must be > 0")]
        )
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
    if amount <= 0:
        raise ValidationFailed(
            "Points to reserve must be positive.", errors=[field_error("amount", "must be > 0")]
        )
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


def _moves_of(session: Session, entry_ids: Sequence[int]) -> list[tuple[PointLot, int]]:
    rows = session.execute(
        select(PointLot, PointEntryLot.amount)
        .join(PointEntryLot, PointEntryLot.lot_id == PointLot.id)
        .where(PointEntryLot.entry_id.in_(entry_ids))
        .order_by(PointEntryLot.id)
        .with_for_update(of=PointLot)
    ).all()
    return [(lot, amount) for lot, amount in rows]


def _give_back(
    session: Session,
    op: _Op,
    account: PointAccount,
    back: list[tuple[PointLot, int]],
    kind: str,
    *,
    d_reserved: int = 0,
    **meta: Any,
) -> None:
    """Return points to their lots, into each lot's bucket; a lot whose time has passed takes them
    back and expires them at once, so a release or refund never revives expired points."""
    into = {"active": 0, "frozen": 0, "pending": 0}
    dead: list[tuple[PointLot, int]] = []
    for lot, n in back:
        if lot.state == "expired":
            into["active"] += n
            dead.append((lot, n))
        else:
            into[lot.state] += n
    _entry(
        session,
        op,
        account,
        kind,
        d_available=into["active"],
        d_frozen=into["frozen"],
        d_pending=into["pending"],
        d_reserved=d_reserved,
        moves=back,
        **meta,
    )
    for lot, n in dead:
        _entry(
            session,
            op,
            account,
            "expire",
            d_available=-n,
            moves=[(lot, -n)],
            source_type="lot",
            source_id=str(lot.id),
            reason="returned to an expired lot",
        )
        account.expired_total += n
    for lot, _n in back:
        if lot.state != "expired" and lot.expires_at is not None and lot.expires_at <= op.now:
            _expire_lot(session, op, account, lot)


def _release(
    session: Session, op: _Op, account: PointAccount, reservation: PointReservation, *, reason: str | None
) -> None:
    reserve_entry = session.scalar(
        select(PointEntry.id).where(PointEntry.reservation_id == reservation.id, PointEntry.kind == "reserve")
    )
    assert reserve_entry is not None
    back = [(lot, -n) for lot, n in _moves_of(session, [reserve_entry])]
    _give_back(
        session,
        op,
        account,
        back,
        "release",
        d_reserved=-reservation.amount,
        reservation=reservation,
        reason=reason,
        source_type="order" if reservation.order_ref else None,
        source_id=reservation.order_ref,
    )
    reservation.status = "released"
    reservation.settled_at = op.now


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
    if amount <= 0:
        raise ValidationFailed(
            "Points to transfer must be positive.", errors=[field_error("amount", "must be > 0")]
        )
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
