"""Console pages of the stored-value wallet (A10): wallet types and top-up rules (lists, create and
edit forms with the validation errors shown per field), the account look-up by member (member number,
name or phone through the members search), a wallet account (principal, bonus and held balances with
a chart, lock and unlock with a reason, its bindings and audit trail, and its statement with
filters, pages and a CSV download), and the settlement between stores for a period (table, chart,
CSV and XLSX).

Handlers call the wallet services (``configuration``, ``accounts``, ``statements``) — the same verbs
and read models as ``wallet.api`` — and use the same scopes: ``points:read`` to read,
``points:write`` to configure, ``points:adjust`` to lock and unlock. Money moves through the API
only (top-ups, payments and refunds come from tills and apps). No queries or business rules here.
"""

from __future__ import annotations

from datetime import date, datetime, time, timedelta
from typing import Annotated, Any, Literal
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Form, Query, Request
from fastapi.responses import JSONResponse, RedirectResponse, Response
from pydantic import ValidationError

from huiyuan.audit import repository as audit_repository
from huiyuan.console.deps import Console, requires
from huiyuan.console.forms import (
    check,
    done,
    failure_status,
    invalid_fields,
    local_datetime,
    local_input,
    present,
    problems,
    span,
)
from huiyuan.console.i18n import translate
from huiyuan.console.web import ConsoleRoute, render
from huiyuan.kit import tables
from huiyuan.kit.errors import AppError, NotFound, ValidationFailed, field_error
from huiyuan.kit.pagination import decode_cursor
from huiyuan.members import identity
from huiyuan.members import service as members
from huiyuan.members.repository import MemberFilter
from huiyuan.wallet import accounts, configuration, statements
from huiyuan.wallet.models import WalletTopUpRule, WalletType
from huiyuan.wallet.schemas import (
    StatementOut,
    StatusChangeIn,
    TopUpRuleIn,
    TopUpRuleUpdate,
    UnlockIn,
    WalletTypeIn,
    WalletTypeUpdate,
)

router = APIRouter(route_class=ConsoleRoute, include_in_schema=False)

READ, WRITE, ADJUST = "points:read", "points:write", "points:adjust"
Reader = Annotated[Console, requires(READ)]
Writer = Annotated[Console, requires(WRITE)]
Adjuster = Annotated[Console, requires(ADJUST)]
FromDate = Annotated[date | None, Query(alias="from")]
ToDate = Annotated[date | None, Query()]
Activity = Literal["", "top_up", "payment", "refund", "rebind", "expiry"]
SubLedger = Literal["", "principal", "bonus"]

STATEMENT_ROWS = 20
STATEMENT_FILE_ROWS = 10_000
LOOKUP_MEMBERS = 20
AUDIT_ROWS = 20
ACTIVITIES = ("top_up", "payment", "refund", "rebind", "expiry")
NEW_TYPE = {"spend_order": "principal_first", "reservation_minutes": "15"}
NEW_RULE = {"bonus_kind": "percent", "priority": "0", "min_amount": "0"}


def _codes(raw: str) -> list[str] | None:
    """Codes typed into one input, separated by commas or spaces (none: no condition)."""
    found = [c for c in raw.replace("，", ",").replace(",", " ").split() if c]
    return found or None


# -- wallet types and top-up rules -----------------------------------------------------------------


def _config_page(
    request: Request,
    console: Console,
    *,
    type_errors: list[dict[str, Any]] | None = None,
    type_form: dict[str, str] | None = None,
    rule_errors: list[dict[str, Any]] | None = None,
    rule_form: dict[str, Any] | None = None,
    http_status: int = 200,
) -> Response:
    session = console.session
    has_brand = console.brand_id is not None
    types = configuration.list_types(session) if has_brand else []
    codes = {t.id: t.code for t in types}
    rules = configuration.list_rules(session) if has_brand else []
    context = {
        "has_brand": has_brand,
        "types": [configuration.type_out(t) for t in types],
        "rules": [configuration.rule_out(r, codes.get(r.wallet_type_id, "")) for r in rules],
        "can_write": console.can(WRITE),
        "type_errors": type_errors or [],
        "type_fields": invalid_fields(type_errors or []),
        "type_form": type_form or NEW_TYPE,
        "rule_errors": rule_errors or [],
        "rule_fields": invalid_fields(rule_errors or []),
        "rule_form": rule_form or NEW_RULE,
        "zone": console.timezone(),
    }
    return render(request, "wallet_config.html", context, status=http_status)


@router.get("/console/wallet")
def config_page(request: Request, console: Reader) -> Response:
    return _config_page(request, console)


def _type_body(values: dict[str, str]) -> dict[str, Any]:
    return {
        "name": values["name"].strip(),
        "spend_order": values["spend_order"],
        "require_pin": values["require_pin"] == "1",
        "bonus_expiry_days": values["bonus_expiry_days"].strip() or None,
        "max_balance": values["max_balance"].strip() or None,
        **present({"reservation_minutes": values["reservation_minutes"]}),
    }


@router.post("/console/wallet/types")
def create_type(
    request: Request,
    console: Writer,
    code: Annotated[str, Form(max_length=28)] = "",
    name: Annotated[str, Form(max_length=80)] = "",
    spend_order: Annotated[str, Form(max_length=20)] = "principal_first",
    bonus_expiry_days: Annotated[str, Form(max_length=6)] = "",
    require_pin: Annotated[str, Form(max_length=1)] = "",
    max_balance: Annotated[str, Form(max_length=20)] = "",
    reservation_minutes: Annotated[str, Form(max_length=6)] = "",
) -> Response:
    form = {k: v for k, v in locals().items() if isinstance(v, str)}
    try:
        data = WalletTypeIn.model_validate({"code": code.strip(), **_type_body(form)})
        created = configuration.create_type(console.session, actor=console.principal, data=data)
    except (ValidationError, AppError) as exc:
        console.session.rollback()
        return _config_page(
            request, console, type_errors=problems(exc), type_form=form, http_status=failure_status(exc)
        )
    return done(request, f"/console/wallet/types/{created.code}")


def _type_form(wt: WalletType) -> dict[str, str]:
    out = configuration.type_out(wt)
    return {
        "name": out.name,
        "spend_order": out.spend_order,
        "bonus_expiry_days": str(out.bonus_expiry_days or ""),
        "require_pin": "1" if out.require_pin else "",
        "max_balance": str(out.max_balance or ""),
        "reservation_minutes": str(out.reservation_minutes),
        "status": out.status,
    }


def _type_page(
    request: Request,
    console: Console,
    code: str,
    *,
    errors: list[dict[str, Any]] | None = None,
    form: dict[str, str] | None = None,
    http_status: int = 200,
) -> Response:
    session = console.session
    console.principal.scope.require_brand()
    wt = configuration.get_type(session, actor=console.principal, code=code)  # 404 for other brands'
    rules = configuration.list_rules(session, wallet_type=wt.code)
    context = {
        "wallet_type": configuration.type_out(wt),
        "rules": [configuration.rule_out(r, wt.code) for r in rules],
        "can_write": console.can(WRITE),
        "errors": errors or [],
        "error_fields": invalid_fields(errors or []),
        "form": form or _type_form(wt),
    }
    return render(request, "wallet_type.html", context, status=http_status)


@router.get("/console/wallet/types/{code}")
def type_page(request: Request, code: str, console: Reader) -> Response:
    return _type_page(request, console, code)


@router.post("/console/wallet/types/{code}")
def update_type(
    request: Request,
    code: str,
    console: Writer,
    name: Annotated[str, Form(max_length=80)] = "",
    spend_order: Annotated[str, Form(max_length=20)] = "principal_first",
    bonus_expiry_days: Annotated[str, Form(max_length=6)] = "",
    require_pin: Annotated[str, Form(max_length=1)] = "",
    max_balance: Annotated[str, Form(max_length=20)] = "",
    reservation_minutes: Annotated[str, Form(max_length=6)] = "",
    status: Annotated[str, Form(max_length=16)] = "active",
) -> Response:
    form = {k: v for k, v in locals().items() if isinstance(v, str)}
    session = console.session
    console.principal.scope.require_brand()
    configuration.get_type(session, actor=console.principal, code=code)
    try:
        data = WalletTypeUpdate.model_validate({**_type_body(form), "status": status})
        configuration.update_type(session, actor=console.principal, code=code, data=data)
    except (ValidationError, AppError) as exc:
        session.rollback()
        return _type_page(
            request, console, code, errors=problems(exc), form=form, http_status=failure_status(exc)
        )
    return done(request, f"/console/wallet/types/{code}")


RuleText = Annotated[str, Form(max_length=40)]
Weekdays = Annotated[list[str] | None, Form()]


def _rule_body(console: Console, values: dict[str, Any], errors: list[dict[str, Any]]) -> dict[str, Any]:
    zone = console.timezone()
    days = [int(d) for d in values["weekdays"] or [] if str(d).isdigit()]
    return {
        "name": values["name"].strip(),
        "tier_codes": _codes(values["tier_codes"]),
        "channels": _codes(values["channels"]),
        "weekdays": days or None,
        "valid_from": local_datetime(values["valid_from"], "valid_from", zone, errors),
        "valid_to": local_datetime(values["valid_to"], "valid_to", zone, errors),
        "min_amount": values["min_amount"].strip() or "0",
        "bonus_kind": values["bonus_kind"],
        "bonus_cap": values["bonus_cap"].strip() or None,
        **present(
            {
                "bonus_fixed": values["bonus_fixed"],
                "bonus_percent": values["bonus_percent"],
                "priority": values["priority"],
            }
        ),
    }


@router.post("/console/wallet/rules")
def create_rule(
    request: Request,
    console: Writer,
    code: RuleText = "",
    name: Annotated[str, Form(max_length=120)] = "",
    wallet_type: Annotated[str, Form(max_length=28)] = "",
    tier_codes: Annotated[str, Form(max_length=500)] = "",
    channels: Annotated[str, Form(max_length=500)] = "",
    weekdays: Weekdays = None,
    valid_from: RuleText = "",
    valid_to: RuleText = "",
    min_amount: RuleText = "",
    bonus_kind: Annotated[str, Form(max_length=10)] = "percent",
    bonus_fixed: RuleText = "",
    bonus_percent: RuleText = "",
    bonus_cap: RuleText = "",
    priority: RuleText = "",
) -> Response:
    form: dict[str, Any] = {k: v for k, v in locals().items() if isinstance(v, str)}
    form["weekdays"] = weekdays or []
    try:
        errors: list[dict[str, Any]] = []
        body = _rule_body(console, form, errors)
        check(errors)
        data = TopUpRuleIn.model_validate({"code": code.strip(), "wallet_type": wallet_type, **body})
        created = configuration.create_rule(console.session, actor=console.principal, data=data)
    except (ValidationError, AppError) as exc:
        console.session.rollback()
        return _config_page(
            request, console, rule_errors=problems(exc), rule_form=form, http_status=failure_status(exc)
        )
    return done(request, f"/console/wallet/rules/{created.id}")


def _rule_form(rule: WalletTopUpRule, wallet_code: str, zone: str) -> dict[str, Any]:
    out = configuration.rule_out(rule, wallet_code)
    return {
        "name": out.name,
        "tier_codes": ", ".join(out.tier_codes or []),
        "channels": ", ".join(out.channels or []),
        "weekdays": [str(d) for d in out.weekdays or []],
        "valid_from": local_input(out.valid_from, zone),
        "valid_to": local_input(out.valid_to, zone),
        "min_amount": str(out.min_amount),
        "bonus_kind": out.bonus_kind,
        "bonus_fixed": str(out.bonus_fixed) if out.bonus_kind == "fixed" else "",
        "bonus_percent": str(out.bonus_percent) if out.bonus_kind == "percent" else "",
        "bonus_cap": str(out.bonus_cap or ""),
        "priority": str(out.priority),
        "status": out.status,
    }


def _rule_page(
    request: Request,
    console: Console,
    rule_id: int,
    *,
    errors: list[dict[str, Any]] | None = None,
    form: dict[str, Any] | None = None,
    http_status: int = 200,
) -> Response:
    session = console.session
    rule = configuration.get_rule(session, rule_id)  # 404 for other brands' rules
    wallet_code = configuration.wallet_code_of(session, rule)
    zone = console.timezone()
    context = {
        "rule": configuration.rule_out(rule, wallet_code),
        "can_write": console.can(WRITE),
        "errors": errors or [],
        "error_fields": invalid_fields(errors or []),
        "form": form or _rule_form(rule, wallet_code, zone),
        "zone": zone,
    }
    return render(request, "wallet_rule.html", context, status=http_status)


@router.get("/console/wallet/rules/{rule_id}")
def rule_page(request: Request, rule_id: int, console: Reader) -> Response:
    return _rule_page(request, console, rule_id)


@router.post("/console/wallet/rules/{rule_id}")
def update_rule(
    request: Request,
    rule_id: int,
    console: Writer,
    name: Annotated[str, Form(max_length=120)] = "",
    tier_codes: Annotated[str, Form(max_length=500)] = "",
    channels: Annotated[str, Form(max_length=500)] = "",
    weekdays: Weekdays = None,
    valid_from: RuleText = "",
    valid_to: RuleText = "",
    min_amount: RuleText = "",
    bonus_kind: Annotated[str, Form(max_length=10)] = "percent",
    bonus_fixed: RuleText = "",
    bonus_percent: RuleText = "",
    bonus_cap: RuleText = "",
    priority: RuleText = "",
    status: Annotated[str, Form(max_length=16)] = "active",
) -> Response:
    form: dict[str, Any] = {k: v for k, v in locals().items() if isinstance(v, str)}
    form["weekdays"] = weekdays or []
    session = console.session
    configuration.get_rule(session, rule_id)
    try:
        errors: list[dict[str, Any]] = []
        body = _rule_body(console, form, errors)
        check(errors)
        data = TopUpRuleUpdate.model_validate({**body, "status": status})
        configuration.update_rule(session, actor=console.principal, rule_id=rule_id, data=data)
    except (ValidationError, AppError) as exc:
        session.rollback()
        return _rule_page(
            request, console, rule_id, errors=problems(exc), form=form, http_status=failure_status(exc)
        )
    return done(request, f"/console/wallet/rules/{rule_id}")


# -- account look-up -------------------------------------------------------------------------------


def _holders(console: Console, found: list[Any]) -> list[dict[str, Any]]:
    session = console.session
    out = []
    for member in found:
        rows = accounts.list_accounts(
            session, member_id=member.id, wallet_type=None, status=None, before_id=None, limit=50
        )
        out.append(
            {"member": identity.member_summary(member), "accounts": accounts.account_outs(session, rows)}
        )
    return out


def _lookup_page(
    request: Request,
    console: Console,
    *,
    query: dict[str, str],
    holders: list[dict[str, Any]] | None,
    errors: list[dict[str, Any]] | None = None,
    http_status: int = 200,
) -> Response:
    context = {
        "has_brand": console.brand_id is not None,
        "query": query,
        "holders": holders,
        "errors": errors or [],
    }
    return render(request, "wallet_accounts.html", context, status=http_status)


@router.get("/console/wallet/accounts")
def accounts_page(request: Request, console: Reader, member_id: int | None = None) -> Response:
    holders = None
    if member_id is not None and console.brand_id is not None:
        holders = _holders(console, [members.get_member(console.session, member_id)])
    return _lookup_page(request, console, query={"q": "", "phone": ""}, holders=holders)


@router.post("/console/wallet/accounts")
def lookup_accounts(
    request: Request,
    console: Reader,
    q: Annotated[str, Form(max_length=100)] = "",
    phone: Annotated[str, Form(max_length=30)] = "",
) -> Response:
    """Wallets of the members found by member number or name prefix, or by exact phone (posted, so
    phone numbers stay out of URLs and logs)."""
    query = {"q": q, "phone": phone}
    if console.brand_id is None:
        return _lookup_page(request, console, query=query, holders=None)
    if not q.strip() and not phone.strip():
        errors = [field_error("q", "type a member number, name or phone", "missing")]
        return _lookup_page(request, console, query=query, holders=None, errors=errors, http_status=422)
    filters = MemberFilter(q=q.strip() or None, phone=phone.strip() or None)
    found = members.list_members(console.session, filters=filters, after_id=None, limit=LOOKUP_MEMBERS)
    return _lookup_page(request, console, query=query, holders=_holders(console, found))


# -- one account -----------------------------------------------------------------------------------


def _statement(
    console: Console,
    account_id: int,
    *,
    activity: str,
    sub_ledger: str,
    from_: date | None,
    to: date | None,
    cursor: str | None,
    limit: int,
) -> StatementOut:
    zone = ZoneInfo(console.timezone())
    start = datetime.combine(from_, time(), tzinfo=zone) if from_ else None
    end = datetime.combine(to + timedelta(days=1), time(), tzinfo=zone) if to else None
    return statements.statement(
        console.session,
        account_id,
        member_id=None,
        before_id=decode_cursor(cursor),
        limit=limit,
        activity=activity or None,
        sub_ledger=sub_ledger or None,
        start=start,
        end=end,
    )


def _account_page(
    request: Request,
    console: Console,
    account_id: int,
    *,
    activity: Activity = "",
    sub_ledger: SubLedger = "",
    from_: date | None = None,
    to: date | None = None,
    cursor: str | None = None,
    errors: list[dict[str, Any]] | None = None,
    action: str = "",
    http_status: int = 200,
) -> Response:
    session = console.session
    account = accounts.get_account(session, account_id)  # 404 for other brands' wallets
    out = accounts.account_out(session, account)
    filters = {
        "activity": activity,
        "sub_ledger": sub_ledger,
        "from": from_.isoformat() if from_ else "",
        "to": to.isoformat() if to else "",
    }
    statement = _statement(
        console,
        account.id,
        activity=activity,
        sub_ledger=sub_ledger,
        from_=from_,
        to=to,
        cursor=cursor,
        limit=STATEMENT_ROWS,
    )
    query = urlencode({k: v for k, v in filters.items() if v})
    context = {
        "account": out,
        "member": identity.member_summary(members.get_member(session, account.member_id)),
        "statement": statement,
        "filters": filters,
        "query": query,
        "first_page": cursor is None,
        "activities": ACTIVITIES,
        "bindings": accounts.bindings(session, account.id),
        "audit": audit_repository.entries(
            session, entity_type="wallet_account", entity_id=str(account.id), limit=AUDIT_ROWS
        )
        if console.can("audit:read")
        else None,
        "can_adjust": console.can(ADJUST),
        "errors": errors or [],
        "action": action,
        "chart": {
            "labels": [translate(console.lang, f"wallet.{k}") for k in ("principal", "bonus", "held")],
            "values": [float(out.balance.principal), float(out.balance.bonus), float(out.balance.held)],
        },
    }
    return render(request, "wallet_account.html", context, status=http_status)


@router.get("/console/wallet/accounts/{account_id}")
def account_page(
    request: Request,
    account_id: int,
    console: Reader,
    activity: Activity = "",
    sub_ledger: SubLedger = "",
    from_: FromDate = None,
    to: ToDate = None,
    cursor: Annotated[str | None, Query(max_length=40)] = None,
) -> Response:
    return _account_page(
        request,
        console,
        account_id,
        activity=activity,
        sub_ledger=sub_ledger,
        from_=from_,
        to=to,
        cursor=cursor,
    )


STATEMENT_COLUMNS = (
    "id",
    "occurred_at",
    "activity",
    "sub_ledger",
    "kind",
    "amount",
    "held",
    "order_ref",
    "store",
    "topup_id",
    "payment_id",
    "refund_id",
)


@router.get("/console/wallet/accounts/{account_id}/statement.csv")
def statement_csv(
    account_id: int,
    console: Reader,
    activity: Activity = "",
    sub_ledger: SubLedger = "",
    from_: FromDate = None,
    to: ToDate = None,
) -> Response:
    """The statement with the page's filters as CSV (newest first, at most 10,000 lines)."""
    found = _statement(
        console,
        account_id,
        activity=activity,
        sub_ledger=sub_ledger,
        from_=from_,
        to=to,
        cursor=None,
        limit=STATEMENT_FILE_ROWS,
    )
    rows = [[getattr(line, c) for c in STATEMENT_COLUMNS] for line in found.items]
    for row in rows:
        row[1] = row[1].isoformat()
    section = (f"Wallet {account_id} statement", STATEMENT_COLUMNS, rows)
    return tables.download([section], f"wallet-{account_id}-statement", "csv")


@router.post("/console/wallet/accounts/{account_id}/lock")
def lock_account(
    request: Request,
    account_id: int,
    console: Adjuster,
    reason: Annotated[str, Form(max_length=200)] = "",
) -> Response:
    """Lock the wallet (no top-ups or payments); the reason is kept on the wallet and audited."""
    session = console.session
    accounts.get_account(session, account_id)
    try:
        data = StatusChangeIn.model_validate({"reason": reason})
        accounts.lock(session, actor=console.principal, account_id=account_id, reason=data.reason)
    except (ValidationError, AppError) as exc:
        if isinstance(exc, NotFound):
            raise
        session.rollback()
        return _account_page(
            request,
            console,
            account_id,
            errors=problems(exc),
            action="lock",
            http_status=failure_status(exc),
        )
    return RedirectResponse(f"/console/wallet/accounts/{account_id}", status_code=303)


@router.post("/console/wallet/accounts/{account_id}/unlock")
def unlock_account(
    request: Request,
    account_id: int,
    console: Adjuster,
    reason: Annotated[str, Form(max_length=200)] = "",
) -> Response:
    """Open a locked wallet again (and lift a PIN lockout); audited with the reason, if given."""
    session = console.session
    accounts.get_account(session, account_id)
    try:
        data = UnlockIn.model_validate({"reason": reason.strip() or None})
        accounts.unlock(session, actor=console.principal, account_id=account_id, reason=data.reason)
    except (ValidationError, AppError) as exc:
        if isinstance(exc, NotFound):
            raise
        session.rollback()
        return _account_page(
            request,
            console,
            account_id,
            errors=problems(exc),
            action="unlock",
            http_status=failure_status(exc),
        )
    return RedirectResponse(f"/console/wallet/accounts/{account_id}", status_code=303)


# -- settlement between stores ---------------------------------------------------------------------


WalletTypes = Annotated[list[str] | None, Query(max_length=20)]


def _settle(console: Console, from_: date | None, to: date | None, wallet_type: list[str] | None) -> Any:
    chosen = span(console, from_, to)
    result = statements.settle(
        console.session, start=chosen["start"], end=chosen["end"], wallet_types=wallet_type or None
    )
    return chosen, result


@router.get("/console/wallet/settlement")
def settlement_page(
    request: Request,
    console: Reader,
    from_: FromDate = None,
    to: ToDate = None,
    wallet_type: WalletTypes = None,
) -> Response:
    chosen = span(console, from_, to)
    picked = [c for c in wallet_type or [] if c]
    params: list[tuple[str, str]] = [("from", chosen["from"].isoformat()), ("to", chosen["to"].isoformat())]
    params += [("wallet_type", c) for c in picked]
    context: dict[str, Any] = {
        "has_brand": console.brand_id is not None,
        "span": chosen,
        "query": urlencode(params),
        "picked": picked,
        "types": [],
        "settlement": None,
        "errors": [],
    }
    status = 200
    if console.brand_id is not None:
        context["types"] = [configuration.type_out(t) for t in configuration.list_types(console.session)]
        try:
            _, context["settlement"] = _settle(console, from_, to, picked)
        except ValidationFailed as exc:
            context["errors"], status = problems(exc), exc.status
    return render(request, "wallet_settlement.html", context, status=status)


@router.get("/console/wallet/settlement.json")
def settlement_chart(
    console: Reader, from_: FromDate = None, to: ToDate = None, wallet_type: WalletTypes = None
) -> Response:
    """Chart data: stores on the x axis, each store's net position (yuan; positive: owes the pool)."""
    if console.brand_id is None:
        return JSONResponse({"months": [], "series": []})
    _, s = _settle(console, from_, to, [c for c in wallet_type or [] if c])
    online = translate(console.lang, "wallet.online")
    stores = [line.store or online for line in s.lines]
    series = [{"name": translate(console.lang, "wallet.net"), "data": [float(line.net) for line in s.lines]}]
    return JSONResponse({"months": stores, "series": series if s.lines else []})


def _settlement_download(
    console: Console, from_: date | None, to: date | None, wallet_type: list[str] | None, fmt: str
) -> Response:
    chosen, s = _settle(console, from_, to, [c for c in wallet_type or [] if c])
    name = f"wallet-settlement-{chosen['from'].isoformat()}-{chosen['to'].isoformat()}"
    return tables.download(statements.sections(s), name, fmt)


@router.get("/console/wallet/settlement.csv")
def settlement_csv(
    console: Reader, from_: FromDate = None, to: ToDate = None, wallet_type: WalletTypes = None
) -> Response:
    return _settlement_download(console, from_, to, wallet_type, "csv")


@router.get("/console/wallet/settlement.xlsx")
def settlement_xlsx(
    console: Reader, from_: FromDate = None, to: ToDate = None, wallet_type: WalletTypes = None
) -> Response:
    return _settlement_download(console, from_, to, wallet_type, "xlsx")
