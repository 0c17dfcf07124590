"""Refunds: money of a payment back into the wallet, and money of a top-up back out of it.

**Payment refunds** (partial or full; all refunds of a payment together never exceed it) give
back principal and bonus in the proportion the payment drew them: after a refund, the principal
refunded so far is ``principal_amount × refunded so far / amount`` rounded half up to the fen and
the bonus is the rest, so the parts of any series of partial refunds add up exactly to the payment.
Each part goes back to the very lots it came from (``ledger.restore_entry``) with their own expiry;
bonus whose lot expired meanwhile is given back and expires at once.

**Top-up refunds** return only principal of that top-up that is still unspent (what remains in its
principal lot; held payments must be settled first). The bonus is clawed back in proportion: after
refunding principal ``x`` of a top-up of ``amount`` with bonus ``bonus``, the bonus owed back so far
is ``bonus × principal refunded so far / amount`` (half up). It is met, in this order, from

1. what is left in the top-up's bonus lot (taken back with ``ledger.reverse_lot``);
2. bonus of the lot that expired unused (forgiven: the member got no value from it);
3. bonus of the lot that was spent: deducted from the cash paid back (``bonus_charged``), so the
   member cannot keep value they did not pay for.

The cash paid back is the principal refunded less ``bonus_charged``; rules never give a bonus above
the top-up, so it is never negative. A wallet re-bound to another member since the payment or
top-up was made refuses its refunds (``wallet-rebound``): the money would land with a different
holder than the one who paid.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.orm import Session

from huiyuan.audit import service as audit
from huiyuan.kit.clock import utcnow
from huiyuan.kit.errors import Conflict, NotFound, ValidationFailed, field_error
from huiyuan.kit.scope import Principal
from huiyuan.outbox.service import emit
from huiyuan.points import ledger
from huiyuan.wallet import core
from huiyuan.wallet.core import (
    HoldsOpen,
    NothingRefundable,
    Rebound,
    WalletClosed,
    WalletResult,
    to_fen,
    yuan,
)
from huiyuan.wallet.models import WalletAccount, WalletRefund, WalletTopUp
from huiyuan.wallet.repository import WalletRepository
from huiyuan.wallet.rules import proportional
from huiyuan.wallet.schemas import RefundIn, RefundOut


def refund_out(session: Session, refund: WalletRefund) -> RefundOut:
    stores = WalletRepository(session).stores([refund.store_id] if refund.store_id else [])
    return RefundOut(
        id=refund.id,
        key=refund.key,
        kind=refund.kind,
        wallet_account_id=refund.wallet_account_id,
        payment_id=refund.payment_id,
        topup_id=refund.topup_id,
        amount=yuan(refund.amount),
        principal=yuan(refund.principal),
        bonus=yuan(refund.bonus),
        bonus_forgiven=yuan(refund.bonus_forgiven),
        bonus_charged=yuan(refund.bonus_charged),
        cash_refund=yuan(refund.cash_refund),
        store=stores[refund.store_id].code if refund.store_id in stores else None,
        reason=refund.reason,
        created_at=refund.created_at,
    )


def _amount_error(limit: int) -> ValidationFailed:
    return ValidationFailed(
        f"At most {yuan(limit)} can still be refunded.",
        errors=[field_error("amount", f"at most {yuan(limit)}", "out-of-range")],
        refundable=str(yuan(limit)),
    )


def _same_holder(session: Session, account: WalletAccount, binding_id: int) -> None:
    if account.status == "closed":
        raise WalletClosed(f"Wallet account {account.id} is closed.")
    if core.current_binding_id(session, account) != binding_id:
        raise Rebound("The wallet was re-bound to another member after this was made; it cannot be refunded.")


def _finish(
    session: Session,
    *,
    actor: Principal,
    account: WalletAccount,
    ledgers: core.Ledgers,
    refund: WalletRefund,
    key: str,
    request_hash: str,
    subject: dict[str, object],
) -> WalletResult:
    session.flush()
    payload = {
        "wallet_account_id": account.id,
        "member_id": account.member_id,
        "refund_id": refund.id,
        "kind": refund.kind,
        "amount": str(yuan(refund.amount)),
        "principal": str(yuan(refund.principal)),
        "bonus": str(yuan(refund.bonus)),
        "cash_refund": str(yuan(refund.cash_refund)),
        "store_id": refund.store_id,
        **subject,
    }
    emit(
        session,
        type="wallet.refunded",
        brand_id=account.brand_id,
        aggregate_type="wallet_account",
        aggregate_id=account.id,
        payload=payload,
    )
    audit.record(
        session,
        actor=actor,
        action=f"wallet.{refund.kind}_refunded",
        entity_type="wallet_account",
        entity_id=account.id,
        brand_id=account.brand_id,
        after={k: v for k, v in payload.items() if k not in ("wallet_account_id", "member_id")},
        note=refund.reason,
    )
    out = refund_out(session, refund)
    out.balance = core.balance_of(session, ledgers)
    return core.remember(
        session,
        actor=actor,
        account=account,
        key=key,
        kind="refund",
        request_hash=request_hash,
        data=out.model_dump(mode="json"),
    )


def refund_payment(
    session: Session, *, actor: Principal, payment_key: str, data: RefundIn, key: str
) -> WalletResult:
    """Give (part of) a confirmed payment back to the wallet, principal and bonus in proportion."""
    brand_id = actor.scope.require_brand()
    repo = WalletRepository(session)
    payment = repo.payment_by_key(brand_id, payment_key)
    if payment is None:
        raise NotFound(f"No payment '{payment_key}'.")
    account = core.lock_account(session, payment.wallet_account_id)
    repo.refresh(payment)
    store_id = core.store_id(session, brand_id, data.store) if data.store else payment.store_id
    asked = to_fen(data.amount) if data.amount is not None else None
    request_hash = core.digest(
        {
            "op": "refund_payment",
            "payment": payment_key,
            "amount": asked,
            "reason": data.reason,
            "store": store_id,
        }
    )
    if done := core.replay(session, brand_id=brand_id, key=key, kind="refund", request_hash=request_hash):
        return done
    _same_holder(session, account, payment.binding_id)
    core.expire_holds(session, account, utcnow())
    if payment.state in ("held", "released"):
        raise Conflict(
            f"A {payment.state} payment has nothing to refund; release a held payment instead.",
            payment_state=payment.state,
        )
    left = payment.amount - payment.refunded_principal - payment.refunded_bonus
    if left == 0:
        raise NothingRefundable("The payment was refunded in full.", payment_state=payment.state)
    amount = left if asked is None else asked
    if amount > left:
        raise _amount_error(left)
    refunded = payment.refunded_principal + payment.refunded_bonus + amount
    principal = proportional(payment.principal_amount, refunded, payment.amount) - payment.refunded_principal
    bonus = amount - principal
    assert principal >= 0 and 0 <= bonus <= payment.bonus_amount - payment.refunded_bonus
    ledgers = core.lock_ledgers(session, account, core.type_of(session, account))
    refund = WalletRefund(
        brand_id=brand_id,
        key=key,
        kind="payment",
        wallet_account_id=account.id,
        payment_id=payment.id,
        amount=amount,
        principal=principal,
        bonus=bonus,
        store_id=store_id,
        reason=data.reason,
        actor=actor.label[:120],
        created_at=utcnow(),
    )
    session.add(refund)
    session.flush()
    for part, units, entry_id in (
        ("p", principal, payment.principal_entry_id),
        ("b", bonus, payment.bonus_entry_id),
    ):
        if not units:
            continue
        assert entry_id is not None
        ledger.restore_entry(
            session,
            actor=actor,
            entry_id=entry_id,
            amount=units,
            key=core.ledger_key(key, part),
            reason=data.reason,
            source_type="wallet_refund",
            source_id=str(refund.id),
        )
    payment.refunded_principal += principal
    payment.refunded_bonus += bonus
    payment.state = "refunded" if refunded == payment.amount else "partially_refunded"
    return _finish(
        session,
        actor=actor,
        account=account,
        ledgers=ledgers,
        refund=refund,
        key=key,
        request_hash=request_hash,
        subject={"payment_id": payment.id, "order_ref": payment.order_ref},
    )


def refund_topup(
    session: Session, *, actor: Principal, topup_key: str, data: RefundIn, key: str
) -> WalletResult:
    """Pay back unspent principal of a top-up in cash, clawing back its bonus in proportion."""
    brand_id = actor.scope.require_brand()
    repo = WalletRepository(session)
    topup = repo.topup_by_key(brand_id, topup_key)
    if topup is None:
        raise NotFound(f"No top-up '{topup_key}'.")
    account = core.lock_account(session, topup.wallet_account_id)
    repo.refresh(topup)
    store_id = core.store_id(session, brand_id, data.store) if data.store else topup.store_id
    asked = to_fen(data.amount) if data.amount is not None else None
    request_hash = core.digest(
        {"op": "refund_topup", "topup": topup_key, "amount": asked, "reason": data.reason, "store": store_id}
    )
    if done := core.replay(session, brand_id=brand_id, key=key, kind="refund", request_hash=request_hash):
        return done
    _same_holder(session, account, topup.binding_id)
    now = utcnow()
    core.expire_holds(session, account, now)
    ledgers = core.lock_ledgers(session, account, core.type_of(session, account))
    if ledgers.held:
        raise HoldsOpen("Confirm or release the wallet's held payments before refunding a top-up.")
    assert topup.principal_lot_id is not None
    principal_lot = repo.lot(topup.principal_lot_id)
    assert principal_lot is not None
    refundable = principal_lot.remaining
    if refundable == 0:
        raise NothingRefundable("Nothing of this top-up is left unspent.", topup_state=topup.state)
    principal = refundable if asked is None else asked
    if principal > refundable:
        raise _amount_error(refundable)
    claw = _claw_back(session, topup, principal, now)
    charged = claw.charged
    refund = WalletRefund(
        brand_id=brand_id,
        key=key,
        kind="topup",
        wallet_account_id=account.id,
        topup_id=topup.id,
        amount=principal,
        principal=principal,
        bonus=claw.from_lot,
        bonus_forgiven=claw.forgiven,
        bonus_charged=charged,
        cash_refund=principal - charged,
        store_id=store_id,
        reason=data.reason,
        actor=actor.label[:120],
        created_at=now,
    )
    session.add(refund)
    session.flush()
    for part, units, lot_id in (
        ("p", principal, topup.principal_lot_id),
        ("b", claw.from_lot, topup.bonus_lot_id),
    ):
        if not units:
            continue
        assert lot_id is not None
        ledger.reverse_lot(
            session,
            actor=actor,
            lot_id=lot_id,
            amount=units,
            key=core.ledger_key(key, part),
            reason=data.reason,
            source_type="wallet_refund",
            source_id=str(refund.id),
        )
    topup.principal_refunded += principal
    topup.cash_refunded += principal - charged
    topup.bonus_reversed += claw.from_lot
    topup.bonus_forgiven += claw.forgiven
    topup.bonus_charged += charged
    topup.state = "refunded" if topup.principal_refunded == topup.amount else "partially_refunded"
    return _finish(
        session,
        actor=actor,
        account=account,
        ledgers=ledgers,
        refund=refund,
        key=key,
        request_hash=request_hash,
        subject={"topup_id": topup.id, "payment_ref": topup.payment_ref},
    )


@dataclass(frozen=True)
class _Claw:
    from_lot: int = 0
    forgiven: int = 0
    charged: int = 0


def _claw_back(session: Session, topup: WalletTopUp, principal: int, now: datetime) -> _Claw:
    """How the bonus owed back for refunding ``principal`` more of the top-up is met."""
    if not topup.bonus or topup.bonus_lot_id is None:
        return _Claw()
    owed_so_far = proportional(topup.bonus, topup.principal_refunded + principal, topup.amount)
    owed = owed_so_far - (topup.bonus_reversed + topup.bonus_forgiven + topup.bonus_charged)
    if owed <= 0:
        return _Claw()
    repo = WalletRepository(session)
    lot = repo.lot(topup.bonus_lot_id)
    assert lot is not None
    expired = repo.expired_from_lot(lot.id)
    left_in_lot = lot.remaining
    if lot.expires_at is not None and lot.expires_at <= now:
        # Past its expiry, not yet swept: what is left is expiring, not spendable.
        expired, left_in_lot = expired + lot.remaining, 0
    from_lot = min(owed, left_in_lot)
    forgiven = min(owed - from_lot, max(0, expired - topup.bonus_forgiven))
    charged = owed - from_lot - forgiven
    return _Claw(from_lot=from_lot, forgiven=forgiven, charged=charged)
