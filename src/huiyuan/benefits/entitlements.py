"""Granting catalogue benefits to members, and the life of an entitlement outside its uses:
void by an operator, expiry, members' claims, and the read models.

Policies:

* **One grant per key.** A grant queues on its idempotency key (PostgreSQL advisory lock; SQLite
  writers are serialised), and the ``issued`` event carries the key under a unique constraint: a
  retry returns the first result (``replayed``); the same key for another member, benefit or
  quantity is ``idempotency-key-reused``.
* **One ledger per balance.** ``coupon``, ``points`` and ``growth`` definitions create no
  entitlement: they grant through their own grantor (``benefits.registry``), keyed
  ``catalogue:{key}``, and only the ``issued`` event records that the catalogue did it. Their use,
  expiry and settlement are the coupons' and the points' own.
* **Entitlements** (service, custom, third party) hold ``quantity × uses_per_entitlement`` uses
  (null: unlimited while valid) from now until ``valid_days`` later (the grant's, else the
  definition's; neither: no end). Only ``active`` definitions are granted; closed or frozen
  members get nothing.
* **Void** ends an active entitlement at once (open appointments are cancelled); uses already
  verified stay verified and settled. **Expiry** does the same when ``valid_to`` has passed
  (``benefits.expire`` job; reads show such entitlements as expired right away).
* **Claims**: a member may claim an active ``claimable`` definition up to ``claim_limit`` times;
  the member row is locked first so the count is exact under concurrency.

Nothing here commits.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.orm import Session

from huiyuan.audit import service as audit
from huiyuan.benefits import registry
from huiyuan.benefits.limits import parse_limits
from huiyuan.benefits.models import DELEGATED_KINDS, BenefitDefinition, BenefitEvent, MemberBenefit
from huiyuan.benefits.repository import BenefitRepository
from huiyuan.benefits.schemas import MemberBenefitOut
from huiyuan.kit.clock import utcnow
from huiyuan.kit.db import advisory_lock
from huiyuan.kit.errors import Conflict, IdempotencyMismatch, NotFound, field_error
from huiyuan.kit.scope import Principal
from huiyuan.outbox.service import emit


class BenefitNotGrantable(Conflict):
    code = "benefit-not-grantable"
    title = "This benefit cannot be granted now"


class MemberNotActive(Conflict):
    code = "member-not-active"
    title = "The member cannot receive benefits"


class ClaimLimitReached(Conflict):
    code = "benefit-claim-limit"
    title = "The member has claimed this benefit as often as allowed"


class EntitlementNotVoidable(Conflict):
    code = "benefit-not-voidable"
    title = "Only an active entitlement can be voided"


@dataclass
class GrantResult:
    definition: BenefitDefinition
    member_id: int
    entitlement: MemberBenefit | None
    delegated: dict[str, Any] | None
    replayed: bool = False

    def for_registry(self) -> dict[str, Any]:
        return {
            "kind": "benefit",
            "benefit": self.definition.code,
            "member_benefit_id": self.entitlement.id if self.entitlement is not None else None,
            "delegated": self.delegated,
        }


def add_event(
    session: Session,
    actor: Principal,
    mb: MemberBenefit,
    kind: str,
    *,
    quantity: int | None = None,
    detail: dict[str, Any] | None = None,
    at: datetime | None = None,
) -> None:
    """Append one step of an entitlement's life."""
    session.add(
        BenefitEvent(
            brand_id=mb.brand_id,
            definition_id=mb.definition_id,
            member_benefit_id=mb.id,
            member_id=mb.member_id,
            kind=kind,
            quantity=quantity,
            detail=detail or {},
            actor=actor.label[:200],
            occurred_at=at or utcnow(),
        )
    )


def _plain(value: Any) -> Any:
    return json.loads(json.dumps(value, default=str))


def _delegated_spec(d: BenefitDefinition, quantity: int) -> dict[str, Any]:
    if d.kind == "coupon":
        return {"kind": "coupon", "template": d.params["template"], "quantity": quantity}
    return {
        "kind": "points",
        "point_type": d.params["point_type"],
        "amount": int(d.params["amount"]) * quantity,
        "funded_by": d.funded_by,
        "reason": d.name[:120],
    }


def grant_benefit(
    session: Session,
    *,
    actor: Principal,
    member_id: int,
    code: str,
    quantity: int = 1,
    valid_days: int | None = None,
    source_type: str,
    source_id: str,
    key: str,
) -> GrantResult:
    """Grant ``quantity`` of the catalogue benefit ``code`` to a member, once per ``key``."""
    brand_id = actor.scope.require_brand()
    repo = BenefitRepository(session)
    advisory_lock(session, f"benefit-grant:{brand_id}:{key}")
    done = repo.issued_event(brand_id, key)
    if done is not None:
        d = repo.definition(done.definition_id)
        assert d is not None  # definitions are never deleted
        if (done.member_id, d.code, done.quantity) != (member_id, code, quantity):
            raise IdempotencyMismatch(
                "This idempotency key was already used for another grant.",
                errors=[field_error("idempotency_key", "already used with another request", "reused")],
            )
        held = repo.entitlement(done.member_benefit_id) if done.member_benefit_id is not None else None
        return GrantResult(d, member_id, held, done.detail.get("delegated"), replayed=True)
    d = repo.definition_by_code(brand_id, code)
    if d is None:
        raise NotFound(f"Benefit '{code}' was not found.")
    if d.status != "active":
        raise BenefitNotGrantable(f"Benefit '{code}' is {d.status}.", benefit_status=d.status)
    member = repo.member(member_id)
    if member is None:
        raise NotFound(f"Member {member_id} was not found.")
    if member.status in ("closed", "frozen"):
        raise MemberNotActive(
            f"A {member.status} member cannot receive benefits.", member_status=member.status
        )
    now = utcnow()
    mb: MemberBenefit | None = None
    delegated: dict[str, Any] | None = None
    days = valid_days or d.valid_days
    if d.kind in DELEGATED_KINDS:
        delegated = _plain(
            registry.grant(
                session,
                actor=actor,
                member_id=member_id,
                benefit=_delegated_spec(d, quantity),
                source_type=source_type,
                source_id=source_id,
                key=f"catalogue:{key}",
            )
        )
    else:
        per_unit = parse_limits(d.limits).uses_per_entitlement
        uses = None if per_unit is None else per_unit * quantity
        mb = MemberBenefit(
            brand_id=brand_id,
            member_id=member_id,
            definition_id=d.id,
            quantity=uses,
            remaining=uses,
            reserved=0,
            used=0,
            valid_from=now,
            valid_to=now + timedelta(days=days) if days else None,
            source_type=source_type[:24],
            source_id=source_id[:64],
            grant_key=key,
            status="active",
        )
        session.add(mb)
        session.flush()
    session.add(
        BenefitEvent(
            brand_id=brand_id,
            definition_id=d.id,
            member_benefit_id=mb.id if mb is not None else None,
            member_id=member_id,
            kind="issued",
            key=key,
            quantity=quantity,
            detail={
                "source_type": source_type,
                "source_id": source_id,
                "valid_days": days,
                "delegated": delegated,
            },
            actor=actor.label[:200],
            occurred_at=now,
        )
    )
    emit(
        session,
        type="benefit.issued",
        brand_id=brand_id,
        aggregate_type="member_benefit" if mb is not None else "benefit_definition",
        aggregate_id=mb.id if mb is not None else d.id,
        payload={
            "member_id": member_id,
            "benefit": d.code,
            "kind": d.kind,
            "quantity": quantity,
            "member_benefit_id": mb.id if mb is not None else None,
            "source_type": source_type,
            "source_id": source_id,
            "valid_to": mb.valid_to.isoformat() if mb is not None and mb.valid_to is not None else None,
        },
    )
    return GrantResult(d, member_id, mb, delegated)


def claim(session: Session, *, actor: Principal, member_id: int, code: str, key: str) -> GrantResult:
    """A member takes a claimable benefit (up to the definition's ``claim_limit``)."""
    brand_id = actor.scope.require_brand()
    repo = BenefitRepository(session)
    if repo.member(member_id, for_update=True) is None:
        raise NotFound(f"Member {member_id} was not found.")
    full_key = f"claim:{member_id}:{key}"
    if repo.issued_event(brand_id, full_key) is None:
        d = repo.definition_by_code(brand_id, code)
        if d is None or not d.claimable:
            raise NotFound(f"No claimable benefit '{code}'.")
        if repo.claims(member_id, d.id) >= d.claim_limit:
            raise ClaimLimitReached(f"Benefit '{code}' can be claimed {d.claim_limit} time(s).")
    return grant_benefit(
        session,
        actor=actor,
        member_id=member_id,
        code=code,
        source_type="claim",
        source_id=code,
        key=full_key,
    )


def _close_open_appointments(
    session: Session, actor: Principal, mb: MemberBenefit, reason: str, now: datetime
) -> None:
    repo = BenefitRepository(session)
    for appointment in repo.open_appointments(mb.id):
        if repo.close_appointment(appointment.id, "cancelled", now):
            add_event(
                session, actor, mb, "cancelled", detail={"appointment_id": appointment.id, "reason": reason}
            )
    mb.reserved = 0


def void_entitlement(
    session: Session, *, actor: Principal, member_benefit_id: int, reason: str, audit_it: bool = True
) -> MemberBenefit:
    """End an active entitlement now; voiding a voided one is a no-op."""
    mb = BenefitRepository(session).entitlement(member_benefit_id, for_update=True)
    if mb is None:
        raise NotFound(f"Entitlement {member_benefit_id} was not found.")
    if mb.status == "voided":
        return mb
    if mb.status != "active":
        raise EntitlementNotVoidable(f"The entitlement is {mb.status}.", entitlement_status=mb.status)
    now = utcnow()
    _close_open_appointments(session, actor, mb, "voided", now)
    mb.status = "voided"
    mb.updated_at = now
    add_event(session, actor, mb, "voided", quantity=mb.remaining, detail={"reason": reason}, at=now)
    if audit_it:
        audit.record(
            session,
            actor=actor,
            action="benefit.voided",
            entity_type="member_benefit",
            entity_id=mb.id,
            brand_id=mb.brand_id,
            before={"status": "active"},
            after={"status": "voided", "remaining": mb.remaining},
            note=reason,
        )
    emit(
        session,
        type="benefit.voided",
        brand_id=mb.brand_id,
        aggregate_type="member_benefit",
        aggregate_id=mb.id,
        payload={
            "member_benefit_id": mb.id,
            "member_id": mb.member_id,
            "remaining": mb.remaining,
            "reason": reason,
        },
    )
    return mb


def expire_one(session: Session, *, actor: Principal, member_benefit_id: int, now: datetime) -> bool:
    """Mark one entitlement whose validity has passed as expired; ``False`` if nothing to do."""
    mb = BenefitRepository(session).entitlement(member_benefit_id, for_update=True)
    if mb is None or mb.status != "active" or mb.valid_to is None or mb.valid_to > now:
        return False
    _close_open_appointments(session, actor, mb, "expired", now)
    mb.status = "expired"
    mb.updated_at = now
    add_event(session, actor, mb, "expired", quantity=mb.remaining, at=now)
    emit(
        session,
        type="benefit.expired",
        brand_id=mb.brand_id,
        aggregate_type="member_benefit",
        aggregate_id=mb.id,
        payload={"member_benefit_id": mb.id, "member_id": mb.member_id, "remaining": mb.remaining},
    )
    return True


# -- reads -----------------------------------------------------------------------------------------


def get_entitlement(
    session: Session, member_benefit_id: int, *, member_id: int | None = None
) -> MemberBenefit:
    """One entitlement (of ``member_id`` when given: a member's own only)."""
    mb = BenefitRepository(session).entitlement(member_benefit_id)
    if mb is None or (member_id is not None and mb.member_id != member_id):
        raise NotFound(f"Entitlement {member_benefit_id} was not found.")
    return mb


def member_entitlements(
    session: Session, *, member_id: int, status: str | None, after_id: int | None, limit: int
) -> list[MemberBenefit]:
    """A member's entitlements, newest first (404 if the member is not in scope)."""
    repo = BenefitRepository(session)
    if repo.member(member_id) is None:
        raise NotFound(f"Member {member_id} was not found.")
    return repo.entitlements(member_id=member_id, status=status, now=utcnow(), after_id=after_id, limit=limit)


def shown_status(mb: MemberBenefit, now: datetime) -> str:
    if mb.status == "active" and mb.valid_to is not None and mb.valid_to <= now:
        return "expired"
    return mb.status


def entitlement_outs(session: Session, rows: Sequence[MemberBenefit]) -> list[MemberBenefitOut]:
    definitions = BenefitRepository(session).definitions_by_id({r.definition_id for r in rows})
    now = utcnow()
    out = []
    for mb in rows:
        d = definitions[mb.definition_id]
        out.append(
            MemberBenefitOut(
                id=mb.id,
                member_id=mb.member_id,
                definition_id=d.id,
                benefit=d.code,
                name=d.name,
                kind=d.kind,
                verification=d.verification,
                quantity=mb.quantity,
                remaining=mb.remaining,
                reserved=mb.reserved,
                available=None if mb.remaining is None else mb.remaining - mb.reserved,
                used=mb.used,
                valid_from=mb.valid_from,
                valid_to=mb.valid_to,
                source_type=mb.source_type,
                source_id=mb.source_id,
                status=shown_status(mb, now),
                limits=d.limits,
                created_at=mb.created_at,
            )
        )
    return out
