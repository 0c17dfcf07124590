"""What every wallet verb shares: its errors, money in fen, the idempotent operation record, and
the locks, taken in one order by every writer.

**Lock order.** A wallet write locks its ``WalletAccount`` row first, then (PostgreSQL) the
advisory lock of its idempotency key, then the wallet's ledger accounts in id order, the ledger's
own rule (``points.ledger``: accounts of one operation in id order); the ledger verbs it calls
then re-take locks this transaction already holds. Nothing that holds a ledger account lock ever
waits for a wallet row (the ledger's sweeps lock ledger accounts only, in id order), so there are
no cycles. On SQLite the write transaction is ``BEGIN IMMEDIATE`` and writers are serialised.

**Idempotency.** A wallet write is several ledger operations, so the wallet keeps its own
``WalletOperation`` per client key (brand-unique over every wallet write): looked up *after* the
account lock, so racers with one key queue and the losers read the winner's committed result. The
ledger operations underneath get keys derived from it (``wallet:<key>:p`` and ``wallet:<key>:b``),
which also stops another path from reusing them.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import datetime
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from sqlalchemy.orm import Session

from huiyuan.kit.clock import utcnow
from huiyuan.kit.db import advisory_lock
from huiyuan.kit.errors import AppError, IdempotencyMismatch, NotFound, ValidationFailed, field_error
from huiyuan.kit.scope import Principal
from huiyuan.points import ledger
from huiyuan.points.models import PointAccount
from huiyuan.wallet.models import WalletAccount, WalletOperation, WalletType
from huiyuan.wallet.repository import WalletRepository
from huiyuan.wallet.schemas import BalanceOut

CENT = Decimal("0.01")


class InsufficientBalance(AppError):
    status = 409
    code = "insufficient-balance"
    title = "Not enough money in the wallet"


class WalletLocked(AppError):
    status = 409
    code = "wallet-locked"
    title = "The wallet is locked"


class WalletClosed(AppError):
    status = 409
    code = "wallet-closed"
    title = "The wallet is closed"


class WalletNotEmpty(AppError):
    status = 409
    code = "wallet-not-empty"
    title = "The wallet still holds money or open holds"


class HoldsOpen(AppError):
    status = 409
    code = "wallet-holds-open"
    title = "The wallet has open holds"


class BalanceLimit(AppError):
    status = 409
    code = "wallet-balance-limit"
    title = "The top-up would exceed the wallet's maximum balance"


class Rebound(AppError):
    status = 409
    code = "wallet-rebound"
    title = "The wallet was re-bound to another member since"


class NothingRefundable(AppError):
    status = 409
    code = "nothing-refundable"
    title = "Nothing of this is left to refund"


class PinRequired(AppError):
    status = 403
    code = "pin-required"
    title = "The wallet's PIN is required"


class PinNotSet(AppError):
    status = 409
    code = "pin-not-set"
    title = "This wallet type requires a PIN and the wallet has none yet"


class PinLocked(AppError):
    status = 423
    code = "pin-locked"
    title = "Too many wrong PINs; the PIN is locked for a while"


class PinIncorrect(AppError):
    """A wrong PIN. The attempt must count although the request fails: ``account_id`` tells the
    router which account's failure to record after the rollback (``accounts.record_pin_failure``)."""

    status = 403
    code = "pin-incorrect"
    title = "The PIN is not correct"

    def __init__(self, detail: str | None = None, *, account_id: int, **extra: Any) -> None:
        super().__init__(detail, **extra)
        self.account_id = account_id


@dataclass
class WalletResult:
    """What a wallet write answered (the response body as JSON) and whether it is a replay."""

    data: dict[str, Any]
    replayed: bool = False


# -- money ----------------------------------------------------------------------------------------


def to_fen(amount: Decimal) -> int:
    return int((amount.quantize(CENT, ROUND_HALF_UP) * 100).to_integral_value())


def yuan(fen: int) -> Decimal:
    return (Decimal(fen) / 100).quantize(CENT)


def digest(payload: dict[str, Any]) -> str:
    canonical = json.dumps(payload, sort_keys=True, default=str, ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()


def ledger_key(key: str, part: str) -> str:
    """The ledger key of one part (``p`` principal, ``b`` bonus) of the wallet write ``key``."""
    return f"wallet:{key}:{part}"


# -- look-ups -------------------------------------------------------------------------------------


def wallet_type(session: Session, brand_id: int, code: str) -> WalletType:
    wt = WalletRepository(session).type_by_code(brand_id, code)
    if wt is None:
        raise ValidationFailed(
            f"Unknown wallet type '{code}'.",
            errors=[field_error("wallet_type", "no such wallet type", "unknown-wallet-type")],
        )
    return wt


def type_of(session: Session, account: WalletAccount) -> WalletType:
    wt = WalletRepository(session).type(account.wallet_type_id)
    assert wt is not None
    return wt


def store_id(session: Session, brand_id: int, code: str | None) -> int | None:
    if code is None:
        return None
    store = WalletRepository(session).store_by_code(brand_id, code)
    if store is None:
        raise ValidationFailed(
            "Unknown store.", errors=[field_error("store", "no such store", "unknown-store")]
        )
    return store.id


# -- locks ----------------------------------------------------------------------------------------


def lock_account(session: Session, account_id: int) -> WalletAccount:
    """The wallet account, locked for this transaction (first of a wallet write's locks)."""
    account = WalletRepository(session).account(account_id, for_update=True)
    if account is None:
        raise NotFound(f"Wallet account {account_id} was not found.")
    return account


@dataclass
class Ledgers:
    """A wallet's two ledger accounts for its current member, locked."""

    principal: PointAccount
    bonus: PointAccount

    @property
    def ids(self) -> tuple[int, int]:
        return self.principal.id, self.bonus.id

    @property
    def held(self) -> int:
        return self.principal.reserved + self.bonus.reserved


def lock_ledgers(session: Session, account: WalletAccount, wt: WalletType) -> Ledgers:
    """Lock (creating if missing) the member's ledger accounts of the wallet's two point types,
    in account id order."""
    return lock_member_ledgers(session, account.brand_id, account.member_id, wt)


def lock_member_ledgers(session: Session, brand_id: int, member_id: int, wt: WalletType) -> Ledgers:
    return lock_many_ledgers(session, brand_id, [member_id], wt)[member_id]


def lock_many_ledgers(
    session: Session, brand_id: int, member_ids: list[int], wt: WalletType
) -> dict[int, Ledgers]:
    """The wallet type's ledger accounts of several members (a re-bind), all locked in id order."""
    types = (wt.principal_point_type_id, wt.bonus_point_type_id)
    # One statement locks the existing accounts, in id order (the rows are locked as they are read).
    found = WalletRepository(session).lock_point_accounts(member_ids, types)
    locked = {(a.member_id, a.point_type_id): a for a in found}
    for member_id in member_ids:
        for pt_id in types:
            if (member_id, pt_id) not in locked:
                # Created here: nobody else can see (or wait on) a row not yet committed.
                locked[(member_id, pt_id)] = ledger.open_account(
                    session, brand_id=brand_id, member_id=member_id, point_type_id=pt_id
                )
    return {m: Ledgers(principal=locked[(m, types[0])], bonus=locked[(m, types[1])]) for m in member_ids}


def balance_of(session: Session, ledgers: Ledgers) -> BalanceOut:
    """The balance of a wallet whose ledger accounts this transaction holds (after a write)."""
    spendable = WalletRepository(session).spendable(ledgers.ids, now=utcnow())
    principal, bonus = spendable[ledgers.principal.id], spendable[ledgers.bonus.id]
    return BalanceOut(
        principal=yuan(principal),
        bonus=yuan(bonus),
        held=yuan(ledgers.held),
        total=yuan(principal + bonus + ledgers.held),
    )


# -- operations -----------------------------------------------------------------------------------


def replay(session: Session, *, brand_id: int, key: str, kind: str, request_hash: str) -> WalletResult | None:
    """The stored result of ``key``, ``None`` if it is new, or ``IdempotencyMismatch``. Call it with
    the wallet account locked."""
    # Racers on different accounts with one key are not ordered by the account lock: queue them on
    # the key, so the losers read the winner's committed operation (held until commit).
    advisory_lock(session, f"wallet:{brand_id}:{key}")
    op = WalletRepository(session).operation(brand_id, key)
    if op is None:
        return None
    if op.kind != kind or op.request_hash != request_hash:
        raise IdempotencyMismatch(
            "This idempotency key was already used for a different wallet operation.",
            errors=[field_error("idempotency_key", "already used with another request", "reused")],
        )
    return WalletResult(data=dict(op.result), replayed=True)


def remember(
    session: Session,
    *,
    actor: Principal,
    account: WalletAccount,
    key: str,
    kind: str,
    request_hash: str,
    data: dict[str, Any],
) -> WalletResult:
    session.add(
        WalletOperation(
            brand_id=account.brand_id,
            key=key,
            kind=kind,
            request_hash=request_hash,
            wallet_account_id=account.id,
            result=data,
            actor=actor.label[:120],
            created_at=utcnow(),
        )
    )
    session.flush()
    return WalletResult(data=data)


def current_binding_id(session: Session, account: WalletAccount) -> int:
    binding = WalletRepository(session).current_binding(account.id)
    assert binding is not None, f"wallet account {account.id} has no current binding"
    return binding.id


def expire_holds(session: Session, account: WalletAccount, now: datetime) -> None:
    """Mark the account's payments whose hold timed out as released. The ledger releases the held
    money itself (its next operation on the account or its sweep); nothing here moves money."""
    for payment in WalletRepository(session).timed_out_payments(account.id, now):
        payment.state = "released"
        payment.settled_at = payment.expires_at


def require_usable(account: WalletAccount) -> None:
    if account.status == "locked":
        raise WalletLocked(f"Wallet account {account.id} is locked.", reason=account.status_reason)
    if account.status == "closed":
        raise WalletClosed(f"Wallet account {account.id} is closed.")
