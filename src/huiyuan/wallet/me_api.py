"""Member-facing wallets: ``/api/v1/me/wallets`` with a member token (see ``huiyuan.selfservice.api``).

The member is always the token's own: another member's wallet answers 404, and a statement shows
only the periods the wallet was bound to this member (a re-bound wallet's earlier holder stays
private).
"""

from __future__ import annotations

from fastapi import APIRouter

from huiyuan.auth.deps import MemberPrincipalDep
from huiyuan.kit.pagination import check_limit, decode_cursor
from huiyuan.kit.web import SessionDep
from huiyuan.selfservice.api import CurrentMemberDep
from huiyuan.settings import get_settings
from huiyuan.wallet import accounts, statements
from huiyuan.wallet.pay_api import counting_pin_failures
from huiyuan.wallet.repository import WalletRepository
from huiyuan.wallet.schemas import PinIn, StatementOut, WalletAccountOut

router = APIRouter(prefix="/api/v1/me/wallets", tags=["me"])


@router.get("", response_model=list[WalletAccountOut], summary="My wallets and their balances")
def my_wallets(session: SessionDep, member: CurrentMemberDep) -> list[WalletAccountOut]:
    return accounts.account_outs(session, WalletRepository(session).member_accounts(member.id))


@router.get(
    "/{account_id}/statement",
    response_model=StatementOut,
    summary="My wallet's balance and transactions, newest first",
    responses={404: {"description": "Not one of my wallets"}},
)
def my_statement(
    account_id: int, session: SessionDep, member: CurrentMemberDep, cursor: str | None = None, limit: int = 50
) -> StatementOut:
    limit = check_limit(limit, get_settings().max_page_size)
    return statements.statement(
        session, account_id, member_id=member.id, before_id=decode_cursor(cursor), limit=limit
    )


@router.put(
    "/{account_id}/pin",
    response_model=WalletAccountOut,
    summary="Set my wallet's PIN, or change it with the current one",
    responses={
        403: {"description": "The current PIN is missing (`pin-required`) or wrong (`pin-incorrect`)"},
        404: {"description": "Not one of my wallets"},
        409: {"description": "The wallet is closed"},
        423: {"description": "Too many wrong PINs (`pin-locked`)"},
    },
)
def set_my_pin(
    account_id: int, data: PinIn, session: SessionDep, member: CurrentMemberDep, principal: MemberPrincipalDep
) -> WalletAccountOut:
    account = counting_pin_failures(
        session,
        principal,
        lambda: accounts.set_pin(
            session,
            actor=principal,
            member_id=member.id,
            account_id=account_id,
            pin=data.pin,
            current_pin=data.current_pin,
        ),
    )
    return accounts.account_out(session, account)
