"""Points configuration: point types and earn rules.

Owns creating, updating, pausing and retiring point types and earn rules, with their JSON documents
validated by ``expiry_policy`` and ``rules``, and the shapes the API and console show them in. Every
change is audited; nothing here touches lots, accounts or the ledger, and nothing here commits.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from decimal import Decimal
from typing import Any

from pydantic import ValidationError
from sqlalchemy.orm import Session

from huiyuan.audit import service as audit
from huiyuan.kit.errors import Conflict, NotFound, ValidationFailed, field_error
from huiyuan.kit.scope import Principal
from huiyuan.points import expiry_policy, rule_schema
from huiyuan.points.models import EarnRule, PointType
from huiyuan.points.repository import PointConfigRepository
from huiyuan.points.schemas import (
    EarnRuleIn,
    EarnRuleOut,
    EarnRuleUpdate,
    PointTypeIn,
    PointTypeOut,
    PointTypeUpdate,
)

RULE_STATUS_ACTIONS = {
    "active": "earn_rule.resumed",
    "paused": "earn_rule.paused",
    "retired": "earn_rule.retired",
}


# -- validation of stored JSON documents -----------------------------------------------------------


def _field_path(prefix: str, loc: Sequence[int | str], data: Any, error_type: str) -> str:
    """A pydantic location as a field path, without the discriminator tags pydantic inserts for
    tagged unions (``('relative', 'months')`` on ``{"kind": "relative"}`` → ``months``)."""
    parts: list[str] = [prefix]
    node = data
    for item in loc:
        if (
            isinstance(node, Mapping)
            and isinstance(item, str)
            and item not in node
            and node.get("kind") == item
        ):
            continue
        parts.append(str(item))
        if isinstance(node, Mapping):
            node = node.get(item) if isinstance(item, str) else None
        elif isinstance(node, list) and isinstance(item, int) and 0 <= item < len(node):
            node = node[item]
        else:
            node = None
    if error_type.startswith("union_tag"):
        parts.append("kind")
    return ".".join(parts)


def _invalid(prefix: str, exc: ValidationError, data: Any, detail: str) -> ValidationFailed:
    errors = [
        field_error(_field_path(prefix, e["loc"], data, e["type"]), e["msg"], e["type"]) for e in exc.errors()
    ]
    return ValidationFailed(detail, errors=errors)


def validated_policy(raw: dict[str, Any]) -> dict[str, Any]:
    """The expiry policy in its stored form, or ``ValidationFailed`` with ``expiry_policy.*`` fields."""
    try:
        policy = expiry_policy.parse_policy(raw)
    except ValidationError as exc:
        raise _invalid("expiry_policy", exc, raw, "The expiry policy is not valid.")
    return policy.model_dump(mode="json", exclude_none=True)


def _validated_definition(session: Session, brand_id: int, raw: dict[str, Any]) -> rule_schema.RuleDefinition:
    try:
        definition = rule_schema.parse_definition(raw)
    except ValidationError as exc:
        raise _invalid("definition", exc, raw, "The rule definition is not valid.")
    pt = PointConfigRepository(session).type_by_code(definition.point_type, brand_id=brand_id)
    if pt is None or pt.status != "active":
        raise ValidationFailed(
            f"Unknown point type '{definition.point_type}'.",
            errors=[field_error("definition.point_type", "no such active point type", "unknown-point-type")],
        )
    return definition


def _check_window(valid_from: datetime | None, valid_to: datetime | None) -> None:
    if valid_from is not None and valid_to is not None and valid_to <= valid_from:
        raise ValidationFailed(
            "The rule would never apply.",
            errors=[field_error("valid_to", "must be after valid_from", "range")],
        )


# -- point types -----------------------------------------------------------------------------------


def _type_snapshot(pt: PointType) -> dict[str, Any]:
    return {
        "code": pt.code,
        "name": pt.name,
        "kind": pt.kind,
        "fair_value": str(Decimal(pt.fair_value).normalize()),
        "expiry_policy": pt.expiry_policy,
        "pending_days": pt.pending_days,
        "spendable": pt.spendable,
        "transferable": pt.transferable,
        "points_per_yuan": pt.points_per_yuan,
        "max_pay_ratio": str(Decimal(pt.max_pay_ratio).normalize()),
        "reservation_minutes": pt.reservation_minutes,
        "status": pt.status,
    }


def point_type_out(pt: PointType) -> PointTypeOut:
    out = PointTypeOut.model_validate(pt, from_attributes=True)
    # The column scales, whether the row was just written or read back.
    out.fair_value = Decimal(pt.fair_value).quantize(Decimal("0.000001"))
    out.max_pay_ratio = Decimal(pt.max_pay_ratio).quantize(Decimal("0.0001"))
    return out


def list_point_types(session: Session, *, include_retired: bool = True) -> list[PointType]:
    """The point types in the caller's scope, oldest first."""
    return PointConfigRepository(session).types(include_retired=include_retired)


def get_point_type(session: Session, *, actor: Principal, code: str) -> PointType:
    """The point type with this code in the caller's brand, or 404."""
    pt = PointConfigRepository(session).type_by_code(code, brand_id=actor.scope.brand_id)
    if pt is None:
        raise NotFound(f"Point type '{code}' was not found.")
    return pt


def create_point_type(session: Session, *, actor: Principal, data: PointTypeIn) -> PointType:
    """Add a point type to the actor's brand; the code is unique within the brand."""
    brand_id = actor.scope.require_brand()
    repo = PointConfigRepository(session)
    existing = repo.type_by_code(data.code, brand_id=brand_id)
    if existing is not None:
        raise Conflict(
            f"Point type '{data.code}' exists.",
            errors=[field_error("code", "already in use", "taken")],
            existing_point_type_id=existing.id,
        )
    pt = PointType(
        brand_id=brand_id,
        code=data.code,
        name=data.name,
        kind=data.kind,
        fair_value=data.fair_value,
        expiry_policy=validated_policy(data.expiry_policy),
        pending_days=data.pending_days,
        spendable=data.kind != "growth" if data.spendable is None else data.spendable,
        transferable=data.transferable,
        points_per_yuan=data.points_per_yuan,
        max_pay_ratio=data.max_pay_ratio,
        reservation_minutes=data.reservation_minutes,
        status="active",
    )
    session.add(pt)
    session.flush()
    audit.record(
        session,
        actor=actor,
        action="point_type.created",
        entity_type="point_type",
        entity_id=pt.id,
        brand_id=brand_id,
        after=_type_snapshot(pt),
    )
    return pt


def update_point_type(session: Session, *, actor: Principal, code: str, data: PointTypeUpdate) -> PointType:
    """Change a point type; only the fields sent change. Granted lots keep their expiry and unit value."""
    pt = PointConfigRepository(session).type_by_code(code, brand_id=actor.scope.brand_id, for_update=True)
    if pt is None:
        raise NotFound(f"Point type '{code}' was not found.")
    before = _type_snapshot(pt)
    sent = data.model_dump(exclude_unset=True)
    if sent.get("expiry_policy") is not None:
        pt.expiry_policy = validated_policy(sent["expiry_policy"])
    for name in (
        "name",
        "fair_value",
        "pending_days",
        "spendable",
        "transferable",
        "points_per_yuan",
        "max_pay_ratio",
        "reservation_minutes",
        "status",
    ):
        if sent.get(name) is not None:
            setattr(pt, name, sent[name])
    after = _type_snapshot(pt)
    if after == before:
        return pt
    session.flush()
    audit.record(
        session,
        actor=actor,
        action="point_type.updated",
        entity_type="point_type",
        entity_id=pt.id,
        brand_id=pt.brand_id,
        before=before,
        after=after,
    )
    return pt


# -- earn rules ------------------------------------------------------------------------------------


def _rule_snapshot(rule: EarnRule) -> dict[str, Any]:
    return {
        "code": rule.code,
        "name": rule.name,
        "trigger": rule.trigger,
        "definition": rule.definition,
        "priority": rule.priority,
        "status": rule.status,
        "valid_from": rule.valid_from.isoformat() if rule.valid_from else None,
        "valid_to": rule.valid_to.isoformat() if rule.valid_to else None,
    }


def rule_out(rule: EarnRule) -> EarnRuleOut:
    return EarnRuleOut(
        id=rule.id,
        code=rule.code,
        name=rule.name,
        trigger=rule.trigger,
        point_type=str(rule.definition.get("point_type", "")),
        definition=rule.definition,
        priority=rule.priority,
        status=rule.status,
        valid_from=rule.valid_from,
        valid_to=rule.valid_to,
        granted_total=rule.granted_total,
        created_at=rule.created_at,
        updated_at=rule.updated_at,
    )


def _apply_definition(rule: EarnRule, definition: rule_schema.RuleDefinition) -> None:
    rule.definition = rule_schema.dump_definition(definition)
    trigger = definition.trigger
    rule.trigger = trigger.action if isinstance(trigger, rule_schema.ActionTrigger) else "order"
    rule.priority = definition.priority


def list_rules(
    session: Session, *, status: str | None = None, trigger: str | None = None, point_type: str | None = None
) -> list[EarnRule]:
    """Earn rules in the caller's scope, highest priority first."""
    return PointConfigRepository(session).rules(status=status, trigger=trigger, point_type=point_type)


def get_rule(session: Session, rule_id: int) -> EarnRule:
    """The earn rule with this id in the caller's scope, or 404."""
    rule = PointConfigRepository(session).rule(rule_id)
    if rule is None:
        raise NotFound(f"Earn rule {rule_id} was not found.")
    return rule


def create_rule(session: Session, *, actor: Principal, data: EarnRuleIn) -> EarnRule:
    """Add an earn rule; its definition is validated and its point type must exist in the brand."""
    brand_id = actor.scope.require_brand()
    repo = PointConfigRepository(session)
    existing = repo.rule_by_code(brand_id, data.code)
    if existing is not None:
        raise Conflict(
            f"Earn rule '{data.code}' exists.",
            errors=[field_error("code", "already in use", "taken")],
            existing_rule_id=existing.id,
        )
    definition = _validated_definition(session, brand_id, data.definition)
    _check_window(data.valid_from, data.valid_to)
    rule = EarnRule(
        brand_id=brand_id,
        code=data.code,
        name=data.name,
        status="active",
        valid_from=data.valid_from,
        valid_to=data.valid_to,
        granted_total=0,
    )
    _apply_definition(rule, definition)
    session.add(rule)
    session.flush()
    audit.record(
        session,
        actor=actor,
        action="earn_rule.created",
        entity_type="earn_rule",
        entity_id=rule.id,
        brand_id=brand_id,
        after=_rule_snapshot(rule),
    )
    return rule


def update_rule(session: Session, *, actor: Principal, rule_id: int, data: EarnRuleUpdate) -> EarnRule:
    """Change a rule's name, definition or validity; a retired rule cannot change."""
    rule = PointConfigRepository(session).rule(rule_id, for_update=True)
    if rule is None:
        raise NotFound(f"Earn rule {rule_id} was not found.")
    if rule.status == "retired":
        raise Conflict("A retired rule cannot change.", rule_status="retired")
    before = _rule_snapshot(rule)
    sent = data.model_dump(exclude_unset=True)
    if sent.get("definition") is not None:
        _apply_definition(rule, _validated_definition(session, rule.brand_id, sent["definition"]))
    if sent.get("name") is not None:
        rule.name = sent["name"]
    for name in ("valid_from", "valid_to"):
        if name in sent:
            setattr(rule, name, sent[name])
    _check_window(rule.valid_from, rule.valid_to)
    after = _rule_snapshot(rule)
    if after == before:
        return rule
    session.flush()
    audit.record(
        session,
        actor=actor,
        action="earn_rule.updated",
        entity_type="earn_rule",
        entity_id=rule.id,
        brand_id=rule.brand_id,
        before=before,
        after=after,
    )
    return rule


def change_rule_status(
    session: Session, *, actor: Principal, rule_id: int, status: str, reason: str | None = None
) -> EarnRule:
    """Pause, resume or retire a rule; retiring is final."""
    rule = PointConfigRepository(session).rule(rule_id, for_update=True)
    if rule is None:
        raise NotFound(f"Earn rule {rule_id} was not found.")
    if rule.status == status:
        return rule
    if rule.status == "retired":
        raise Conflict("A retired rule cannot be reactivated.", rule_status="retired")
    before = rule.status
    rule.status = status
    session.flush()
    audit.record(
        session,
        actor=actor,
        action=RULE_STATUS_ACTIONS[status],
        entity_type="earn_rule",
        entity_id=rule.id,
        brand_id=rule.brand_id,
        before={"status": before},
        after={"status": status},
        note=reason,
    )
    return rule
