"""Money into and out of a wallet: top-ups, payments (one step, or held then confirmed or
released), each one wallet operation over the two sub-ledgers.

* **Top-up**: the best matching top-up rule (``wallet.rules``) sets the bonus; the principal lot
  (``amount``) and the bonus lot are two ``ledger.earn`` calls with source ``wallet_topup:<id>`` and
  the store, so settlement knows where the cash came in.
* **Payment**: split between the sub-ledgers by the wallet type's spending order
  (``principal_first``: principal until it runs out, then bonus; ``bonus_first``: the reverse),
  counting only lots not past their expiry; then ``ledger.spend`` (one step) or ``ledger.reserve``
  (held until ``confirm`` / ``release`` or its timeout) on each part that is not zero.
* A held payment times out with its ledger holds: the wallet marks it released at its next write
  on the account, and the ledger gives the money back at its next operation on the account or in
  ``points.release_reservations``. Confirming a payment past its time is ``reservation-closed``.

Every verb follows ``wallet.core``'s lock order and idempotency; nothing here commits.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy.orm import Session

from huiyuan.kit.clock import utcnow
from huiyuan.kit.errors import Conflict, NotFound
from huiyuan.kit.scope import Principal
from huiyuan.members.models import Member
from huiyuan.outbox.service import emit
from huiyuan.points import ledger
from huiyuan.points.ledger import ReservationClosed
from huiyuan.tenancy.repository import TenancyRepository
from huiyuan.tiers import reads as tiers
from huiyuan.wallet import accounts, core, rules
from huiyuan.wallet.configuration import bonus_code, principal_code, terms
from huiyuan.wallet.core import BalanceLimit, InsufficientBalance, WalletResult, to_fen, yuan
from huiyuan.wallet.models import WalletAccount, WalletPayment, WalletTopUp, WalletTopUpRule, WalletType
from huiyuan.wallet.repository import WalletRepository
from huiyuan.wallet.schemas import PayIn, PaymentOut, ReserveIn, TopUpIn, TopUpOut


def _member(session: Session, member_id: int) -> Member:
    member = WalletRepository(session).member(member_id)
    if member is None:
        raise NotFound(f"Member {member_id} was not found.")
    return member


def _store_code(session: Session, store_id: int | None) -> str | None:
    if store_id is None:
        return None
    store = WalletRepository(session).stores([store_id]).get(store_id)
    return store.code if store is not None else None


# -- top-ups --------------------------------------------------------------------------------------


def topup_out(session: Session, topup: WalletTopUp, wt: WalletType) -> TopUpOut:
    return TopUpOut(
        id=topup.id,
        key=topup.key,
        wallet_account_id=topup.wallet_account_id,
        member_id=topup.member_id,
        wallet_type=wt.code,
        amount=yuan(topup.amount),
        bonus=yuan(topup.bonus),
        rule_id=topup.rule_id,
        channel=topup.channel,
        store=_store_code(session, topup.store_id),
        payment_ref=topup.payment_ref,
        state=topup.state,
        principal_refunded=yuan(topup.principal_refunded),
        cash_refunded=yuan(topup.cash_refunded),
        created_at=topup.created_at,
    )


def _pick_rule(
    session: Session, wt: WalletType, member: Member, amount: int, channel: str, now: datetime
) -> tuple[WalletTopUpRule | None, int]:
    found = WalletRepository(session).rules(wallet_type_id=wt.id, status="active")
    if not found:
        return None, 0
    tier_code = None
    if any(r.tier_codes for r in found):
        tier = tiers.current_tier(session, member.id)
        tier_code = tier.code if tier is not None else None
    zone = ZoneInfo(TenancyRepository(session).brand(member.brand_id).timezone)
    facts = rules.TopUpFacts(
        amount=amount,
        channel=channel,
        tier_code=tier_code,
        at=now,
        local_weekday=now.astimezone(zone).isoweekday(),
    )
    chosen, bonus = rules.best_rule((terms(r) for r in found), facts)
    if chosen is None or bonus == 0:
        return None, 0
    return next(r for r in found if r.id == chosen.id), bonus


def top_up(session: Session, *, actor: Principal, data: TopUpIn, key: str) -> WalletResult:
    """Pay money into the member's wallet (opened by this first top-up if missing), with the bonus
    of the best matching rule; a retry under ``key`` returns the first result."""
    brand_id = actor.scope.require_brand()
    wt = core.wallet_type(session, brand_id, data.wallet_type)
    member = _member(session, data.member_id)
    amount = to_fen(data.amount)
    store_id = core.store_id(session, brand_id, data.store)
    request_hash = core.digest(
        {
            "op": "topup",
            "member": member.id,
            "type": wt.code,
            "amount": amount,
            "channel": data.channel,
            "store": store_id,
            "payment_ref": data.payment_ref,
        }
    )
    account, _opened = accounts.ensure_account(session, actor=actor, member=member, wt=wt)
    if done := core.replay(session, brand_id=brand_id, key=key, kind="topup", request_hash=request_hash):
        return done
    if member.status == "closed":
        raise Conflict("A closed member cannot top up.", member_status=member.status)
    if wt.status != "active":
        raise Conflict(
            f"Wallet type '{wt.code}' is retired and takes no top-ups.", wallet_type_status=wt.status
        )
    core.require_usable(account)
    now = utcnow()
    core.expire_holds(session, account, now)
    ledgers = core.lock_ledgers(session, account, wt)
    rule, bonus = _pick_rule(session, wt, member, amount, data.channel, now)
    repo = WalletRepository(session)
    if wt.max_balance is not None:
        current = sum(repo.spendable(ledgers.ids, now=now).values()) + ledgers.held
        if current + amount + bonus > wt.max_balance:
            raise BalanceLimit(
                f"The wallet may hold at most {yuan(wt.max_balance)}.",
                max_balance=str(yuan(wt.max_balance)),
                balance=str(yuan(current)),
            )
    topup = WalletTopUp(
        brand_id=brand_id,
        key=key,
        wallet_account_id=account.id,
        member_id=member.id,
        binding_id=core.current_binding_id(session, account),
        amount=amount,
        bonus=bonus,
        rule_id=rule.id if rule is not None else None,
        channel=data.channel,
        store_id=store_id,
        payment_ref=data.payment_ref,
        state="completed",
        created_at=now,
    )
    session.add(topup)
    session.flush()
    for part, units, code, funder in (
        ("p", amount, principal_code(wt.code), "member"),
        ("b", bonus, bonus_code(wt.code), "brand"),
    ):
        if not units:
            continue
        result = ledger.earn(
            session,
            actor=actor,
            member_id=member.id,
            point_type=code,
            amount=units,
            key=core.ledger_key(key, part),
            source_type="wallet_topup",
            source_id=str(topup.id),
            store_id=store_id,
            funded_by=funder,
            pending_days=0,
            reason=f"top-up {data.payment_ref}"[:200],
        )
        if part == "p":
            topup.principal_lot_id = int(result.extra["lot_id"])
        else:
            topup.bonus_lot_id = int(result.extra["lot_id"])
    if rule is not None:
        rule.granted_total = WalletTopUpRule.granted_total + bonus  # type: ignore[assignment]
    session.flush()
    emit(
        session,
        type="wallet.topped_up",
        brand_id=brand_id,
        aggregate_type="wallet_account",
        aggregate_id=account.id,
        payload={
            "wallet_account_id": account.id,
            "member_id": member.id,
            "wallet_type": wt.code,
            "topup_id": topup.id,
            "amount": str(yuan(amount)),
            "bonus": str(yuan(bonus)),
            "rule_id": topup.rule_id,
            "channel": data.channel,
            "store_id": store_id,
        },
    )
    out = topup_out(session, topup, wt)
    out.balance = core.balance_of(session, ledgers)
    return core.remember(
        session,
        actor=actor,
        account=account,
        key=key,
        kind="topup",
        request_hash=request_hash,
        data=out.model_dump(mode="json"),
    )


def get_topup(session: Session, *, actor: Principal, key: str) -> TopUpOut:
    """A top-up by its key, as it stands now (refunds included)."""
    topup = WalletRepository(session).topup_by_key(actor.scope.require_brand(), key)
    if topup is None:
        raise NotFound(f"No top-up '{key}'.")
    account = accounts.get_account(session, topup.wallet_account_id)
    return topup_out(session, topup, core.type_of(session, account))


# -- payments -------------------------------------------------------------------------------------


def payment_out(session: Session, payment: WalletPayment) -> PaymentOut:
    return PaymentOut(
        id=payment.id,
        key=payment.key,
        wallet_account_id=payment.wallet_account_id,
        member_id=payment.member_id,
        amount=yuan(payment.amount),
        principal_amount=yuan(payment.principal_amount),
        bonus_amount=yuan(payment.bonus_amount),
        order_ref=payment.order_ref,
        store=_store_code(session, payment.store_id),
        state=effective_state(payment, utcnow()),
        refunded_principal=yuan(payment.refunded_principal),
        refunded_bonus=yuan(payment.refunded_bonus),
        expires_at=payment.expires_at,
        created_at=payment.created_at,
        settled_at=payment.settled_at,
    )


def effective_state(payment: WalletPayment, now: datetime) -> str:
    """A held payment past its time reads as released before any write has marked it."""
    if payment.state == "held" and payment.expires_at is not None and payment.expires_at <= now:
        return "released"
    return payment.state


def split(spend_order: str, amount: int, principal: int, bonus: int) -> tuple[int, int]:
    """(principal part, bonus part) of a payment of ``amount`` given what each sub-ledger has."""
    if principal + bonus < amount:
        raise InsufficientBalance(
            f"{yuan(amount)} was asked for; the wallet has {yuan(principal + bonus)}.",
            available=str(yuan(principal + bonus)),
        )
    if spend_order == "bonus_first":
        from_bonus = min(bonus, amount)
        return amount - from_bonus, from_bonus
    from_principal = min(principal, amount)
    return from_principal, amount - from_principal


def _payment_account(session: Session, member_id: int, wt: WalletType) -> WalletAccount:
    # Locked by (member, type): a wallet re-bound away while this waited no longer matches.
    account = WalletRepository(session).account_of(member_id, wt.id, for_update=True)
    if account is None:
        raise NotFound(f"Member {member_id} has no wallet of type '{wt.code}'.")
    return account


def pay(session: Session, *, actor: Principal, data: PayIn, key: str, hold: bool) -> WalletResult:
    """Pay from the member's wallet at once (``hold=False``) or hold the money for a checkout
    (``hold=True``, confirmed or released later under the same key)."""
    brand_id = actor.scope.require_brand()
    wt = core.wallet_type(session, brand_id, data.wallet_type)
    amount = to_fen(data.amount)
    store_id = core.store_id(session, brand_id, data.store)
    kind = "reserve" if hold else "pay"
    ttl = (data.ttl_minutes if isinstance(data, ReserveIn) else None) or wt.reservation_minutes
    # The PIN is not part of the request's hash: a retry needs the same request, not the same secret.
    request_hash = core.digest(
        {
            "op": kind,
            "member": data.member_id,
            "type": wt.code,
            "amount": amount,
            "order": data.order_ref,
            "store": store_id,
            "ttl": ttl if hold else None,
        }
    )
    account = _payment_account(session, data.member_id, wt)
    if done := core.replay(session, brand_id=brand_id, key=key, kind=kind, request_hash=request_hash):
        return done
    core.require_usable(account)
    now = utcnow()
    core.expire_holds(session, account, now)
    accounts.check_pin(account, wt, data.pin, now)
    ledgers = core.lock_ledgers(session, account, wt)
    spendable = WalletRepository(session).spendable(ledgers.ids, now=now)
    principal, bonus = split(
        wt.spend_order, amount, spendable[ledgers.principal.id], spendable[ledgers.bonus.id]
    )
    payment = WalletPayment(
        brand_id=brand_id,
        key=key,
        wallet_account_id=account.id,
        member_id=account.member_id,
        binding_id=core.current_binding_id(session, account),
        amount=amount,
        principal_amount=principal,
        bonus_amount=bonus,
        order_ref=data.order_ref,
        store_id=store_id,
        state="held" if hold else "confirmed",
        created_at=now,
        settled_at=None if hold else now,
    )
    session.add(payment)
    session.flush()
    expiries: list[datetime] = []
    for part, units, code in (("p", principal, principal_code(wt.code)), ("b", bonus, bonus_code(wt.code))):
        if not units:
            continue
        if hold:
            result = ledger.reserve(
                session,
                actor=actor,
                member_id=account.member_id,
                point_type=code,
                amount=units,
                key=core.ledger_key(key, part),
                order_ref=data.order_ref,
                store_id=store_id,
                ttl_minutes=ttl,
            )
            setattr(payment, f"{_part(part)}_reservation_id", int(result.extra["reservation_id"]))
            expiries.append(datetime.fromisoformat(str(result.extra["expires_at"])))
        else:
            result = ledger.spend(
                session,
                actor=actor,
                member_id=account.member_id,
                point_type=code,
                amount=units,
                key=core.ledger_key(key, part),
                source_type="wallet_payment",
                source_id=str(payment.id),
                store_id=store_id,
                reason=data.order_ref,
            )
            setattr(payment, f"{_part(part)}_entry_id", result.entries[-1])
    if expiries:
        payment.expires_at = min(expiries)
    session.flush()
    if not hold:
        _emit_paid(session, payment, wt)
    return _answer(session, actor, account, ledgers, payment, key=key, kind=kind, request_hash=request_hash)


def _part(part: str) -> str:
    return "principal" if part == "p" else "bonus"


def _emit_paid(session: Session, payment: WalletPayment, wt: WalletType) -> None:
    emit(
        session,
        type="wallet.paid",
        brand_id=payment.brand_id,
        aggregate_type="wallet_account",
        aggregate_id=payment.wallet_account_id,
        payload={
            "wallet_account_id": payment.wallet_account_id,
            "member_id": payment.member_id,
            "wallet_type": wt.code,
            "payment_id": payment.id,
            "amount": str(yuan(payment.amount)),
            "principal": str(yuan(payment.principal_amount)),
            "bonus": str(yuan(payment.bonus_amount)),
            "order_ref": payment.order_ref,
            "store_id": payment.store_id,
        },
    )


def _answer(
    session: Session,
    actor: Principal,
    account: WalletAccount,
    ledgers: core.Ledgers,
    payment: WalletPayment,
    *,
    key: str,
    kind: str,
    request_hash: str,
) -> WalletResult:
    out = payment_out(session, payment)
    out.balance = core.balance_of(session, ledgers)
    data: dict[str, Any] = out.model_dump(mode="json")
    return core.remember(
        session, actor=actor, account=account, key=key, kind=kind, request_hash=request_hash, data=data
    )


def settle(session: Session, *, actor: Principal, payment_key: str, confirm: bool) -> WalletResult:
    """Confirm (spend) or release a held payment; repeating either returns the first result."""
    brand_id = actor.scope.require_brand()
    repo = WalletRepository(session)
    payment = repo.payment_by_key(brand_id, payment_key)
    if payment is None:
        raise NotFound(f"No payment '{payment_key}'.")
    account = core.lock_account(session, payment.wallet_account_id)
    repo.refresh(payment)
    kind = "confirm" if confirm else "release"
    # "#" is outside the characters client keys may use, so no client key can collide.
    key = f"{payment_key}#{kind}"
    request_hash = core.digest({"op": kind, "payment": payment_key})
    if done := core.replay(session, brand_id=brand_id, key=key, kind=kind, request_hash=request_hash):
        return done
    now = utcnow()
    core.expire_holds(session, account, now)
    if payment.state != "held":
        raise ReservationClosed(f"The payment is {payment.state}.", payment_state=payment.state)
    wt = core.type_of(session, account)
    ledgers = core.lock_ledgers(session, account, wt)
    for part in ("p", "b"):
        if getattr(payment, f"{_part(part)}_reservation_id") is None:
            continue
        reservation_key = core.ledger_key(payment_key, part)
        if confirm:
            result = ledger.confirm(session, actor=actor, reservation_key=reservation_key)
            setattr(payment, f"{_part(part)}_entry_id", result.entries[-1])
        else:
            ledger.release(session, actor=actor, reservation_key=reservation_key)
    payment.state = "confirmed" if confirm else "released"
    payment.settled_at = now
    session.flush()
    if confirm:
        _emit_paid(session, payment, wt)
    return _answer(session, actor, account, ledgers, payment, key=key, kind=kind, request_hash=request_hash)


def get_payment(session: Session, *, actor: Principal, key: str) -> PaymentOut:
    """A payment by its key, as it stands now."""
    payment = WalletRepository(session).payment_by_key(actor.scope.require_brand(), key)
    if payment is None:
        raise NotFound(f"No payment '{key}'.")
    return payment_out(session, payment)
