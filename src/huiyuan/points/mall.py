"""The points mall (积分商城): gifts, their stock ledger, third-party codes and redemptions.

Owns the verbs ``create_gift``, ``update_gift``, ``restock``, ``import_codes``, ``redeem``,
``pay_redemption``, ``cancel_redemption`` and ``expire_overdue_redemptions``. The queries on the
mall's tables live in ``points.mall_repository``, the shapes the API shows in ``points.mall_views``.
Points move only through ``points.ledger``; nothing here touches lots or accounts itself, and nothing
here commits.

Policies:

* **Locks.** Every path that changes a gift's stock or a redemption locks the gift row first
  (``SELECT … FOR UPDATE``; SQLite writers are serialised by ``BEGIN IMMEDIATE``), then lets the
  ledger lock the points account: always gift → account, so two writers never wait in a circle.
  A redemption additionally queues on its idempotency key (a PostgreSQL advisory lock) before the
  gift, so two requests with one key for different gifts meet there, not at a unique constraint.
* **Stock** is a ledger: each change is a ``MallStockEntry`` and the gift's ``stock_available`` is
  updated with it, so the cache equals Σ entries and the check constraint refuses a negative one.
  A ``third_party_code`` gift gets stock only by importing codes; its stock is its ``available``
  codes, and a redemption takes exactly its quantity of them under the gift lock.
* **Redeem** is idempotent on the client key: the same key and request returns the redemption as
  it stands (``replayed``); the same key with another request is ``idempotency-key-reused``. A
  points-only gift spends the points at once (ledger key ``mall:<key>``) and completes; a gift
  with a cash part reserves them (``mall-hold:<key>``) for ``payment_minutes`` and waits for
  ``pay``; its codes are held and revealed only once paid.
* **Limits** count the units of the member's redemptions that are awaiting payment or completed,
  in all and on the brand-local day of redemption.
* **Cancel** of an unpaid redemption releases the reserved points, its stock and held codes. Of a
  completed one, it restores the points to the lots they came from (``ledger.restore_entry``:
  points of lots that have expired meanwhile expire at once) and returns the stock, except the
  codes of a ``third_party_code`` gift: they were revealed, so they stay assigned and the stock
  does not come back.
* **Payment timeout.** An unpaid redemption past ``pay_by`` expires: its stock and codes come back
  when the gift is next redeemed or cancelled against, or by ``expire_overdue_redemptions``; the
  ledger times out the reserved points on its own (``release_due_reservations``).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import insert, select, update
from sqlalchemy.orm import Session

from huiyuan.audit import service as audit
from huiyuan.kit.clock import utcnow
from huiyuan.kit.db import advisory_lock
from huiyuan.kit.errors import (
    AppError,
    Conflict,
    IdempotencyMismatch,
    NotFound,
    ValidationFailed,
    field_error,
)
from huiyuan.kit.scope import Principal
from huiyuan.kit.types import to_money
from huiyuan.members.models import Member
from huiyuan.outbox.service import emit
from huiyuan.points import ledger
from huiyuan.points.mall_codes import read_code_file
from huiyuan.points.mall_models import MallGift, MallGiftCode, MallRedemption, MallStockEntry
from huiyuan.points.mall_repository import MallRepository
from huiyuan.points.mall_schemas import CodeImportOut, GiftIn, GiftUpdate
from huiyuan.points.models import PointEntry, PointType
from huiyuan.tenancy.models import Brand

ZERO = Decimal("0.00")


class OutOfStock(AppError):
    status = 409
    code = "out-of-stock"
    title = "The gift is out of stock"


class GiftNotOnSale(AppError):
    status = 409
    code = "gift-not-on-sale"
    title = "The gift cannot be redeemed now"


class RedemptionLimitReached(AppError):
    status = 409
    code = "redemption-limit-reached"
    title = "The member has reached the redemption limit of this gift"


class RedemptionClosed(AppError):
    status = 409
    code = "redemption-closed"
    title = "The redemption can no longer be changed this way"


class MemberCannotRedeem(AppError):
    status = 409
    code = "member-not-active"
    title = "The member cannot redeem gifts"


# -- helpers ----------------------------------------------------------------------------------------


def _locked_gift(session: Session, gift_id: int) -> MallGift:
    gift = MallRepository(session).gift(gift_id, for_update=True)
    if gift is None:
        raise NotFound(f"Gift {gift_id} was not found.")
    return gift


def _lock_key(session: Session, brand_id: int, key: str) -> None:
    advisory_lock(session, f"mall:{brand_id}:{key}")


def _move_stock(
    session: Session,
    actor: Principal,
    gift: MallGift,
    kind: str,
    quantity: int,
    *,
    redemption_id: int | None = None,
    reason: str | None = None,
) -> MallStockEntry:
    """Append a stock entry and apply it to the cached stock (the gift row is locked)."""
    after = gift.stock_available + quantity
    if after < 0:
        raise OutOfStock(
            f"{-quantity} units were asked for; {gift.stock_available} are in stock.",
            stock_available=gift.stock_available,
        )
    gift.stock_available = after
    entry = MallStockEntry(
        brand_id=gift.brand_id,
        gift_id=gift.id,
        kind=kind,
        quantity=quantity,
        balance_after=after,
        redemption_id=redemption_id,
        reason=reason,
        actor=actor.label[:120],
        occurred_at=utcnow(),
    )
    session.add(entry)
    return entry


def _local_day(session: Session, brand_id: int, now: datetime) -> date:
    brand = session.get(Brand, brand_id)
    return now.astimezone(ZoneInfo(brand.timezone if brand else "Asia/Shanghai")).date()


def _check_window(sale_from: datetime | None, sale_to: datetime | None) -> None:
    if sale_from is not None and sale_to is not None and sale_from >= sale_to:
        raise ValidationFailed(
            "The sale window must end after it starts.",
            errors=[field_error("sale_to", "must be after sale_from", "window")],
        )


def _gift_snapshot(gift: MallGift) -> dict[str, Any]:
    return {
        "code": gift.code,
        "name": gift.name,
        "description": gift.description,
        "kind": gift.kind,
        "points_price": gift.points_price,
        "cash_price": str(to_money(gift.cash_price)),
        "status": gift.status,
        "sale_from": gift.sale_from.isoformat() if gift.sale_from else None,
        "sale_to": gift.sale_to.isoformat() if gift.sale_to else None,
        "limit_per_member": gift.limit_per_member,
        "limit_per_member_per_day": gift.limit_per_member_per_day,
        "payment_minutes": gift.payment_minutes,
    }


def client_key(body_key: str | None, header_key: str | None) -> str:
    """The redemption's idempotency key: the body's ``idempotency_key`` or the ``Idempotency-Key`` header
    (at most 150 characters: the mall prefixes it before it reaches the ledger)."""
    from huiyuan.points.service import operation_key

    return operation_key(body_key, header_key, max_length=150)


# -- gifts ------------------------------------------------------------------------------------------


def create_gift(session: Session, *, actor: Principal, data: GiftIn) -> MallGift:
    """Add a gift to the brand's mall, with its opening stock as the first stock entry."""
    brand_id = actor.scope.require_brand()
    repo = MallRepository(session)
    if (existing := repo.gift_by_code(brand_id, data.code)) is not None:
        raise Conflict(
            f"Gift '{data.code}' exists.",
            errors=[field_error("code", "already in use", "taken")],
            existing_gift_id=existing.id,
        )
    pt = ledger.point_type_by_code(session, brand_id, data.point_type)
    if not pt.spendable or pt.kind == "wallet":  # wallet money is spent only through huiyuan.wallet
        raise ValidationFailed(
            f"Points of type '{pt.code}' cannot be spent.",
            errors=[field_error("point_type", "not a spendable point type", "not-spendable")],
        )
    _check_window(data.sale_from, data.sale_to)
    if data.kind == "third_party_code" and data.stock:
        raise ValidationFailed(
            "A third-party-code gift gets its stock by importing codes.",
            errors=[field_error("stock", "must be 0 for third_party_code gifts", "codes-only")],
        )
    gift = MallGift(
        brand_id=brand_id,
        code=data.code,
        name=data.name,
        description=data.description,
        kind=data.kind,
        point_type_id=pt.id,
        points_price=data.points_price,
        cash_price=data.cash_price,
        status=data.status,
        sale_from=data.sale_from,
        sale_to=data.sale_to,
        limit_per_member=data.limit_per_member,
        limit_per_member_per_day=data.limit_per_member_per_day,
        payment_minutes=data.payment_minutes,
        stock_available=0,
    )
    session.add(gift)
    session.flush()
    if data.stock:
        _move_stock(session, actor, gift, "restock", data.stock, reason="opening stock")
    after = {**_gift_snapshot(gift), "stock": data.stock}
    audit.record(
        session,
        actor=actor,
        action="mall_gift.created",
        entity_type="mall_gift",
        entity_id=gift.id,
        brand_id=brand_id,
        after=after,
    )
    emit(
        session,
        type="mall.gift_created",
        brand_id=brand_id,
        aggregate_type="mall_gift",
        aggregate_id=gift.id,
        payload={"gift_id": gift.id, **after},
    )
    session.flush()
    return gift


def get_gift(session: Session, gift_id: int) -> MallGift:
    """The gift with this id in the caller's scope, or 404."""
    gift = MallRepository(session).gift(gift_id)
    if gift is None:
        raise NotFound(f"Gift {gift_id} was not found.")
    return gift


def list_gifts(
    session: Session, *, status: str | None, kind: str | None, after_id: int | None, limit: int
) -> list[MallGift]:
    """Gifts of the caller's scope in id order."""
    return MallRepository(session).gifts(status=status, kind=kind, after_id=after_id, limit=limit)


def list_gifts_on_sale(session: Session, *, after_id: int | None, limit: int) -> list[MallGift]:
    """Active gifts whose sale window is open now, for members."""
    return MallRepository(session).gifts_on_sale(utcnow(), after_id=after_id, limit=limit)


def update_gift(session: Session, *, actor: Principal, gift_id: int, data: GiftUpdate) -> MallGift:
    """Change a gift; only the fields sent change. A retired gift stays retired."""
    gift = _locked_gift(session, gift_id)
    before = _gift_snapshot(gift)
    sent = data.model_dump(exclude_unset=True)
    if gift.status == "retired" and sent.get("status", "retired") != "retired":
        raise Conflict(
            "A retired gift cannot be put back on sale.", errors=[field_error("status", "retired")]
        )
    nullable = {"description", "sale_from", "sale_to", "limit_per_member", "limit_per_member_per_day"}
    for name, value in sent.items():
        if value is None and name not in nullable:
            continue
        setattr(gift, name, value)
    _check_window(gift.sale_from, gift.sale_to)
    after = _gift_snapshot(gift)
    if after == before:
        return gift
    session.flush()
    audit.record(
        session,
        actor=actor,
        action="mall_gift.updated",
        entity_type="mall_gift",
        entity_id=gift.id,
        brand_id=gift.brand_id,
        before=before,
        after=after,
    )
    emit(
        session,
        type="mall.gift_updated",
        brand_id=gift.brand_id,
        aggregate_type="mall_gift",
        aggregate_id=gift.id,
        payload={"gift_id": gift.id, **after},
    )
    return gift


def restock(
    session: Session, *, actor: Principal, gift_id: int, quantity: int, reason: str | None
) -> MallGift:
    """Add stock (``quantity`` > 0, a ``restock``) or write it off (< 0, an ``adjust``)."""
    gift = _locked_gift(session, gift_id)
    if gift.kind == "third_party_code":
        raise ValidationFailed(
            "A third-party-code gift gets its stock by importing codes.",
            errors=[field_error("quantity", "import codes instead", "codes-only")],
        )
    if quantity == 0:
        raise ValidationFailed(
            "The quantity must not be 0.", errors=[field_error("quantity", "must not be 0")]
        )
    before = gift.stock_available
    kind = "restock" if quantity > 0 else "adjust"
    _move_stock(session, actor, gift, kind, quantity, reason=reason)
    session.flush()
    audit.record(
        session,
        actor=actor,
        action=f"mall_gift.{kind}",
        entity_type="mall_gift",
        entity_id=gift.id,
        brand_id=gift.brand_id,
        before={"stock_available": before},
        after={"stock_available": gift.stock_available},
        note=reason,
    )
    return gift


# -- third-party codes ------------------------------------------------------------------------------


def import_codes(
    session: Session, *, actor: Principal, gift_id: int, content: bytes | None, filename: str | None
) -> CodeImportOut:
    """Add single-use codes from a CSV (``mall_codes.read_code_file``) to a gift.

    Idempotent: codes the gift already has, and repeats within the file, are counted as duplicates
    and added once. Each added code is one unit of stock.
    """
    gift = _locked_gift(session, gift_id)
    if gift.kind != "third_party_code":
        raise ValidationFailed(
            "Only third-party-code gifts take codes.",
            errors=[field_error("file", "the gift is not a third_party_code gift", "not-a-code-gift")],
        )
    codes = read_code_file(content)
    existing = MallRepository(session).existing_codes(gift.id, codes.codes)
    new = [c for c in codes.codes if c not in existing]
    if new:
        now = utcnow()
        session.execute(
            insert(MallGiftCode),
            [
                {
                    "brand_id": gift.brand_id,
                    "gift_id": gift.id,
                    "code": c,
                    "status": "available",
                    "created_at": now,
                }
                for c in new
            ],
        )
        _move_stock(session, actor, gift, "restock", len(new), reason=f"{len(new)} codes imported"[:200])
        session.flush()
    result = CodeImportOut(
        gift_id=gift.id,
        added=len(new),
        duplicates=codes.repeats + len(existing),
        invalid=codes.invalid,
        errors=codes.errors,
        stock_available=gift.stock_available,
    )
    audit.record(
        session,
        actor=actor,
        action="mall_gift.codes_imported",
        entity_type="mall_gift",
        entity_id=gift.id,
        brand_id=gift.brand_id,
        after={"added": result.added, "duplicates": result.duplicates, "invalid": codes.invalid},
        note=(filename or "")[:200] or None,
    )
    return result


# -- redemptions ------------------------------------------------------------------------------------


@dataclass
class RedemptionResult:
    redemption: MallRedemption
    replayed: bool = False


def _digest(payload: dict[str, Any]) -> str:
    canonical = json.dumps(payload, sort_keys=True, default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


def _entry_of(session: Session, operation_id: int, kind: str) -> int:
    found = session.scalar(
        select(PointEntry.id).where(PointEntry.operation_id == operation_id, PointEntry.kind == kind)
    )
    assert found is not None, (operation_id, kind)
    return found


def _take_codes(
    session: Session, gift: MallGift, redemption: MallRedemption, status: str, now: datetime
) -> None:
    """Give the redemption ``quantity`` available codes (the gift row is locked, so no one else can)."""
    codes = MallRepository(session).available_codes(gift.id, redemption.quantity)
    if len(codes) != redemption.quantity:
        raise RuntimeError(f"gift {gift.id}: stock says {gift.stock_available}, codes say {len(codes)}")
    done = session.execute(
        update(MallGiftCode)
        .where(MallGiftCode.id.in_([c.id for c in codes]), MallGiftCode.status == "available")
        .values(status=status, redemption_id=redemption.id, assigned_at=now if status == "assigned" else None)
        .execution_options(synchronize_session=False)
    )
    if done.rowcount != len(codes):  # type: ignore[attr-defined]
        raise RuntimeError(f"gift {gift.id}: a code was taken twice")


def _set_codes(
    session: Session, redemption: MallRedemption, from_status: str, to_status: str, now: datetime
) -> None:
    values: dict[str, Any] = {"status": to_status}
    if to_status == "assigned":
        values["assigned_at"] = now
    if to_status == "available":
        values["redemption_id"] = None
    session.execute(
        update(MallGiftCode)
        .where(MallGiftCode.redemption_id == redemption.id, MallGiftCode.status == from_status)
        .values(**values)
        .execution_options(synchronize_session=False)
    )


def _event(session: Session, type: str, redemption: MallRedemption, gift: MallGift) -> None:
    emit(
        session,
        type=type,
        brand_id=redemption.brand_id,
        aggregate_type="member",
        aggregate_id=redemption.member_id,
        payload={
            "redemption_id": redemption.id,
            "gift_id": gift.id,
            "gift_code": gift.code,
            "member_id": redemption.member_id,
            "quantity": redemption.quantity,
            "points": redemption.points,
            "cash_amount": str(to_money(redemption.cash_amount)),
            "status": redemption.status,
        },
    )


def _expire(
    session: Session, actor: Principal, gift: MallGift, redemption: MallRedemption, now: datetime
) -> None:
    """An unpaid redemption past ``pay_by``: stock and held codes come back. The ledger times the
    reserved points out itself (they are released when the account is next touched or swept)."""
    _move_stock(
        session,
        actor,
        gift,
        "release",
        redemption.quantity,
        redemption_id=redemption.id,
        reason="payment timed out",
    )
    _set_codes(session, redemption, "held", "available", now)
    redemption.status = "expired"
    redemption.cancelled_at = now
    redemption.cancel_reason = "payment timed out"
    redemption.stock_returned = redemption.quantity
    session.flush()
    _event(session, "mall.redemption_expired", redemption, gift)


def _expire_overdue_of(session: Session, actor: Principal, gift: MallGift, now: datetime) -> None:
    for redemption in MallRepository(session).overdue(now, gift_id=gift.id, limit=100):
        _expire(session, actor, gift, redemption, now)


def redeem(
    session: Session,
    *,
    actor: Principal,
    member_id: int,
    gift_id: int,
    quantity: int,
    key: str,
    channel: str = "staff",
) -> RedemptionResult:
    """Exchange a member's points (and, for points + cash, a payment to come) for a gift."""
    brand_id = actor.scope.require_brand()
    repo = MallRepository(session)
    digest = _digest({"gift": gift_id, "member": member_id, "quantity": quantity})
    member = session.get(Member, member_id)
    if member is None:
        raise NotFound(f"Member {member_id} was not found.")
    _lock_key(session, brand_id, key)
    gift = _locked_gift(session, gift_id)
    if (done := repo.redemption_by_key(brand_id, key)) is not None:
        if done.request_hash != digest:
            raise IdempotencyMismatch(
                "This idempotency key was already used for a different redemption.",
                errors=[field_error("idempotency_key", "already used with another request", "reused")],
            )
        return RedemptionResult(done, replayed=True)
    if member.status in ("closed", "frozen"):
        raise MemberCannotRedeem(
            f"A {member.status} member cannot redeem gifts.", member_status=member.status
        )
    now = utcnow()
    _expire_overdue_of(session, actor, gift, now)
    if gift.status != "active":
        raise GiftNotOnSale(f"The gift is {gift.status}.", reason=gift.status)
    if gift.sale_from is not None and now < gift.sale_from:
        raise GiftNotOnSale("The gift's sale has not started.", reason="not_started")
    if gift.sale_to is not None and now >= gift.sale_to:
        raise GiftNotOnSale("The gift's sale has ended.", reason="ended")
    day = _local_day(session, brand_id, now)
    for limit, on_day, what in (
        (gift.limit_per_member, None, "in all"),
        (gift.limit_per_member_per_day, day, "per day"),
    ):
        if limit is None:
            continue
        used = repo.redeemed_units(gift.id, member_id, on_day=on_day)
        if used + quantity > limit:
            raise RedemptionLimitReached(
                f"At most {limit} per member {what}; {used} already redeemed.",
                limit=limit,
                used=used,
                period="day" if on_day else "total",
            )
    if gift.stock_available < quantity:
        raise OutOfStock(
            f"{quantity} units were asked for; {gift.stock_available} are in stock.",
            stock_available=gift.stock_available,
        )
    pt = session.get(PointType, gift.point_type_id)
    assert pt is not None
    points = gift.points_price * quantity
    cash = to_money(gift.cash_price * quantity)
    with_cash = cash > ZERO
    redemption = MallRedemption(
        brand_id=brand_id,
        key=key,
        request_hash=digest,
        gift_id=gift.id,
        member_id=member_id,
        point_type_id=pt.id,
        quantity=quantity,
        points=points,
        cash_amount=cash,
        status="awaiting_payment" if with_cash else "completed",
        local_day=day,
        channel=channel,
    )
    if with_cash:
        redemption.reservation_key = f"mall-hold:{key}"
        held = ledger.reserve(
            session,
            actor=actor,
            member_id=member_id,
            point_type=pt.code,
            amount=points,
            key=redemption.reservation_key,
            ttl_minutes=gift.payment_minutes,
        )
        redemption.pay_by = datetime.fromisoformat(held.extra["expires_at"])
    else:
        spent = ledger.spend(
            session,
            actor=actor,
            member_id=member_id,
            point_type=pt.code,
            amount=points,
            key=f"mall:{key}",
            source_type="mall",
            source_id=gift.code,
        )
        redemption.spend_entry_id = _entry_of(session, spent.operation_id, "spend")
    session.add(redemption)
    session.flush()
    _move_stock(
        session, actor, gift, "reserve" if with_cash else "redeem", -quantity, redemption_id=redemption.id
    )
    if gift.kind == "third_party_code":
        _take_codes(session, gift, redemption, "held" if with_cash else "assigned", now)
    session.flush()
    audit.record(
        session,
        actor=actor,
        action="mall.redeemed",
        entity_type="mall_redemption",
        entity_id=redemption.id,
        brand_id=brand_id,
        after={
            "gift_id": gift.id,
            "gift_code": gift.code,
            "member_id": member_id,
            "quantity": quantity,
            "points": points,
            "cash_amount": str(cash),
            "status": redemption.status,
        },
    )
    _event(session, "mall.redeemed", redemption, gift)
    return RedemptionResult(redemption)


def get_redemption(session: Session, redemption_id: int) -> MallRedemption:
    """The redemption with this id in the caller's scope, or 404."""
    found = MallRepository(session).redemption(redemption_id)
    if found is None:
        raise NotFound(f"Redemption {redemption_id} was not found.")
    return found


def _locked_redemption(session: Session, redemption_id: int) -> tuple[MallRedemption, MallGift]:
    redemption = get_redemption(session, redemption_id)
    gift = _locked_gift(session, redemption.gift_id)
    session.refresh(redemption)  # what the previous holder of the gift lock left
    return redemption, gift


def pay_redemption(
    session: Session,
    *,
    actor: Principal,
    redemption_id: int,
    payment_reference: str,
    amount: Decimal | None = None,
) -> RedemptionResult:
    """Record the cash payment of a points + cash redemption: its points are spent, codes revealed."""
    redemption, gift = _locked_redemption(session, redemption_id)
    if redemption.status == "completed" and redemption.payment_reference == payment_reference:
        return RedemptionResult(redemption, replayed=True)
    if redemption.status != "awaiting_payment":
        raise RedemptionClosed(f"The redemption is {redemption.status}.", redemption_status=redemption.status)
    if amount is not None and to_money(amount) != to_money(redemption.cash_amount):
        raise ValidationFailed(
            f"{to_money(redemption.cash_amount)} is due.",
            errors=[field_error("amount", f"must be {to_money(redemption.cash_amount)}", "amount-mismatch")],
        )
    now = utcnow()
    assert redemption.pay_by is not None and redemption.reservation_key is not None
    if redemption.pay_by <= now:
        raise RedemptionClosed("The time to pay has run out.", redemption_status="expired")
    confirmed = ledger.confirm(session, actor=actor, reservation_key=redemption.reservation_key)
    redemption.spend_entry_id = _entry_of(session, confirmed.operation_id, "confirm")
    _set_codes(session, redemption, "held", "assigned", now)
    redemption.status = "completed"
    redemption.payment_reference = payment_reference
    redemption.paid_at = now
    session.flush()
    audit.record(
        session,
        actor=actor,
        action="mall.redemption_paid",
        entity_type="mall_redemption",
        entity_id=redemption.id,
        brand_id=redemption.brand_id,
        before={"status": "awaiting_payment"},
        after={"status": "completed", "payment_reference": payment_reference},
    )
    _event(session, "mall.redemption_paid", redemption, gift)
    return RedemptionResult(redemption)


def cancel_redemption(
    session: Session, *, actor: Principal, redemption_id: int, reason: str
) -> RedemptionResult:
    """Cancel an unpaid redemption or take back a completed one: points and stock come back
    (revealed third-party codes do not)."""
    redemption, gift = _locked_redemption(session, redemption_id)
    if redemption.status in ("cancelled", "expired"):
        return RedemptionResult(redemption, replayed=True)
    now = utcnow()
    before = redemption.status
    if before == "awaiting_payment":
        assert redemption.pay_by is not None and redemption.reservation_key is not None
        if redemption.pay_by <= now:
            _expire(session, actor, gift, redemption, now)
            return RedemptionResult(redemption)
        ledger.release(session, actor=actor, reservation_key=redemption.reservation_key)
        _move_stock(
            session, actor, gift, "release", redemption.quantity, redemption_id=redemption.id, reason=reason
        )
        _set_codes(session, redemption, "held", "available", now)
        redemption.stock_returned = redemption.quantity
    else:
        assert redemption.spend_entry_id is not None
        ledger.restore_entry(
            session,
            actor=actor,
            entry_id=redemption.spend_entry_id,
            amount=redemption.points,
            key=f"mall-return:{redemption.id}",
            reason=reason,
            source_type="mall",
            source_id=gift.code,
        )
        if gift.kind != "third_party_code":
            _move_stock(
                session,
                actor,
                gift,
                "return",
                redemption.quantity,
                redemption_id=redemption.id,
                reason=reason,
            )
            redemption.stock_returned = redemption.quantity
    redemption.points_restored = redemption.points
    redemption.status = "cancelled"
    redemption.cancelled_at = now
    redemption.cancel_reason = reason
    session.flush()
    audit.record(
        session,
        actor=actor,
        action="mall.redemption_cancelled",
        entity_type="mall_redemption",
        entity_id=redemption.id,
        brand_id=redemption.brand_id,
        before={"status": before},
        after={"status": "cancelled", "stock_returned": redemption.stock_returned},
        note=reason,
    )
    _event(session, "mall.redemption_cancelled", redemption, gift)
    return RedemptionResult(redemption)


def expire_overdue_redemptions(
    session: Session, *, actor: Principal, now: datetime | None = None, limit: int = 200
) -> int:
    """Expire the brand's unpaid redemptions past ``pay_by``, gifts locked in id order; returns how many."""
    now = now or utcnow()
    due = MallRepository(session).overdue(now, limit=limit)
    count = 0
    for gift_id in sorted({r.gift_id for r in due}):
        gift = _locked_gift(session, gift_id)
        for redemption in due:
            if redemption.gift_id != gift_id:
                continue
            session.refresh(redemption)
            if redemption.status == "awaiting_payment":
                _expire(session, actor, gift, redemption, now)
                count += 1
    return count


def list_member_redemptions(
    session: Session, member_id: int, *, before_id: int | None, limit: int
) -> list[MallRedemption]:
    """A member's redemptions, newest first."""
    return MallRepository(session).member_redemptions(member_id, before_id=before_id, limit=limit)
