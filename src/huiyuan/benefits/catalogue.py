"""The benefit catalogue: defining, changing and reading a brand's benefits.

Every change is a ``configured`` event (with what changed), an audit row and a
``benefit.configured`` outbox event, in the caller's transaction; nothing here commits. Code, kind,
verification method and what a delegated kind grants are fixed once defined: entitlements already
granted refer to them.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, time, timedelta
from typing import Any

from pydantic import TypeAdapter
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from huiyuan.audit import service as audit
from huiyuan.benefits.models import DELEGATED_KINDS, BenefitDefinition, BenefitEvent
from huiyuan.benefits.repository import BenefitRepository
from huiyuan.benefits.schemas import (
    CouponDefinitionIn,
    CustomDefinitionIn,
    DefinitionIn,
    DefinitionOut,
    DefinitionUpdate,
    PointsDefinitionIn,
    ServiceDefinitionIn,
    ThirdPartyDefinitionIn,
)
from huiyuan.kit.clock import utcnow
from huiyuan.kit.errors import Conflict, NotFound, ValidationFailed, field_error
from huiyuan.kit.scope import Principal
from huiyuan.outbox.service import emit

AnyDefinitionIn = (
    CouponDefinitionIn
    | PointsDefinitionIn
    | ServiceDefinitionIn
    | CustomDefinitionIn
    | ThirdPartyDefinitionIn
)
DEFINITION_ADAPTER: TypeAdapter[AnyDefinitionIn] = TypeAdapter(DefinitionIn)


class DefinitionCodeTaken(Conflict):
    code = "benefit-code-taken"
    title = "A benefit with this code exists"


def snapshot(d: BenefitDefinition) -> dict[str, Any]:
    return {
        "code": d.code,
        "name": d.name,
        "kind": d.kind,
        "verification": d.verification,
        "params": d.params,
        "limits": d.limits,
        "appointment": d.appointment,
        "valid_days": d.valid_days,
        "unit_cost": str(d.unit_cost),
        "funded_by": d.funded_by,
        "served_by": d.served_by,
        "claimable": d.claimable,
        "claim_limit": d.claim_limit,
        "status": d.status,
    }


def _configured(
    session: Session, actor: Principal, d: BenefitDefinition, before: dict[str, Any] | None
) -> None:
    after = snapshot(d)
    changed = {k: v for k, v in after.items() if before is None or before.get(k) != v}
    session.add(
        BenefitEvent(
            brand_id=d.brand_id,
            definition_id=d.id,
            kind="configured",
            detail={"created": before is None, "changed": changed},
            actor=actor.label[:200],
            occurred_at=utcnow(),
        )
    )
    audit.record(
        session,
        actor=actor,
        action="benefit.created" if before is None else "benefit.updated",
        entity_type="benefit_definition",
        entity_id=d.id,
        brand_id=d.brand_id,
        before=before,
        after=after,
    )
    emit(
        session,
        type="benefit.configured",
        brand_id=d.brand_id,
        aggregate_type="benefit_definition",
        aggregate_id=d.id,
        payload={"definition_id": d.id, "code": d.code, "kind": d.kind, "status": d.status},
    )


def create_definition(session: Session, *, actor: Principal, data: AnyDefinitionIn) -> BenefitDefinition:
    """Add a benefit to the brand's catalogue."""
    brand_id = actor.scope.require_brand()
    if BenefitRepository(session).definition_by_code(brand_id, data.code) is not None:
        raise DefinitionCodeTaken(
            f"Benefit '{data.code}' exists.", errors=[field_error("code", "taken", "taken")]
        )
    d = BenefitDefinition(
        brand_id=brand_id,
        code=data.code,
        name=data.name,
        description=data.description,
        kind=data.kind,
        params={},
        limits={},
        valid_days=data.valid_days,
        unit_cost=data.unit_cost,
        funded_by=data.funded_by,
        served_by=data.served_by,
        claimable=data.claimable,
        claim_limit=data.claim_limit,
        status=data.status,
    )
    if isinstance(data, CouponDefinitionIn):
        d.params = {"template": data.template}
    elif isinstance(data, PointsDefinitionIn):
        d.params = {"point_type": data.point_type, "amount": data.amount}
    else:
        d.verification = data.verification
        d.limits = data.limits.model_dump(mode="json")
        d.appointment = data.appointment.model_dump(mode="json") if data.appointment is not None else None
        if isinstance(data, ServiceDefinitionIn):
            d.service_type = data.service_type
        elif isinstance(data, ThirdPartyDefinitionIn):
            d.partner_id = data.partner_id
            d.params = {"offer": data.offer, "reference": data.reference}
    try:
        with session.begin_nested():
            session.add(d)
            session.flush()
    except IntegrityError:
        raise DefinitionCodeTaken(
            f"Benefit '{data.code}' exists.", errors=[field_error("code", "taken", "taken")]
        )
    _configured(session, actor, d, None)
    return d


def update_definition(
    session: Session, *, actor: Principal, definition_id: int, data: DefinitionUpdate
) -> BenefitDefinition:
    """Change what may change of a definition (see ``DefinitionUpdate``)."""
    d = get_definition(session, definition_id)
    sent = data.model_fields_set
    if d.kind in DELEGATED_KINDS:
        for name in ("limits", "appointment"):
            if name in sent:
                raise ValidationFailed(
                    f"A {d.kind} benefit has no {name}.",
                    errors=[field_error(name, f"not for {d.kind} benefits", "not-applicable")],
                )
    if "appointment" in sent and d.verification != "appointment":
        raise ValidationFailed(
            "Only appointment benefits have appointment rules.",
            errors=[field_error("appointment", "only for the appointment method", "not-applicable")],
        )
    before = snapshot(d)
    for name in ("name", "description", "valid_days", "funded_by", "served_by", "claimable"):
        if name in sent:
            setattr(d, name, getattr(data, name))
    for name in ("unit_cost", "claim_limit", "status"):
        if name in sent:
            value = getattr(data, name)
            if value is None:
                raise ValidationFailed(
                    f"{name} cannot be cleared.", errors=[field_error(name, "may not be null", "required")]
                )
            setattr(d, name, value)
    if "limits" in sent:
        if data.limits is None:
            raise ValidationFailed(
                "limits cannot be cleared.", errors=[field_error("limits", "may not be null")]
            )
        d.limits = data.limits.model_dump(mode="json")
    if "appointment" in sent and data.appointment is not None:
        d.appointment = data.appointment.model_dump(mode="json")
    if snapshot(d) != before:
        d.updated_at = utcnow()
        session.flush()
        _configured(session, actor, d, before)
    return d


def get_definition(session: Session, definition_id: int) -> BenefitDefinition:
    d = BenefitRepository(session).definition(definition_id)
    if d is None:
        raise NotFound(f"Benefit {definition_id} was not found.")
    return d


def definition_out(d: BenefitDefinition) -> DefinitionOut:
    return DefinitionOut.model_validate(d, from_attributes=True)


@dataclass
class Activity:
    """A definition's events by kind, and its grants and uses per brand-local day."""

    counts: dict[str, int]
    days: list[str]
    issued: list[int]
    verified: list[int]


def definition_activity(
    session: Session, definition_id: int, *, days: int, now: datetime | None = None
) -> Activity:
    """Event counts of a definition by kind, and its ``issued`` and ``verified`` events per local
    day over the last ``days`` days (today included)."""
    d = get_definition(session, definition_id)
    repo = BenefitRepository(session)
    zone = repo.zone(d.brand_id)
    today = (now or utcnow()).astimezone(zone).date()
    first = today - timedelta(days=days - 1)
    labels = [(first + timedelta(days=i)).isoformat() for i in range(days)]
    per_day = {kind: dict.fromkeys(labels, 0) for kind in ("issued", "verified")}
    since = datetime.combine(first, time(), tzinfo=zone)
    until = datetime.combine(today + timedelta(days=1), time(), tzinfo=zone)
    for kind, at in repo.event_times(d.id, ("issued", "verified"), since, until):
        day = at.astimezone(zone).date().isoformat()
        if day in per_day[kind]:
            per_day[kind][day] += 1
    return Activity(
        counts=repo.event_counts(d.id),
        days=labels,
        issued=list(per_day["issued"].values()),
        verified=list(per_day["verified"].values()),
    )
