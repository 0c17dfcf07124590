"""Points configuration, member balances and the operator and checkout actions on the ledger.

Owns: point types and earn rules (create, update, pause, retire, with their JSON documents validated by
``expiry_policy`` and ``rules``), the read models (a member's summary, entries and lots, brand
liability, expiry outlooks), the checkout quote, and the audited operator actions (grant, adjust,
freeze, unfreeze, transfer). Every balance change is a call to ``points.ledger``; nothing here moves
points itself. Like every verb, nothing here commits.

Idempotency of writes is the ledger's: each API write carries a key, stored as ``api:<key>`` so that
client keys never meet the keys the system writes with (order earnings, sweeps). A retry with the same
key and request returns the first ``LedgerResult`` (``replayed``); the same key with another request is
``idempotency-key-reused``. Audit rows are written on the first call only.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from decimal import ROUND_FLOOR, ROUND_HALF_UP, Decimal
from typing import Any
from zoneinfo import ZoneInfo

from pydantic import ValidationError
from sqlalchemy.orm import Session

from huiyuan.audit import service as audit
from huiyuan.kit.clock import utcnow
from huiyuan.kit.errors import Conflict, NotFound, ValidationFailed, field_error
from huiyuan.kit.scope import Principal
from huiyuan.members.models import Member
from huiyuan.points import expiry_policy, ledger, rules
from huiyuan.points.ledger import LedgerResult, PointsNotAllowed
from huiyuan.points.models import EarnRule, PointEntry, PointLot, PointType
from huiyuan.points.repository import EntryFilter, PointConfigRepository, PointQueryRepository
from huiyuan.points.schemas import (
    EarnRuleIn,
    EarnRuleOut,
    EarnRuleUpdate,
    EntryOut,
    ExpiringDayOut,
    ExpiringOut,
    FunderLiabilityOut,
    LedgerOperationOut,
    LiabilityOut,
    LotOut,
    PointBalanceOut,
    PointsSummaryOut,
    PointTypeIn,
    PointTypeOut,
    PointTypeUpdate,
    QuoteIn,
    QuoteOut,
    ReservationOut,
    ReserveIn,
    StaffEntryOut,
    StaffLotOut,
    TypeLiabilityOut,
)
from huiyuan.settings import get_settings
from huiyuan.tenancy.repository import TenancyRepository

CENT = Decimal("0.01")
KEY_PREFIX = "api:"
KEY_PATTERN = re.compile(r"[A-Za-z0-9_.:-]{4,180}")
SOON_DAYS = (30, 90)
MAX_OUTLOOK_DAYS = 366
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


def _validated_definition(session: Session, brand_id: int, raw: dict[str, Any]) -> rules.RuleDefinition:
    try:
        definition = rules.parse_definition(raw)
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


def _apply_definition(rule: EarnRule, definition: rules.RuleDefinition) -> None:
    rule.definition = rules.dump_definition(definition)
    trigger = definition.trigger
    rule.trigger = trigger.action if isinstance(trigger, rules.ActionTrigger) else "order"
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


# -- time windows ----------------------------------------------------------------------------------


def _timezone(session: Session, brand_id: int | None) -> str:
    if brand_id is None:
        return get_settings().default_timezone
    return TenancyRepository(session).brand(brand_id).timezone


def _end_of_local_day(now: datetime, zone: ZoneInfo, days: int) -> datetime:
    """00:00 local after the ``days``-th local day counting today as the first: lots expiring by then
    have their last usable day within the window."""
    today = now.astimezone(zone).date()
    return datetime.combine(today + timedelta(days=days), time(), tzinfo=zone).astimezone(UTC)


def _last_usable_day(expires_at: datetime, zone: ZoneInfo) -> date:
    # Expiry instants are exclusive: a lot expiring at 00:00 local is last usable the day before.
    return (expires_at - timedelta(microseconds=1)).astimezone(zone).date()


# -- one member's points ---------------------------------------------------------------------------


def get_member(session: Session, member_id: int) -> Member:
    """The member in the caller's scope, or 404 (another brand's member is missing, too)."""
    member = PointQueryRepository(session).member(member_id)
    if member is None:
        raise NotFound(f"Member {member_id} was not found.")
    return member


def member_summary(session: Session, member_id: int) -> PointsSummaryOut:
    """The member's points per point type: buckets as of now and what expires within 30 and 90 days."""
    member = get_member(session, member_id)
    now = utcnow()
    zone = ZoneInfo(_timezone(session, member.brand_id))
    repo = PointQueryRepository(session)
    buckets = repo.lot_buckets(
        member.id,
        now=now,
        until_30d=_end_of_local_day(now, zone, SOON_DAYS[0]),
        until_90d=_end_of_local_day(now, zone, SOON_DAYS[1]),
    )
    accounts = {a.point_type_id: a for a in repo.accounts(member.id)}
    held: dict[int, dict[str, int]] = {}
    for b in buckets:
        row = held.setdefault(b.point_type_id, {"pending": 0, "active": 0, "frozen": 0, "e30": 0, "e90": 0})
        row[b.state] += b.remaining
        row["e30"] += b.expiring_30d
        row["e90"] += b.expiring_90d
    types = [
        pt
        for pt in list_point_types(session)
        if pt.brand_id == member.brand_id and (pt.status == "active" or pt.id in accounts)
    ]
    balances = []
    for pt in types:
        row = held.get(pt.id, {})
        account = accounts.get(pt.id)
        balances.append(
            PointBalanceOut(
                point_type=pt.code,
                name=pt.name,
                kind=pt.kind,
                available=row.get("active", 0),
                pending=row.get("pending", 0),
                frozen=row.get("frozen", 0),
                reserved=account.reserved if account else 0,
                debt=account.debt if account else 0,
                expiring_30d=row.get("e30", 0),
                expiring_90d=row.get("e90", 0),
                earned_total=account.earned_total if account else 0,
                spent_total=account.spent_total if account else 0,
                expired_total=account.expired_total if account else 0,
            )
        )
    return PointsSummaryOut(member_id=member.id, as_of=now, balances=balances)


def _type_id(session: Session, member: Member, code: str | None) -> int | None:
    if not code:
        return None
    pt = PointConfigRepository(session).type_by_code(code, brand_id=member.brand_id)
    return pt.id if pt is not None else -1  # an unknown type matches nothing


@dataclass
class EntryPage:
    rows: list[PointEntry]
    codes: dict[int, str]


@dataclass
class LotPage:
    rows: list[PointLot]
    codes: dict[int, str]


def _codes(session: Session, ids: set[int]) -> dict[int, str]:
    return {i: pt.code for i, pt in PointConfigRepository(session).types_by_id(ids).items()}


def list_entries(
    session: Session,
    member_id: int,
    *,
    point_type: str | None = None,
    kind: str | None = None,
    occurred_from: datetime | None = None,
    occurred_to: datetime | None = None,
    source_type: str | None = None,
    source_id: str | None = None,
    before_id: int | None,
    limit: int,
) -> EntryPage:
    """The member's ledger lines, newest first, with the point type codes they refer to."""
    member = get_member(session, member_id)
    filters = EntryFilter(
        point_type_id=_type_id(session, member, point_type),
        kind=kind,
        occurred_from=occurred_from,
        occurred_to=occurred_to,
        source_type=source_type,
        source_id=source_id,
    )
    rows = PointQueryRepository(session).entries(member.id, filters, before_id=before_id, limit=limit)
    return EntryPage(rows=rows, codes=_codes(session, {e.point_type_id for e in rows}))


def list_lots(
    session: Session,
    member_id: int,
    *,
    state: str | None = None,
    point_type: str | None = None,
    before_id: int | None,
    limit: int,
) -> LotPage:
    """The member's lots with their expiry, newest first."""
    member = get_member(session, member_id)
    rows = PointQueryRepository(session).lots(
        member.id,
        state=state,
        point_type_id=_type_id(session, member, point_type),
        before_id=before_id,
        limit=limit,
    )
    return LotPage(rows=rows, codes=_codes(session, {lot.point_type_id for lot in rows}))


def entry_out(entry: PointEntry, codes: Mapping[int, str], *, staff: bool) -> EntryOut:
    fields: dict[str, Any] = {
        "id": entry.id,
        "point_type": codes.get(entry.point_type_id, ""),
        "kind": entry.kind,
        "amount": entry.amount,
        "d_available": entry.d_available,
        "d_pending": entry.d_pending,
        "d_frozen": entry.d_frozen,
        "d_reserved": entry.d_reserved,
        "d_debt": entry.d_debt,
        "reason": entry.reason,
        "source_type": entry.source_type,
        "source_id": entry.source_id,
        "store_id": entry.store_id,
        "occurred_at": entry.occurred_at,
    }
    if not staff:
        return EntryOut(**fields)
    return StaffEntryOut(
        **fields,
        operation_id=entry.operation_id,
        reservation_id=entry.reservation_id,
        reverses_entry_id=entry.reverses_entry_id,
        actor=entry.actor,
    )


def lot_out(lot: PointLot, codes: Mapping[int, str], *, staff: bool) -> LotOut:
    fields: dict[str, Any] = {
        "id": lot.id,
        "point_type": codes.get(lot.point_type_id, ""),
        "amount": lot.amount,
        "remaining": lot.remaining,
        "state": lot.state,
        "earned_at": lot.earned_at,
        "activates_at": lot.activates_at,
        "expires_at": lot.expires_at,
        "nominal_expires_at": lot.nominal_expires_at,
        "source_type": lot.source_type,
        "source_id": lot.source_id,
        "store_id": lot.store_id,
    }
    if not staff:
        return LotOut(**fields)
    return StaffLotOut(
        **fields,
        funded_by=lot.funded_by,
        unit_value=lot.unit_value,
        rule_id=lot.rule_id,
        frozen_reason=lot.frozen_reason,
    )


# -- brand totals ----------------------------------------------------------------------------------


def _yuan(value: Decimal) -> Decimal:
    return value.quantize(CENT, ROUND_HALF_UP)


def liability(session: Session) -> LiabilityOut:
    """Outstanding points at the fair value each lot was granted at, per point type and funder."""
    now = utcnow()
    repo = PointQueryRepository(session)
    per_type: dict[int, dict[str, list[Any]]] = {}
    reserved: dict[int, int] = {}
    for row in repo.outstanding(now=now):
        funder = per_type.setdefault(row.point_type_id, {}).setdefault(row.funded_by, [0, Decimal(0)])
        funder[0] += row.points
        funder[1] += row.unit_value * row.points
    for row in repo.reserved():
        funder = per_type.setdefault(row.point_type_id, {}).setdefault(row.funded_by, [0, Decimal(0)])
        funder[0] += row.points
        funder[1] += row.unit_value * row.points
        reserved[row.point_type_id] = reserved.get(row.point_type_id, 0) + row.points
    holders, total_holders = repo.holders(now=now)
    types = {pt.id: pt for pt in list_point_types(session)}
    for pt_id in per_type.keys() - types.keys():
        types.update(PointConfigRepository(session).types_by_id([pt_id]))
    lines = []
    for pt in sorted(types.values(), key=lambda p: p.id):
        funders = per_type.get(pt.id, {})
        by_funder = [
            FunderLiabilityOut(funded_by=name, points=n, value=_yuan(v))
            for name, (n, v) in sorted(funders.items())
        ]
        lines.append(
            TypeLiabilityOut(
                point_type=pt.code,
                name=pt.name,
                kind=pt.kind,
                points=sum(f.points for f in by_funder),
                reserved_points=reserved.get(pt.id, 0),
                value=_yuan(sum((v for _n, v in funders.values()), Decimal(0))),
                members=holders.get(pt.id, 0),
                by_funder=by_funder,
            )
        )
    return LiabilityOut(
        as_of=now,
        points=sum(line.points for line in lines),
        value=_yuan(sum((line.value for line in lines), Decimal(0))),
        members=total_holders,
        point_types=lines,
    )


def expiring(session: Session, *, actor: Principal, days: int, member_id: int | None = None) -> ExpiringOut:
    """Available points whose last usable day falls within the next ``days`` local days, per day."""
    if not 1 <= days <= MAX_OUTLOOK_DAYS:
        raise ValidationFailed(
            f"days must be between 1 and {MAX_OUTLOOK_DAYS}.",
            errors=[field_error("days", f"must be between 1 and {MAX_OUTLOOK_DAYS}", "out-of-range")],
        )
    brand_id = actor.scope.brand_id
    if member_id is not None:
        brand_id = get_member(session, member_id).brand_id
    tz = _timezone(session, brand_id)
    zone = ZoneInfo(tz)
    now = utcnow()
    rows = PointQueryRepository(session).expiring(
        now=now, until=_end_of_local_day(now, zone, days), member_id=member_id
    )
    codes = _codes(session, {pt_id for pt_id, _at, _n in rows})
    per_day: dict[date, dict[str, int]] = {}
    for pt_id, at, n in rows:
        day = per_day.setdefault(_last_usable_day(at, zone), {})
        day[codes[pt_id]] = day.get(codes[pt_id], 0) + n
    by_type: dict[str, int] = {}
    for counts in per_day.values():
        for code, n in counts.items():
            by_type[code] = by_type.get(code, 0) + n
    return ExpiringOut(
        as_of=now,
        days=days,
        timezone=tz,
        points=sum(by_type.values()),
        by_type=by_type,
        per_day=[
            ExpiringDayOut(date=d, points=sum(counts.values()), by_type=counts)
            for d, counts in sorted(per_day.items())
        ],
    )


# -- checkout --------------------------------------------------------------------------------------


def _product_type(session: Session, brand_id: int, code: str) -> None:
    """Refuse the wallet's sub-ledgers (kind "wallet"): their money moves only through ``huiyuan.wallet``."""
    if ledger.point_type_by_code(session, brand_id, code).kind == "wallet":
        raise ValidationFailed(
            f"Unknown point type '{code}'.",
            errors=[field_error("point_type", "no such point type", "unknown-point-type")],
        )


def _spendable_type(session: Session, brand_id: int, code: str) -> PointType:
    _product_type(session, brand_id, code)
    pt = ledger.point_type_by_code(session, brand_id, code)
    if not pt.spendable:
        raise PointsNotAllowed(f"Points of type '{pt.code}' cannot be spent.")
    return pt


def quote(session: Session, *, actor: Principal, data: QuoteIn) -> QuoteOut:
    """How many points the member may pay this cart with, and what they are worth in cash."""
    brand_id = actor.scope.require_brand()
    member = get_member(session, data.member_id)
    pt = _spendable_type(session, brand_id, data.point_type)
    available = PointQueryRepository(session).available(member.id, pt.id, now=utcnow())
    ratio_limit = int(
        (data.cart_amount * Decimal(pt.max_pay_ratio) * pt.points_per_yuan).to_integral_value(ROUND_FLOOR)
    )
    usable = min(available, ratio_limit)
    if data.max_points is not None:
        usable = min(usable, data.max_points)
    usable = max(usable, 0)
    return QuoteOut(
        member_id=member.id,
        point_type=pt.code,
        available=available,
        ratio_limit=ratio_limit,
        cap=data.max_points,
        usable_points=usable,
        cash_value=(Decimal(usable) / pt.points_per_yuan).quantize(CENT, ROUND_FLOOR),
        points_per_yuan=pt.points_per_yuan,
        max_pay_ratio=pt.max_pay_ratio,
    )


def _store_id(session: Session, brand_id: int, code: str | None) -> int | None:
    if code is None:
        return None
    store = PointQueryRepository(session).store_by_code(brand_id, code)
    if store is None:
        raise ValidationFailed(
            "Unknown store.", errors=[field_error("store", "no such store", "unknown-store")]
        )
    return store.id


def reservation_out(result: LedgerResult, reservation_key: str) -> ReservationOut:
    extra = result.extra
    return ReservationOut(
        **operation_out(result).model_dump(),
        reservation_key=reservation_key,
        reservation_id=int(extra["reservation_id"]),
        status=str(extra.get("status", "held")),
        expires_at=extra.get("expires_at"),
    )


def reserve(session: Session, *, actor: Principal, data: ReserveIn, key: str) -> LedgerResult:
    """Hold points for a checkout under ``key``, which also names the reservation."""
    brand_id = actor.scope.require_brand()
    get_member(session, data.member_id)
    _product_type(session, brand_id, data.point_type)
    return ledger.reserve(
        session,
        actor=actor,
        member_id=data.member_id,
        point_type=data.point_type,
        amount=data.points,
        key=KEY_PREFIX + key,
        order_ref=data.order_ref,
        store_id=_store_id(session, brand_id, data.store),
        ttl_minutes=data.ttl_minutes,
    )


def settle_reservation(
    session: Session, *, actor: Principal, reservation_key: str, confirm: bool
) -> LedgerResult:
    """Confirm (spend) or release a held reservation; repeating either returns the first result."""
    verb = ledger.confirm if confirm else ledger.release
    return verb(session, actor=actor, reservation_key=KEY_PREFIX + reservation_key)


# -- operator and system actions -------------------------------------------------------------------


def operation_key(body_key: str | None, header_key: str | None, *, max_length: int = 180) -> str:
    """The idempotency key of a write: the body's ``idempotency_key`` or the ``Idempotency-Key`` header
    (4 to ``max_length`` URL-safe characters)."""
    if body_key and header_key and body_key != header_key:
        raise ValidationFailed(
            "Two different idempotency keys were sent.",
            errors=[field_error("idempotency_key", "differs from the Idempotency-Key header", "conflicting")],
        )
    key = body_key or header_key
    if not key:
        raise ValidationFailed(
            "An idempotency key is required.",
            errors=[
                field_error(
                    "idempotency_key", "send it in the body or the Idempotency-Key header", "required"
                )
            ],
        )
    if not KEY_PATTERN.fullmatch(key) or len(key) > max_length:
        # The key of a reservation is part of its URLs, so every key keeps to URL-safe characters.
        raise ValidationFailed(
            "The idempotency key is not valid.",
            errors=[field_error("idempotency_key", f"4–{max_length} of A–Z a–z 0–9 _ . : -", "pattern")],
        )
    return key


def operation_out(result: LedgerResult) -> LedgerOperationOut:
    return LedgerOperationOut.model_validate(result.to_json())


def _audit_operation(
    session: Session,
    result: LedgerResult,
    *,
    actor: Principal,
    action: str,
    member: Member,
    reason: str | None,
    **details: Any,
) -> None:
    if result.replayed:
        return
    audit.record(
        session,
        actor=actor,
        action=action,
        entity_type="member",
        entity_id=member.id,
        brand_id=member.brand_id,
        after={
            "point_type": result.point_type,
            "amount": result.amount,
            "operation_id": result.operation_id,
            **details,
        },
        note=reason,
    )


def grant(
    session: Session,
    *,
    actor: Principal,
    member_id: int,
    key: str,
    point_type: str,
    amount: int,
    reason: str,
    funded_by: str = "brand",
    store: str | None = None,
) -> LedgerResult:
    """A manual earn: a new lot, active at once, funded by ``funded_by``."""
    brand_id = actor.scope.require_brand()
    member = get_member(session, member_id)
    _product_type(session, brand_id, point_type)
    result = ledger.earn(
        session,
        actor=actor,
        member_id=member.id,
        point_type=point_type,
        amount=amount,
        key=KEY_PREFIX + key,
        source_type="manual",
        reason=reason,
        store_id=_store_id(session, brand_id, store),
        funded_by=funded_by,
        pending_days=0,
    )
    _audit_operation(
        session,
        result,
        actor=actor,
        action="points.granted",
        member=member,
        reason=reason,
        funded_by=funded_by,
    )
    return result


def adjust(
    session: Session, *, actor: Principal, member_id: int, key: str, point_type: str, amount: int, reason: str
) -> LedgerResult:
    """An operator's correction (± points) with its reason."""
    member = get_member(session, member_id)
    _product_type(session, member.brand_id, point_type)
    result = ledger.adjust(
        session,
        actor=actor,
        member_id=member.id,
        point_type=point_type,
        amount=amount,
        key=KEY_PREFIX + key,
        reason=reason,
    )
    # The ledger reports a negative adjustment as the points it drew; the audit keeps the sign.
    _audit_operation(
        session, result, actor=actor, action="points.adjusted", member=member, reason=reason, amount=amount
    )
    return result


def freeze(
    session: Session,
    *,
    actor: Principal,
    member_id: int,
    key: str,
    point_type: str,
    reason: str,
    lot_ids: list[int] | None = None,
    unfreeze: bool = False,
) -> LedgerResult:
    """Freeze (or unfreeze) some or all of a member's lots of a point type."""
    member = get_member(session, member_id)
    _product_type(session, member.brand_id, point_type)
    result = ledger.freeze(
        session,
        actor=actor,
        member_id=member.id,
        point_type=point_type,
        key=KEY_PREFIX + key,
        reason=reason,
        lot_ids=lot_ids,
        unfreeze=unfreeze,
    )
    _audit_operation(
        session,
        result,
        actor=actor,
        action="points.unfrozen" if unfreeze else "points.frozen",
        member=member,
        reason=reason,
        lots=result.extra.get("lots", []),
    )
    return result


def transfer(
    session: Session,
    *,
    actor: Principal,
    member_id: int,
    key: str,
    to_member_id: int,
    point_type: str,
    amount: int,
    reason: str | None = None,
) -> LedgerResult:
    """Move available points from one member to another of the same brand."""
    member = get_member(session, member_id)
    receiver = get_member(session, to_member_id)
    _product_type(session, member.brand_id, point_type)
    result = ledger.transfer(
        session,
        actor=actor,
        from_member_id=member.id,
        to_member_id=receiver.id,
        point_type=point_type,
        amount=amount,
        key=KEY_PREFIX + key,
        reason=reason,
    )
    _audit_operation(
        session,
        result,
        actor=actor,
        action="points.transferred",
        member=member,
        reason=reason,
        to_member_id=receiver.id,
    )
    return result
