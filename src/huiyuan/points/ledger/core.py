"""The ledger's machinery: errors, results, accounts and their locks, operations and their
idempotency keys, entries with their lot moves, lots, settling an account (expiring its due lots,
releasing its timed-out holds) and giving points back to lots. The verbs are in ``verbs`` and
``refunds``, the sweeps in ``due``; ``huiyuan.points.ledger`` exposes them all."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import or_, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from huiyuan.kit.clock import utcnow
from huiyuan.kit.db import advisory_lock
from huiyuan.kit.errors import (
    AppError,
    IdempotencyMismatch,
    NotFound,
    ValidationFailed,
    field_error,
)
from huiyuan.kit.scope import Principal
from huiyuan.members.models import Member
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
    # Writers of different accounts can race one key; the account lock does not order them, so
    # queue them on the key itself: the losers then read the winner's committed operation instead
    # of failing on the unique constraint. Taken after the account locks, held to commit.
    advisory_lock(session, f"points:{brand_id}:{key}")
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
