"""Wallet types and top-up rules: create, change, pause and retire, audited.

A wallet type creates its two ledger point types (kind ``"wallet"``, one unit = one fen, fair value
0.01, transferable for re-binds, no return window): ``w.<code>.p`` for principal, which never
expires, and ``w.<code>.b`` for bonus, which expires ``bonus_expiry_days`` after the top-up when set.
The points product does not show or accept point types of this kind.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from sqlalchemy.orm import Session

from huiyuan.audit import service as audit
from huiyuan.kit.errors import Conflict, NotFound, ValidationFailed, field_error
from huiyuan.kit.scope import Principal
from huiyuan.points.models import PointType
from huiyuan.wallet.core import to_fen, yuan
from huiyuan.wallet.models import WalletTopUpRule, WalletType
from huiyuan.wallet.repository import WalletRepository
from huiyuan.wallet.rules import RuleTerms
from huiyuan.wallet.schemas import (
    TopUpRuleIn,
    TopUpRuleOut,
    TopUpRuleUpdate,
    WalletTypeIn,
    WalletTypeOut,
    WalletTypeUpdate,
)

NEVER: dict[str, Any] = {"kind": "never"}


def principal_code(code: str) -> str:
    return f"w.{code}.p"


def bonus_code(code: str) -> str:
    return f"w.{code}.b"


def bonus_policy(days: int | None) -> dict[str, Any]:
    if days is None:
        return NEVER
    return {"kind": "relative", "days": days, "round_to": "end_of_day"}


def _ledger_type(brand_id: int, code: str, name: str, policy: dict[str, Any], minutes: int) -> PointType:
    return PointType(
        brand_id=brand_id,
        code=code,
        name=name[:80],
        kind="wallet",
        fair_value=Decimal("0.01"),
        expiry_policy=policy,
        pending_days=0,
        spendable=True,
        transferable=True,
        points_per_yuan=100,
        max_pay_ratio=Decimal(1),
        reservation_minutes=minutes,
        status="active",
    )


# -- wallet types ---------------------------------------------------------------------------------


def _type_snapshot(wt: WalletType) -> dict[str, Any]:
    return {
        "code": wt.code,
        "name": wt.name,
        "status": wt.status,
        "spend_order": wt.spend_order,
        "bonus_expiry_days": wt.bonus_expiry_days,
        "require_pin": wt.require_pin,
        "max_balance": wt.max_balance,
        "reservation_minutes": wt.reservation_minutes,
    }


def type_out(wt: WalletType) -> WalletTypeOut:
    return WalletTypeOut(
        id=wt.id,
        code=wt.code,
        name=wt.name,
        status=wt.status,
        spend_order=wt.spend_order,
        principal_point_type=principal_code(wt.code),
        bonus_point_type=bonus_code(wt.code),
        bonus_expiry_days=wt.bonus_expiry_days,
        require_pin=wt.require_pin,
        max_balance=yuan(wt.max_balance) if wt.max_balance is not None else None,
        reservation_minutes=wt.reservation_minutes,
        created_at=wt.created_at,
    )


def list_types(session: Session) -> list[WalletType]:
    """The wallet types in the caller's scope, oldest first."""
    return WalletRepository(session).types()


def get_type(session: Session, *, actor: Principal, code: str) -> WalletType:
    """The wallet type with this code in the caller's brand, or 404."""
    wt = WalletRepository(session).type_by_code(actor.scope.brand_id, code)
    if wt is None:
        raise NotFound(f"Wallet type '{code}' was not found.")
    return wt


def create_type(session: Session, *, actor: Principal, data: WalletTypeIn) -> WalletType:
    """Add a wallet type and its two ledger point types."""
    brand_id = actor.scope.require_brand()
    repo = WalletRepository(session)
    if (existing := repo.type_by_code(brand_id, data.code)) is not None:
        raise Conflict(
            f"Wallet type '{data.code}' exists.",
            errors=[field_error("code", "already in use", "taken")],
            existing_wallet_type_id=existing.id,
        )
    # A point type of the points product may already use the code (only wallet types are hidden).
    for code in (principal_code(data.code), bonus_code(data.code)):
        if repo.point_type_taken(brand_id, code):
            raise Conflict(
                f"Point type '{code}' exists.",
                errors=[field_error("code", f"the point type code '{code}' is taken", "taken")],
            )
    principal = _ledger_type(
        brand_id, principal_code(data.code), f"{data.name} 本金", NEVER, data.reservation_minutes
    )
    bonus = _ledger_type(
        brand_id,
        bonus_code(data.code),
        f"{data.name} 赠送",
        bonus_policy(data.bonus_expiry_days),
        data.reservation_minutes,
    )
    session.add_all([principal, bonus])
    session.flush()
    wt = WalletType(
        brand_id=brand_id,
        code=data.code,
        name=data.name,
        status="active",
        spend_order=data.spend_order,
        principal_point_type_id=principal.id,
        bonus_point_type_id=bonus.id,
        bonus_expiry_days=data.bonus_expiry_days,
        require_pin=data.require_pin,
        max_balance=to_fen(data.max_balance) if data.max_balance is not None else None,
        reservation_minutes=data.reservation_minutes,
    )
    session.add(wt)
    session.flush()
    audit.record(
        session,
        actor=actor,
        action="wallet_type.created",
        entity_type="wallet_type",
        entity_id=wt.id,
        brand_id=brand_id,
        after=_type_snapshot(wt),
    )
    return wt


def update_type(session: Session, *, actor: Principal, code: str, data: WalletTypeUpdate) -> WalletType:
    """Change a wallet type; only the fields sent change. Bonus lots already granted keep their expiry."""
    repo = WalletRepository(session)
    wt = repo.type_by_code(actor.scope.brand_id, code, for_update=True)
    if wt is None:
        raise NotFound(f"Wallet type '{code}' was not found.")
    before = _type_snapshot(wt)
    sent = data.model_dump(exclude_unset=True)
    for name in ("name", "spend_order", "require_pin", "reservation_minutes", "status"):
        if sent.get(name) is not None:
            setattr(wt, name, sent[name])
    if "bonus_expiry_days" in sent:
        wt.bonus_expiry_days = sent["bonus_expiry_days"]
    if "max_balance" in sent:
        wt.max_balance = to_fen(sent["max_balance"]) if sent["max_balance"] is not None else None
    after = _type_snapshot(wt)
    if after == before:
        return wt
    # The ledger point types follow the wallet type (the points product never shows them).
    for pt_id, policy in (
        (wt.principal_point_type_id, NEVER),
        (wt.bonus_point_type_id, bonus_policy(wt.bonus_expiry_days)),
    ):
        pt = session.get(PointType, pt_id)
        assert pt is not None
        pt.expiry_policy = policy
        pt.reservation_minutes = wt.reservation_minutes
        pt.status = wt.status
    session.flush()
    audit.record(
        session,
        actor=actor,
        action="wallet_type.updated",
        entity_type="wallet_type",
        entity_id=wt.id,
        brand_id=wt.brand_id,
        before=before,
        after=after,
    )
    return wt


# -- top-up rules ---------------------------------------------------------------------------------


def _rule_snapshot(rule: WalletTopUpRule) -> dict[str, Any]:
    return {
        "code": rule.code,
        "name": rule.name,
        "status": rule.status,
        "priority": rule.priority,
        "tier_codes": rule.tier_codes,
        "channels": rule.channels,
        "weekdays": rule.weekdays,
        "valid_from": rule.valid_from.isoformat() if rule.valid_from else None,
        "valid_to": rule.valid_to.isoformat() if rule.valid_to else None,
        "min_amount": rule.min_amount,
        "bonus_kind": rule.bonus_kind,
        "bonus_fixed": rule.bonus_fixed,
        "bonus_percent": str(Decimal(rule.bonus_percent).normalize()),
        "bonus_cap": rule.bonus_cap,
    }


def rule_out(rule: WalletTopUpRule, wallet_code: str) -> TopUpRuleOut:
    return TopUpRuleOut(
        id=rule.id,
        code=rule.code,
        name=rule.name,
        wallet_type=wallet_code,
        status=rule.status,
        priority=rule.priority,
        tier_codes=rule.tier_codes,
        channels=rule.channels,
        weekdays=rule.weekdays,
        valid_from=rule.valid_from,
        valid_to=rule.valid_to,
        min_amount=yuan(rule.min_amount),
        bonus_kind=rule.bonus_kind,
        bonus_fixed=yuan(rule.bonus_fixed),
        bonus_percent=Decimal(rule.bonus_percent).quantize(Decimal("0.01")),
        bonus_cap=yuan(rule.bonus_cap) if rule.bonus_cap is not None else None,
        granted_total=yuan(rule.granted_total),
        created_at=rule.created_at,
        updated_at=rule.updated_at,
    )


def terms(rule: WalletTopUpRule) -> RuleTerms:
    return RuleTerms(
        id=rule.id,
        priority=rule.priority,
        min_amount=rule.min_amount,
        bonus_kind=rule.bonus_kind,
        bonus_fixed=rule.bonus_fixed,
        bonus_percent=Decimal(rule.bonus_percent),
        bonus_cap=rule.bonus_cap,
        tier_codes=rule.tier_codes,
        channels=rule.channels,
        weekdays=rule.weekdays,
        valid_from=rule.valid_from,
        valid_to=rule.valid_to,
    )


def _check_rule(rule: WalletTopUpRule) -> None:
    errors = []
    if rule.bonus_kind == "fixed" and rule.bonus_fixed <= 0:
        errors.append(field_error("bonus_fixed", "a fixed bonus above 0 is required", "required"))
    if rule.bonus_kind == "percent" and Decimal(rule.bonus_percent) <= 0:
        errors.append(field_error("bonus_percent", "a percentage above 0 is required", "required"))
    if rule.valid_from is not None and rule.valid_to is not None and rule.valid_to <= rule.valid_from:
        errors.append(field_error("valid_to", "must be after valid_from", "range"))
    if errors:
        raise ValidationFailed("The top-up rule is not valid.", errors=errors)


def list_rules(
    session: Session, *, wallet_type: str | None = None, status: str | None = None
) -> list[WalletTopUpRule]:
    """Top-up rules in the caller's scope, highest priority first."""
    repo = WalletRepository(session)
    type_id = None
    if wallet_type:
        wt = repo.type_by_code(None, wallet_type)
        type_id = wt.id if wt is not None else -1
    return repo.rules(wallet_type_id=type_id, status=status)


def get_rule(session: Session, rule_id: int) -> WalletTopUpRule:
    """The top-up rule with this id in the caller's scope, or 404."""
    rule = WalletRepository(session).rule(rule_id)
    if rule is None:
        raise NotFound(f"Top-up rule {rule_id} was not found.")
    return rule


def wallet_code_of(session: Session, rule: WalletTopUpRule) -> str:
    wt = WalletRepository(session).type(rule.wallet_type_id)
    return wt.code if wt is not None else ""


def create_rule(session: Session, *, actor: Principal, data: TopUpRuleIn) -> WalletTopUpRule:
    """Add a top-up rule to a wallet type of the brand."""
    brand_id = actor.scope.require_brand()
    repo = WalletRepository(session)
    if (existing := repo.rule_by_code(brand_id, data.code)) is not None:
        raise Conflict(
            f"Top-up rule '{data.code}' exists.",
            errors=[field_error("code", "already in use", "taken")],
            existing_rule_id=existing.id,
        )
    wt = repo.type_by_code(brand_id, data.wallet_type)
    if wt is None or wt.status != "active":
        raise ValidationFailed(
            f"Unknown wallet type '{data.wallet_type}'.",
            errors=[field_error("wallet_type", "no such active wallet type", "unknown-wallet-type")],
        )
    rule = WalletTopUpRule(
        brand_id=brand_id,
        wallet_type_id=wt.id,
        code=data.code,
        name=data.name,
        status="active",
        priority=data.priority,
        tier_codes=data.tier_codes or None,
        channels=data.channels or None,
        weekdays=sorted(set(data.weekdays)) if data.weekdays else None,
        valid_from=data.valid_from,
        valid_to=data.valid_to,
        min_amount=to_fen(data.min_amount),
        bonus_kind=data.bonus_kind,
        bonus_fixed=to_fen(data.bonus_fixed) if data.bonus_fixed is not None else 0,
        bonus_percent=data.bonus_percent or Decimal(0),
        bonus_cap=to_fen(data.bonus_cap) if data.bonus_cap is not None else None,
        granted_total=0,
    )
    _check_rule(rule)
    session.add(rule)
    session.flush()
    audit.record(
        session,
        actor=actor,
        action="wallet_rule.created",
        entity_type="wallet_topup_rule",
        entity_id=rule.id,
        brand_id=brand_id,
        after=_rule_snapshot(rule),
    )
    return rule


def update_rule(
    session: Session, *, actor: Principal, rule_id: int, data: TopUpRuleUpdate
) -> WalletTopUpRule:
    """Change, pause, resume or retire a rule; a retired rule cannot change."""
    rule = WalletRepository(session).rule(rule_id, for_update=True)
    if rule is None:
        raise NotFound(f"Top-up rule {rule_id} was not found.")
    if rule.status == "retired":
        raise Conflict("A retired rule cannot change.", rule_status="retired")
    before = _rule_snapshot(rule)
    sent = data.model_dump(exclude_unset=True)
    for name in ("name", "bonus_kind", "priority", "status"):
        if sent.get(name) is not None:
            setattr(rule, name, sent[name])
    for name in ("tier_codes", "channels", "valid_from", "valid_to"):
        if name in sent:
            setattr(rule, name, sent[name] or None)
    if "weekdays" in sent:
        rule.weekdays = sorted(set(sent["weekdays"])) if sent["weekdays"] else None
    for name in ("min_amount", "bonus_fixed"):
        if sent.get(name) is not None:
            setattr(rule, name, to_fen(sent[name]))
    if "bonus_cap" in sent:
        rule.bonus_cap = to_fen(sent["bonus_cap"]) if sent["bonus_cap"] is not None else None
    if sent.get("bonus_percent") is not None:
        rule.bonus_percent = sent["bonus_percent"]
    _check_rule(rule)
    after = _rule_snapshot(rule)
    if after == before:
        return rule
    session.flush()
    audit.record(
        session,
        actor=actor,
        action="wallet_rule.updated",
        entity_type="wallet_topup_rule",
        entity_id=rule.id,
        brand_id=rule.brand_id,
        before=before,
        after=after,
    )
    return rule
