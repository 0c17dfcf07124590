"""The checkout and operator actions on the points ledger.

Owns the checkout quote and reservations (reserve, confirm, release), the audited operator actions
(grant, adjust, freeze, unfreeze, transfer) and the idempotency key of every API write
(``operation_key``). Configuration lives in ``points.config``, the read models in ``points.reads``.
Every balance change is a call to ``points.ledger``; nothing here moves points itself. Like every
verb, nothing here commits.

Idempotency of writes is the ledger's: each API write carries a key, stored as ``api:<key>`` so that
client keys never meet the keys the system writes with (order earnings, sweeps). A retry with the same
key and request returns the first ``LedgerResult`` (``replayed``); the same key with another request is
``idempotency-key-reused``. Audit rows are written on the first call only.
"""

from __future__ import annotations

import re
from decimal import ROUND_FLOOR, Decimal
from typing import Any

from sqlalchemy.orm import Session

from huiyuan.audit import service as audit
from huiyuan.kit.clock import utcnow
from huiyuan.kit.errors import ValidationFailed, field_error
from huiyuan.kit.scope import Principal
from huiyuan.members.models import Member
from huiyuan.points import ledger
from huiyuan.points.ledger import LedgerResult, PointsNotAllowed
from huiyuan.points.models import PointType
from huiyuan.points.reads import CENT, get_member
from huiyuan.points.repository import PointQueryRepository
from huiyuan.points.schemas import (
    LedgerOperationOut,
    QuoteIn,
    QuoteOut,
    ReservationOut,
    ReserveIn,
)

KEY_PREFIX = "api:"
KEY_PATTERN = re.compile(r"[A-Za-z0-9_.:-]{4,180}")


# -- checkout --------------------------------------------------------------------------------------


def _product_type(session: Session, brand_id: int, code: str) -> None:
    """Refuse the wallet's sub-ledgers (kind "wallet"): their money moves only through ``huiyuan.wallet``."""
    if ledger.point_type_by_code(session, brand_id, code).kind == "wallet":
        raise ValidationFailed(
            f"Unknown point type '{code}'.",
            errors=[field_error("point_type", "no such point type", "unknown-point-type")],
        )


def _spendable_type(session: Session, brand_id: int, code: str) -> PointType:
    _product_type(session, brand_id, code)
    pt = ledger.point_type_by_code(session, brand_id, code)
    if not pt.spendable:
        raise PointsNotAllowed(f"Points of type '{pt.code}' cannot be spent.")
    return pt


def quote(session: Session, *, actor: Principal, data: QuoteIn) -> QuoteOut:
    """How many points the member may pay this cart with, and what they are worth in cash."""
    brand_id = actor.scope.require_brand()
    member = get_member(session, data.member_id)
    pt = _spendable_type(session, brand_id, data.point_type)
    available = PointQueryRepository(session).available(member.id, pt.id, now=utcnow())
    ratio_limit = int(
        (data.cart_amount * Decimal(pt.max_pay_ratio) * pt.points_per_yuan).to_integral_value(ROUND_FLOOR)
    )
    usable = min(available, ratio_limit)
    if data.max_points is not None:
        usable = min(usable, data.max_points)
    usable = max(usable, 0)
    return QuoteOut(
        member_id=member.id,
        point_type=pt.code,
        available=available,
        ratio_limit=ratio_limit,
        cap=data.max_points,
        usable_points=usable,
        cash_value=(Decimal(usable) / pt.points_per_yuan).quantize(CENT, ROUND_FLOOR),
        points_per_yuan=pt.points_per_yuan,
        max_pay_ratio=pt.max_pay_ratio,
    )


def _store_id(session: Session, brand_id: int, code: str | None) -> int | None:
    if code is None:
        return None
    store = PointQueryRepository(session).store_by_code(brand_id, code)
    if store is None:
        raise ValidationFailed(
            "Unknown store.", errors=[field_error("store", "no such store", "unknown-store")]
        )
    return store.id


def reservation_out(result: LedgerResult, reservation_key: str) -> ReservationOut:
    extra = result.extra
    return ReservationOut(
        **operation_out(result).model_dump(),
        reservation_key=reservation_key,
        reservation_id=int(extra["reservation_id"]),
        status=str(extra.get("status", "held")),
        expires_at=extra.get("expires_at"),
    )


def reserve(session: Session, *, actor: Principal, data: ReserveIn, key: str) -> LedgerResult:
    """Hold points for a checkout under ``key``, which also names the reservation."""
    brand_id = actor.scope.require_brand()
    get_member(session, data.member_id)
    _product_type(session, brand_id, data.point_type)
    return ledger.reserve(
        session,
        actor=actor,
        member_id=data.member_id,
        point_type=data.point_type,
        amount=data.points,
        key=KEY_PREFIX + key,
        order_ref=data.order_ref,
        store_id=_store_id(session, brand_id, data.store),
        ttl_minutes=data.ttl_minutes,
    )


def settle_reservation(
    session: Session, *, actor: Principal, reservation_key: str, confirm: bool
) -> LedgerResult:
    """Confirm (spend) or release a held reservation; repeating either returns the first result."""
    verb = ledger.confirm if confirm else ledger.release
    return verb(session, actor=actor, reservation_key=KEY_PREFIX + reservation_key)


# -- operator and system actions -------------------------------------------------------------------


def operation_key(body_key: str | None, header_key: str | None, *, max_length: int = 180) -> str:
    """The idempotency key of a write: the body's ``idempotency_key`` or the ``Idempotency-Key`` header
    (4 to ``max_length`` URL-safe characters)."""
    if body_key and header_key and body_key != header_key:
        raise ValidationFailed(
            "Two different idempotency keys were sent.",
            errors=[field_error("idempotency_key", "differs from the Idempotency-Key header", "conflicting")],
        )
    key = body_key or header_key
    if not key:
        raise ValidationFailed(
            "An idempotency key is required.",
            errors=[
                field_error(
                    "idempotency_key", "send it in the body or the Idempotency-Key header", "required"
                )
            ],
        )
    if not KEY_PATTERN.fullmatch(key) or len(key) > max_length:
        # The key of a reservation is part of its URLs, so every key keeps to URL-safe characters.
        raise ValidationFailed(
            "The idempotency key is not valid.",
            errors=[field_error("idempotency_key", f"4–{max_length} of A–Z a–z 0–9 _ . : -", "pattern")],
        )
    return key


def operation_out(result: LedgerResult) -> LedgerOperationOut:
    return LedgerOperationOut.model_validate(result.to_json())


def _audit_operation(
    session: Session,
    result: LedgerResult,
    *,
    actor: Principal,
    action: str,
    member: Member,
    reason: str | None,
    **details: Any,
) -> None:
    if result.replayed:
        return
    audit.record(
        session,
        actor=actor,
        action=action,
        entity_type="member",
        entity_id=member.id,
        brand_id=member.brand_id,
        after={
            "point_type": result.point_type,
            "amount": result.amount,
            "operation_id": result.operation_id,
            **details,
        },
        note=reason,
    )


def grant(
    session: Session,
    *,
    actor: Principal,
    member_id: int,
    key: str,
    point_type: str,
    amount: int,
    reason: str,
    funded_by: str = "brand",
    store: str | None = None,
) -> LedgerResult:
    """A manual earn: a new lot, active at once, funded by ``funded_by``."""
    brand_id = actor.scope.require_brand()
    member = get_member(session, member_id)
    _product_type(session, brand_id, point_type)
    result = ledger.earn(
        session,
        actor=actor,
        member_id=member.id,
        point_type=point_type,
        amount=amount,
        key=KEY_PREFIX + key,
        source_type="manual",
        reason=reason,
        store_id=_store_id(session, brand_id, store),
        funded_by=funded_by,
        pending_days=0,
    )
    _audit_operation(
        session,
        result,
        actor=actor,
        action="points.granted",
        member=member,
        reason=reason,
        funded_by=funded_by,
    )
    return result


def adjust(
    session: Session, *, actor: Principal, member_id: int, key: str, point_type: str, amount: int, reason: str
) -> LedgerResult:
    """An operator's correction (± points) with its reason."""
    member = get_member(session, member_id)
    _product_type(session, member.brand_id, point_type)
    result = ledger.adjust(
        session,
        actor=actor,
        member_id=member.id,
        point_type=point_type,
        amount=amount,
        key=KEY_PREFIX + key,
        reason=reason,
    )
    # The ledger reports a negative adjustment as the points it drew; the audit keeps the sign.
    _audit_operation(
        session, result, actor=actor, action="points.adjusted", member=member, reason=reason, amount=amount
    )
    return result


def freeze(
    session: Session,
    *,
    actor: Principal,
    member_id: int,
    key: str,
    point_type: str,
    reason: str,
    lot_ids: list[int] | None = None,
    unfreeze: bool = False,
) -> LedgerResult:
    """Freeze (or unfreeze) some or all of a member's lots of a point type."""
    member = get_member(session, member_id)
    _product_type(session, member.brand_id, point_type)
    result = ledger.freeze(
        session,
        actor=actor,
        member_id=member.id,
        point_type=point_type,
        key=KEY_PREFIX + key,
        reason=reason,
        lot_ids=lot_ids,
        unfreeze=unfreeze,
    )
    _audit_operation(
        session,
        result,
        actor=actor,
        action="points.unfrozen" if unfreeze else "points.frozen",
        member=member,
        reason=reason,
        lots=result.extra.get("lots", []),
    )
    return result


def transfer(
    session: Session,
    *,
    actor: Principal,
    member_id: int,
    key: str,
    to_member_id: int,
    point_type: str,
    amount: int,
    reason: str | None = None,
) -> LedgerResult:
    """Move available points from one member to another of the same brand."""
    member = get_member(session, member_id)
    receiver = get_member(session, to_member_id)
    _product_type(session, member.brand_id, point_type)
    result = ledger.transfer(
        session,
        actor=actor,
        from_member_id=member.id,
        to_member_id=receiver.id,
        point_type=point_type,
        amount=amount,
        key=KEY_PREFIX + key,
        reason=reason,
    )
    _audit_operation(
        session,
        result,
        actor=actor,
        action="points.transferred",
        member=member,
        reason=reason,
        to_member_id=receiver.id,
    )
    return result
