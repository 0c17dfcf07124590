"""HTTP routes of the wallet for operators: wallet types, top-up rules, accounts (open, lock,
unlock, close, re-bind), statements and the settlement between stores. Thin: authenticate, call one
service verb, shape the response. Money moves through ``pay_api`` (other systems) and ``me_api``.

Permissions: the wallet uses the points scopes (``points:read``, ``points:write``,
``points:adjust``) until it has scopes of its own; they are named once, here.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query

from huiyuan.auth.deps import require
from huiyuan.kit import tables
from huiyuan.kit.pagination import Page, check_limit, cursor_page, decode_cursor
from huiyuan.kit.scope import Principal
from huiyuan.kit.web import SessionDep
from huiyuan.settings import get_settings
from huiyuan.wallet import accounts, configuration, statements
from huiyuan.wallet.schemas import (
    AccountStatus,
    BindingOut,
    OpenAccountIn,
    RebindIn,
    RuleStatus,
    SettlementOut,
    StatementOut,
    StatusChangeIn,
    TopUpRuleIn,
    TopUpRuleOut,
    TopUpRuleUpdate,
    UnlockIn,
    WalletAccountOut,
    WalletTypeIn,
    WalletTypeOut,
    WalletTypeUpdate,
)

READ, WRITE, ADJUST = "points:read", "points:write", "points:adjust"

router = APIRouter(prefix="/api/v1/wallet", tags=["wallet"])

Reader = Annotated[Principal, require(READ)]
Writer = Annotated[Principal, require(WRITE)]
Adjuster = Annotated[Principal, require(ADJUST)]

ACCOUNT_RESPONSES: dict[int | str, dict[str, Any]] = {
    404: {"description": "No such wallet account in this brand"},
    409: {
        "description": "The wallet is closed (`wallet-closed`), still holds money (`wallet-not-empty`) or "
        "has held payments (`wallet-holds-open`); the member already holds a wallet of the type (`conflict`)"
    },
}


# -- wallet types ---------------------------------------------------------------------------------


@router.get("/types", response_model=list[WalletTypeOut], summary="List wallet types")
def list_types(session: SessionDep, actor: Reader) -> list[WalletTypeOut]:
    return [configuration.type_out(t) for t in configuration.list_types(session)]


@router.post(
    "/types",
    response_model=WalletTypeOut,
    status_code=201,
    summary="Add a wallet type (and its principal and bonus sub-ledgers)",
    responses={409: {"description": "The code is taken"}},
)
def create_type(data: WalletTypeIn, session: SessionDep, actor: Writer) -> WalletTypeOut:
    return configuration.type_out(configuration.create_type(session, actor=actor, data=data))


@router.get("/types/{code}", response_model=WalletTypeOut, summary="Get a wallet type")
def get_type(code: str, session: SessionDep, actor: Reader) -> WalletTypeOut:
    return configuration.type_out(configuration.get_type(session, actor=actor, code=code))


@router.patch("/types/{code}", response_model=WalletTypeOut, summary="Update a wallet type")
def update_type(code: str, data: WalletTypeUpdate, session: SessionDep, actor: Writer) -> WalletTypeOut:
    return configuration.type_out(configuration.update_type(session, actor=actor, code=code, data=data))


# -- top-up rules ---------------------------------------------------------------------------------


@router.get("/top-up-rules", response_model=list[TopUpRuleOut], summary="List top-up rules")
def list_rules(
    session: SessionDep,
    actor: Reader,
    wallet_type: Annotated[str | None, Query(max_length=28)] = None,
    status: RuleStatus | None = None,
) -> list[TopUpRuleOut]:
    found = configuration.list_rules(session, wallet_type=wallet_type, status=status)
    return [configuration.rule_out(r, configuration.wallet_code_of(session, r)) for r in found]


@router.post(
    "/top-up-rules",
    response_model=TopUpRuleOut,
    status_code=201,
    summary="Add a top-up rule",
    responses={409: {"description": "The code is taken"}, 422: {"description": "Invalid fields"}},
)
def create_rule(data: TopUpRuleIn, session: SessionDep, actor: Writer) -> TopUpRuleOut:
    rule = configuration.create_rule(session, actor=actor, data=data)
    return configuration.rule_out(rule, data.wallet_type)


@router.get("/top-up-rules/{rule_id}", response_model=TopUpRuleOut, summary="Get a top-up rule")
def get_rule(rule_id: int, session: SessionDep, actor: Reader) -> TopUpRuleOut:
    rule = configuration.get_rule(session, rule_id)
    return configuration.rule_out(rule, configuration.wallet_code_of(session, rule))


@router.patch(
    "/top-up-rules/{rule_id}",
    response_model=TopUpRuleOut,
    summary="Change, pause, resume or retire a top-up rule",
    responses={409: {"description": "The rule is retired"}},
)
def update_rule(rule_id: int, data: TopUpRuleUpdate, session: SessionDep, actor: Writer) -> TopUpRuleOut:
    rule = configuration.update_rule(session, actor=actor, rule_id=rule_id, data=data)
    return configuration.rule_out(rule, configuration.wallet_code_of(session, rule))


# -- accounts -------------------------------------------------------------------------------------


@router.get("/accounts", response_model=Page[WalletAccountOut], summary="List wallet accounts, newest first")
def list_accounts(
    session: SessionDep,
    actor: Reader,
    member_id: int | None = None,
    wallet_type: Annotated[str | None, Query(max_length=28)] = None,
    status: AccountStatus | None = None,
    cursor: str | None = None,
    limit: int = 50,
) -> Page[Any]:
    limit = check_limit(limit, get_settings().max_page_size)
    rows = accounts.list_accounts(
        session,
        member_id=member_id,
        wallet_type=wallet_type,
        status=status,
        before_id=decode_cursor(cursor),
        limit=limit + 1,
    )
    return cursor_page(rows, limit, lambda shown: accounts.account_outs(session, list(shown)))


@router.post(
    "/accounts",
    response_model=WalletAccountOut,
    status_code=201,
    summary="Open a member's wallet of a type",
    responses={404: {"description": "No such member"}, 409: {"description": "The member already has one"}},
)
def open_account(data: OpenAccountIn, session: SessionDep, actor: Writer) -> WalletAccountOut:
    account = accounts.open_account(
        session, actor=actor, member_id=data.member_id, wallet_type=data.wallet_type
    )
    return accounts.account_out(session, account)


@router.get(
    "/accounts/{account_id}",
    response_model=WalletAccountOut,
    summary="A wallet account and its balance",
    responses={404: ACCOUNT_RESPONSES[404]},
)
def get_account(account_id: int, session: SessionDep, actor: Reader) -> WalletAccountOut:
    return accounts.account_out(session, accounts.get_account(session, account_id))


@router.post(
    "/accounts/{account_id}/lock",
    response_model=WalletAccountOut,
    summary="Lock a wallet: no top-ups or payments until unlocked",
    responses=ACCOUNT_RESPONSES,
)
def lock_account(
    account_id: int, data: StatusChangeIn, session: SessionDep, actor: Adjuster
) -> WalletAccountOut:
    return accounts.account_out(
        session, accounts.lock(session, actor=actor, account_id=account_id, reason=data.reason)
    )


@router.post(
    "/accounts/{account_id}/unlock",
    response_model=WalletAccountOut,
    summary="Unlock a wallet (and lift a PIN lockout)",
    responses=ACCOUNT_RESPONSES,
)
def unlock_account(account_id: int, data: UnlockIn, session: SessionDep, actor: Adjuster) -> WalletAccountOut:
    account = accounts.unlock(session, actor=actor, account_id=account_id, reason=data.reason)
    return accounts.account_out(session, account)


@router.post(
    "/accounts/{account_id}/close",
    response_model=WalletAccountOut,
    summary="Close an empty wallet",
    responses=ACCOUNT_RESPONSES,
)
def close_account(
    account_id: int, data: StatusChangeIn, session: SessionDep, actor: Adjuster
) -> WalletAccountOut:
    account = accounts.close(session, actor=actor, account_id=account_id, reason=data.reason)
    return accounts.account_out(session, account)


@router.post(
    "/accounts/{account_id}/rebind",
    response_model=WalletAccountOut,
    summary="Re-bind a wallet to another member after verification",
    responses=ACCOUNT_RESPONSES,
)
def rebind_account(account_id: int, data: RebindIn, session: SessionDep, actor: Adjuster) -> WalletAccountOut:
    account = accounts.rebind(session, actor=actor, account_id=account_id, data=data)
    return accounts.account_out(session, account)


@router.get(
    "/accounts/{account_id}/bindings",
    response_model=list[BindingOut],
    summary="Who a wallet belonged to, oldest first",
    responses={404: ACCOUNT_RESPONSES[404]},
)
def account_bindings(account_id: int, session: SessionDep, actor: Reader) -> list[BindingOut]:
    return accounts.bindings(session, account_id)


@router.get(
    "/accounts/{account_id}/statement",
    response_model=StatementOut,
    summary="A wallet's balance and transactions, newest first",
    responses={404: ACCOUNT_RESPONSES[404]},
)
def account_statement(
    account_id: int, session: SessionDep, actor: Reader, cursor: str | None = None, limit: int = 50
) -> StatementOut:
    limit = check_limit(limit, get_settings().max_page_size)
    return statements.statement(
        session, account_id, member_id=None, before_id=decode_cursor(cursor), limit=limit
    )


# -- settlement -----------------------------------------------------------------------------------


@router.get(
    "/settlement",
    response_model=SettlementOut,
    summary="Top-ups and payments per store over a period and the net positions (JSON, CSV or XLSX)",
    responses={
        200: {
            "description": "The settlement; `format=csv` or `format=xlsx` downloads a file",
            "content": {
                "text/csv": {},
                "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet": {},
            },
        }
    },
)
def settlement(
    session: SessionDep,
    actor: Reader,
    start: Annotated[datetime, Query(alias="from", description="Start of the period (included)")],
    end: Annotated[datetime, Query(alias="to", description="End of the period (excluded)")],
    format: Literal["json", "csv", "xlsx"] = "json",
    wallet_type: Annotated[list[str] | None, Query(max_length=20)] = None,
) -> Any:
    actor.scope.require_brand()
    result = statements.settle(session, start=start, end=end, wallet_types=wallet_type)
    name = f"wallet-settlement-{start.date().isoformat()}-{end.date().isoformat()}"
    if format != "json":
        return tables.download(statements.sections(result), name, format)
    return result
