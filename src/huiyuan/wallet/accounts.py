"""Wallet accounts: opening, balances, lock and unlock, closing, re-binding to another member, and
the PIN (set, change, check, lockout).

* **Open**: one account per member and wallet type, opened by an operator or by the first top-up;
  its first binding records the member's two ledger accounts.
* **Lock / unlock**: a locked wallet takes no top-ups or payments (holds made before may still be
  confirmed or released, refunds still land). Unlocking also lifts a PIN lockout.
* **Close**: only when nothing is left, spendable or held; otherwise ``wallet-not-empty`` (409).
  Closing is final for payments and top-ups.
* **Re-bind**: after the operator verified the request (method + reference are recorded), the
  account moves to another member of the brand, who must not hold a wallet of the type. Both
  sub-ledgers move with ``ledger.transfer`` (each lot becomes a lot of the new member with the
  same expiry and a ``transfer`` link to the lot it came from). Refused while payments are held.
  The PIN is cleared: it was the previous holder's secret.
* **PIN**: six digits, stored as a salted scrypt hash. ``PIN_ATTEMPTS`` wrong PINs in a row lock it
  for ``PIN_LOCK_MINUTES``; a wrong PIN counts even though its request fails (the router records it
  after the rollback with ``record_pin_failure``).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from huiyuan.audit import service as audit
from huiyuan.kit.clock import utcnow
from huiyuan.kit.errors import Conflict, NotFound, field_error
from huiyuan.kit.scope import Principal
from huiyuan.members.models import Member
from huiyuan.outbox.service import emit
from huiyuan.points import ledger
from huiyuan.wallet import core
from huiyuan.wallet.configuration import bonus_code, principal_code
from huiyuan.wallet.core import (
    HoldsOpen,
    PinIncorrect,
    PinLocked,
    PinNotSet,
    PinRequired,
    WalletClosed,
    WalletNotEmpty,
    yuan,
)
from huiyuan.wallet.models import WalletAccount, WalletBinding, WalletType
from huiyuan.wallet.repository import AccountFilter, WalletRepository
from huiyuan.wallet.schemas import BalanceOut, BindingOut, RebindIn, WalletAccountOut

PIN_ATTEMPTS = 5
PIN_LOCK_MINUTES = 30
_SCRYPT = {"n": 2**14, "r": 8, "p": 1}


# -- reading --------------------------------------------------------------------------------------


def get_account(session: Session, account_id: int) -> WalletAccount:
    """The wallet account in the caller's scope, or 404."""
    account = WalletRepository(session).account(account_id)
    if account is None:
        raise NotFound(f"Wallet account {account_id} was not found.")
    return account


def list_accounts(
    session: Session,
    *,
    member_id: int | None,
    wallet_type: str | None,
    status: str | None,
    before_id: int | None,
    limit: int,
) -> list[WalletAccount]:
    """Wallet accounts in the caller's scope, newest first."""
    repo = WalletRepository(session)
    type_id = None
    if wallet_type:
        wt = repo.type_by_code(None, wallet_type)
        type_id = wt.id if wt is not None else -1
    f = AccountFilter(member_id=member_id, wallet_type_id=type_id, status=status)
    return repo.accounts(f, before_id=before_id, limit=limit)


def balances(
    session: Session, accounts: list[WalletAccount], *, now: datetime | None = None
) -> dict[int, BalanceOut]:
    """Each account's balance as of now: spendable principal and bonus (lots not past their expiry)
    and what open payments hold. Three queries whatever the number of accounts."""
    repo = WalletRepository(session)
    types = repo.types_by_id({a.wallet_type_id for a in accounts})
    point_types = {pt for t in types.values() for pt in (t.principal_point_type_id, t.bonus_point_type_id)}
    rows = {
        (row.member_id, row.point_type_id): row
        for row in repo.member_point_accounts({a.member_id for a in accounts}, point_types)
    }
    spendable = repo.spendable([row.id for row in rows.values()], now=now or utcnow())
    out = {}
    for a in accounts:
        wt = types[a.wallet_type_id]
        p = rows.get((a.member_id, wt.principal_point_type_id))
        b = rows.get((a.member_id, wt.bonus_point_type_id))
        principal = spendable[p.id] if p is not None else 0
        bonus = spendable[b.id] if b is not None else 0
        held = sum(row.reserved for row in (p, b) if row is not None)
        out[a.id] = BalanceOut(
            principal=yuan(principal),
            bonus=yuan(bonus),
            held=yuan(held),
            total=yuan(principal + bonus + held),
        )
    return out


def balance_of(session: Session, account: WalletAccount) -> BalanceOut:
    return balances(session, [account])[account.id]


def account_outs(session: Session, accounts: list[WalletAccount]) -> list[WalletAccountOut]:
    found = balances(session, accounts)
    types = WalletRepository(session).types_by_id({a.wallet_type_id for a in accounts})
    return [
        WalletAccountOut(
            id=a.id,
            wallet_type=types[a.wallet_type_id].code,
            member_id=a.member_id,
            status=a.status,
            status_reason=a.status_reason,
            has_pin=a.pin_hash is not None,
            pin_locked_until=a.pin_locked_until,
            balance=found[a.id],
            opened_at=a.opened_at,
            closed_at=a.closed_at,
        )
        for a in accounts
    ]


def account_out(session: Session, account: WalletAccount) -> WalletAccountOut:
    return account_outs(session, [account])[0]


def bindings(session: Session, account_id: int) -> list[BindingOut]:
    """Who the account belonged to, oldest first."""
    account = get_account(session, account_id)
    return [
        BindingOut(
            id=b.id,
            member_id=b.member_id,
            bound_at=b.bound_at,
            unbound_at=b.unbound_at,
            verification_method=b.verification_method,
            verification_ref=b.verification_ref,
            reason=b.reason,
            actor=b.actor,
        )
        for b in WalletRepository(session).bindings(account.id)
    ]


# -- opening --------------------------------------------------------------------------------------


def _member(session: Session, member_id: int) -> Member:
    member = WalletRepository(session).member(member_id)
    if member is None:
        raise NotFound(f"Member {member_id} was not found.")
    return member


def ensure_account(
    session: Session, *, actor: Principal, member: Member, wt: WalletType
) -> tuple[WalletAccount, bool]:
    """The member's wallet of this type, opened if missing, locked; and whether it was opened now.

    Racers opening one wallet meet at the unique (member, type) index: one inserts, the others
    wait for it and find the row."""
    repo = WalletRepository(session)
    found = repo.account_of(member.id, wt.id, for_update=True)
    if found is not None:
        return found, False
    now = utcnow()
    dialect = session.get_bind().dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    stmt = (
        insert(WalletAccount)
        .values(
            brand_id=member.brand_id,
            wallet_type_id=wt.id,
            member_id=member.id,
            status="open",
            pin_failed_attempts=0,
            opened_at=now,
            created_at=now,
            updated_at=now,
        )
        .on_conflict_do_nothing(index_elements=["member_id", "wallet_type_id"])
        .returning(WalletAccount.id)
    )
    created = session.execute(stmt).first() is not None
    account = repo.account_of(member.id, wt.id, for_update=True)
    assert account is not None
    if created:
        ledgers = core.lock_ledgers(session, account, wt)
        session.add(
            WalletBinding(
                brand_id=account.brand_id,
                wallet_account_id=account.id,
                member_id=member.id,
                principal_account_id=ledgers.principal.id,
                bonus_account_id=ledgers.bonus.id,
                after_entry_id=WalletRepository(session).last_entry_id(ledgers.ids),
                bound_at=now,
                actor=actor.label[:120],
            )
        )
        session.flush()
        audit.record(
            session,
            actor=actor,
            action="wallet.opened",
            entity_type="wallet_account",
            entity_id=account.id,
            brand_id=account.brand_id,
            after={"member_id": member.id, "wallet_type": wt.code},
        )
    return account, created


def open_account(session: Session, *, actor: Principal, member_id: int, wallet_type: str) -> WalletAccount:
    """Open the member's wallet of this type; 409 if it exists (naming it)."""
    brand_id = actor.scope.require_brand()
    wt = core.wallet_type(session, brand_id, wallet_type)
    member = _member(session, member_id)
    if member.status == "closed":
        raise Conflict("A closed member cannot open a wallet.", member_status=member.status)
    if wt.status != "active":
        raise Conflict(f"Wallet type '{wt.code}' is retired.", wallet_type_status=wt.status)
    account, created = ensure_account(session, actor=actor, member=member, wt=wt)
    if not created:
        raise Conflict(
            "The member already has a wallet of this type.",
            errors=[field_error("member_id", "already holds a wallet of this type", "taken")],
            existing_wallet_account_id=account.id,
        )
    return account


# -- status ---------------------------------------------------------------------------------------


def _audit_status(
    session: Session,
    actor: Principal,
    account: WalletAccount,
    action: str,
    before: dict[str, Any],
    reason: str | None,
) -> None:
    audit.record(
        session,
        actor=actor,
        action=action,
        entity_type="wallet_account",
        entity_id=account.id,
        brand_id=account.brand_id,
        before=before,
        after={"status": account.status, "pin_locked_until": _iso(account.pin_locked_until)},
        note=reason,
    )


def _iso(at: datetime | None) -> str | None:
    return at.isoformat() if at else None


def lock(session: Session, *, actor: Principal, account_id: int, reason: str) -> WalletAccount:
    """Stop top-ups and payments (a card reported lost, a risk review); locking twice is a no-op."""
    account = core.lock_account(session, account_id)
    if account.status == "closed":
        raise WalletClosed(f"Wallet account {account.id} is closed.")
    if account.status == "locked":
        return account
    before = {"status": account.status}
    account.status, account.status_reason = "locked", reason
    _audit_status(session, actor, account, "wallet.locked", before, reason)
    return account


def unlock(session: Session, *, actor: Principal, account_id: int, reason: str | None) -> WalletAccount:
    """Open a locked wallet again and lift a PIN lockout."""
    account = core.lock_account(session, account_id)
    if account.status == "closed":
        raise WalletClosed(f"Wallet account {account.id} is closed.")
    before = {"status": account.status, "pin_locked_until": _iso(account.pin_locked_until)}
    changed = (
        account.status == "locked" or account.pin_locked_until is not None or account.pin_failed_attempts
    )
    if not changed:
        return account
    account.status, account.status_reason = "open", None
    account.pin_locked_until, account.pin_failed_attempts = None, 0
    _audit_status(session, actor, account, "wallet.unlocked", before, reason)
    return account


def close(session: Session, *, actor: Principal, account_id: int, reason: str) -> WalletAccount:
    """Close an empty wallet (nothing spendable, nothing held); closing twice is a no-op."""
    account = core.lock_account(session, account_id)
    if account.status == "closed":
        return account
    wt = core.type_of(session, account)
    ledgers = core.lock_ledgers(session, account, wt)
    if ledgers.held:
        # Counted from the ledger: a hold that timed out is back in the wallet only once released.
        raise HoldsOpen(
            "Payments still hold money in this wallet; confirm or release them first.",
            held=str(yuan(ledgers.held)),
        )
    left = WalletRepository(session).spendable(ledgers.ids, now=utcnow())
    if sum(left.values()):
        raise WalletNotEmpty(
            "Only an empty wallet can be closed; refund its top-ups first.",
            principal=str(yuan(left[ledgers.principal.id])),
            bonus=str(yuan(left[ledgers.bonus.id])),
        )
    before = {"status": account.status}
    account.status, account.status_reason, account.closed_at = "closed", reason, utcnow()
    _audit_status(session, actor, account, "wallet.closed", before, reason)
    return account


# -- re-binding -----------------------------------------------------------------------------------


def rebind(session: Session, *, actor: Principal, account_id: int, data: RebindIn) -> WalletAccount:
    """Move the wallet and its money to another member after the operator verified the request."""
    brand_id = actor.scope.require_brand()
    repo = WalletRepository(session)
    account = core.lock_account(session, account_id)
    if account.member_id == data.to_member_id:
        return account
    if account.status == "closed":
        raise WalletClosed(f"Wallet account {account.id} is closed.")
    wt = core.type_of(session, account)
    target = _member(session, data.to_member_id)
    if target.status == "closed":
        raise Conflict(
            "A closed member cannot take a wallet.",
            errors=[field_error("to_member_id", "the member is closed", "closed")],
        )
    if (other := repo.account_of(target.id, wt.id)) is not None:
        raise Conflict(
            "The member already holds a wallet of this type.",
            errors=[field_error("to_member_id", "already holds a wallet of this type", "taken")],
            existing_wallet_account_id=other.id,
        )
    source = account.member_id
    locked = core.lock_many_ledgers(session, brand_id, [source, target.id], wt)
    if locked[source].held:
        raise HoldsOpen("Confirm or release the wallet's held payments before re-binding it.")
    now = utcnow()
    new_binding = WalletBinding(
        brand_id=brand_id,
        wallet_account_id=account.id,
        member_id=target.id,
        principal_account_id=locked[target.id].principal.id,
        bonus_account_id=locked[target.id].bonus.id,
        after_entry_id=repo.last_entry_id(locked[target.id].ids),
        bound_at=now,
        verification_method=data.verification.method,
        verification_ref=data.verification.reference,
        reason=data.reason,
        actor=actor.label[:120],
    )
    session.add(new_binding)
    session.flush()
    spendable = repo.spendable(locked[source].ids, now=now)
    moved: dict[str, int] = {}
    for part, acc, code in (
        ("p", locked[source].principal, principal_code(wt.code)),
        ("b", locked[source].bonus, bonus_code(wt.code)),
    ):
        amount = spendable[acc.id]
        moved[part] = amount
        if amount:
            ledger.transfer(
                session,
                actor=actor,
                from_member_id=source,
                to_member_id=target.id,
                point_type=code,
                amount=amount,
                key=core.ledger_key(f"rebind.{new_binding.id}", part),
                reason=data.reason,
            )
    session.flush()
    old = repo.current_binding_before(account.id, new_binding.id)
    if old is not None:
        old.unbound_at = now
        old.until_entry_id = repo.last_entry_id(locked[source].ids)
    account.member_id = target.id
    account.pin_hash, account.pin_failed_attempts, account.pin_locked_until = None, 0, None
    session.flush()
    audit.record(
        session,
        actor=actor,
        action="wallet.rebound",
        entity_type="wallet_account",
        entity_id=account.id,
        brand_id=brand_id,
        before={"member_id": source},
        after={
            "member_id": target.id,
            "verification_method": data.verification.method,
            "verification_ref": data.verification.reference,
            "principal": moved["p"],
            "bonus": moved["b"],
        },
        note=data.reason,
    )
    emit(
        session,
        type="wallet.rebound",
        brand_id=brand_id,
        aggregate_type="wallet_account",
        aggregate_id=account.id,
        payload={
            "wallet_account_id": account.id,
            "wallet_type": wt.code,
            "from_member_id": source,
            "to_member_id": target.id,
            "principal": str(yuan(moved["p"])),
            "bonus": str(yuan(moved["b"])),
        },
    )
    return account


# -- PIN ------------------------------------------------------------------------------------------


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def hash_pin(pin: str) -> str:
    salt = os.urandom(16)
    digest = hashlib.scrypt(pin.encode(), salt=salt, dklen=32, **_SCRYPT)
    return f"scrypt${_SCRYPT['n']}${_SCRYPT['r']}${_SCRYPT['p']}${_b64(salt)}${_b64(digest)}"


def pin_matches(stored: str, pin: str) -> bool:
    _scheme, n, r, p, salt, expected = stored.split("$")
    digest = hashlib.scrypt(pin.encode(), salt=_unb64(salt), n=int(n), r=int(r), p=int(p), dklen=32)
    return hmac.compare_digest(digest, _unb64(expected))


def check_pin(account: WalletAccount, wt: WalletType, pin: str | None, now: datetime) -> None:
    """Refuse a payment without the right PIN when the type or the account requires one."""
    if not wt.require_pin and account.pin_hash is None:
        return
    if account.pin_hash is None:
        raise PinNotSet("Set a PIN for this wallet before paying with it.")
    _verify(account, pin, now)


def _verify(account: WalletAccount, pin: str | None, now: datetime) -> None:
    assert account.pin_hash is not None
    if account.pin_locked_until is not None and account.pin_locked_until > now:
        retry = max(1, int((account.pin_locked_until - now).total_seconds()))
        raise PinLocked(
            "Too many wrong PINs.",
            headers={"Retry-After": str(retry)},
            locked_until=account.pin_locked_until.isoformat(),
        )
    if pin is None:
        raise PinRequired(
            "This wallet needs its PIN.",
            errors=[field_error("pin", "required for this wallet", "required")],
        )
    if not pin_matches(account.pin_hash, pin):
        left = max(0, PIN_ATTEMPTS - account.pin_failed_attempts - 1)
        raise PinIncorrect("The PIN is not correct.", account_id=account.id, attempts_left=left)
    if account.pin_failed_attempts or account.pin_locked_until is not None:
        account.pin_failed_attempts, account.pin_locked_until = 0, None


def record_pin_failure(session: Session, *, actor: Principal, account_id: int) -> None:
    """Count a wrong PIN (in a transaction of its own: the failed request was rolled back)."""
    account = core.lock_account(session, account_id)
    account.pin_failed_attempts += 1
    if account.pin_failed_attempts >= PIN_ATTEMPTS:
        account.pin_failed_attempts = 0
        account.pin_locked_until = utcnow() + timedelta(minutes=PIN_LOCK_MINUTES)
        audit.record(
            session,
            actor=actor,
            action="wallet.pin_locked",
            entity_type="wallet_account",
            entity_id=account.id,
            brand_id=account.brand_id,
            after={"pin_locked_until": _iso(account.pin_locked_until)},
        )


def set_pin(
    session: Session, *, actor: Principal, member_id: int, account_id: int, pin: str, current_pin: str | None
) -> WalletAccount:
    """Set the wallet's PIN, or change it (the current PIN is then required)."""
    account = core.lock_account(session, account_id)
    if account.member_id != member_id:
        raise NotFound(f"Wallet account {account_id} was not found.")
    if account.status == "closed":
        raise WalletClosed(f"Wallet account {account.id} is closed.")
    changing = account.pin_hash is not None
    if changing:
        _verify(account, current_pin, utcnow())
    account.pin_hash = hash_pin(pin)
    account.pin_failed_attempts, account.pin_locked_until = 0, None
    audit.record(
        session,
        actor=actor,
        action="wallet.pin_changed" if changing else "wallet.pin_set",
        entity_type="wallet_account",
        entity_id=account.id,
        brand_id=account.brand_id,
    )
    return account
