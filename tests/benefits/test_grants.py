"""Granting catalogue benefits: one effect per key, delegation of coupons and points to their own
ledgers, the registry's ``benefit`` kind, void and expiry."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from huiyuan.benefits import entitlements, registry, verification
from huiyuan.benefits.jobs import expire_entitlements
from huiyuan.benefits.models import MemberBenefit
from huiyuan.benefits.verification import BenefitUnavailable
from huiyuan.coupons import templates
from huiyuan.coupons.models import Coupon
from huiyuan.coupons.schemas import TemplateIn
from huiyuan.kit.clock import FrozenClock
from huiyuan.kit.errors import IdempotencyMismatch, NotFound, ValidationFailed
from huiyuan.points.models import PointLot
from tests.benefits.helpers import BenefitBrand
from tests.coupons.helpers import rules
from tests.paid.jobs_helpers import run_job


def test_an_entitlement_is_granted_once_per_key(bb: BenefitBrand) -> None:
    d = bb.define(valid_days=30)
    m = bb.members[0]
    first = bb.grant(d.code, m, "k1", quantity=2)
    again = bb.grant(d.code, m, "k1", quantity=2)
    assert first.entitlement is not None and again.entitlement is not None
    assert again.replayed and again.entitlement.id == first.entitlement.id
    mb = first.entitlement
    assert (mb.quantity, mb.remaining, mb.status) == (2, 2, "active")
    assert mb.valid_to is not None and (mb.valid_to - mb.valid_from).days == 30
    assert bb.count(MemberBenefit) == 1 and bb.event_kinds(mb.id) == ["issued"]
    with pytest.raises(IdempotencyMismatch):
        bb.grant(d.code, m, "k1", quantity=3)
    with pytest.raises(NotFound):
        bb.grant("NOPE", m, "k2")
    paused = bb.define(code="PAUSED", status="draft")
    with pytest.raises(entitlements.BenefitNotGrantable):
        bb.grant(paused.code, m, "k3")
    # An unlimited benefit: no count of uses, period limits still apply.
    lounge = bb.define(
        code="LOUNGE", limits={"uses_per_entitlement": None, "per_period": [{"period": "day", "count": 1}]}
    )
    assert bb.grant(lounge.code, m, "k4").entitlement.remaining is None  # type: ignore[union-attr]


def test_coupon_and_points_benefits_grant_through_their_own_ledgers(bb: BenefitBrand) -> None:
    template = bb.run(
        templates.create_template,
        data=TemplateIn.model_validate(
            {
                "code": "OFF10",
                "name": "10 元券",
                "status": "active",
                "rules": rules({"kind": "amount_off", "amount": "10.00"}),
            }
        ),
    )
    coupon = bb.define({"code": "C10", "name": "每月 10 元券", "kind": "coupon", "template": template.code})
    points = bb.define(
        {"code": "P100", "name": "100 积分", "kind": "points", "point_type": "pts", "amount": 100}
    )
    m = bb.members[0]
    for _ in range(2):
        got = bb.grant(coupon.code, m, "coupon-1", quantity=2)
        assert got.entitlement is None and got.delegated is not None and len(got.delegated["coupons"]) == 2
        bb.grant(points.code, m, "points-1", quantity=3)
    assert bb.count(MemberBenefit) == 0
    assert bb.count(Coupon, Coupon.member_id == m) == 2
    with bb.db.unit_of_work(bb.actor.scope, write=False) as s:
        assert s.scalar(select(func.sum(PointLot.amount)).where(PointLot.member_id == m)) == 300


def test_the_registry_benefit_kind(bb: BenefitBrand) -> None:
    d = bb.define()
    with pytest.raises(ValidationFailed):
        registry.validate_benefit({"kind": "benefit", "benefit": d.code, "quantity": 0})
    with pytest.raises(ValidationFailed):
        registry.validate_benefit({"kind": "benefit", "benefit": d.code, "colour": "red"})
    spec = {"kind": "benefit", "benefit": d.code, "quantity": 3, "valid_days": 7}

    def grant(s, *, actor):  # type: ignore[no-untyped-def]
        return registry.grant(
            s,
            actor=actor,
            member_id=bb.members[1],
            benefit=spec,
            source_type="campaign",
            source_id="spring",
            key="c1",
        )

    first, second = bb.run(grant), bb.run(grant)
    assert first == second and first["kind"] == "benefit" and first["member_benefit_id"]
    mb = bb.entitlement(first["member_benefit_id"])
    assert (mb.remaining, mb.source_type, mb.source_id) == (3, "campaign", "spring")


def test_void_and_expiry(bb: BenefitBrand, clock: FrozenClock) -> None:
    d = bb.define(valid_days=10)
    m = bb.members[0]
    voided = bb.grant(d.code, m, "v1").entitlement
    kept = bb.grant(d.code, m, "v2").entitlement
    assert voided is not None and kept is not None
    bb.run(entitlements.void_entitlement, member_benefit_id=voided.id, reason="granted twice")
    again = bb.run(entitlements.void_entitlement, member_benefit_id=voided.id, reason="again")
    assert again.status == "voided" and bb.event_kinds(voided.id) == ["issued", "voided"]
    with pytest.raises(BenefitUnavailable):
        bb.run(verification.issue_scan_code, member_id=m, member_benefit_id=voided.id)
    clock.advance(days=11)
    result, run = run_job(bb.db, expire_entitlements, "benefits.expire")
    assert result == {"checked": 1, "expired": 1} and run.state["expired"] == 1
    assert bb.entitlement(kept.id).status == "expired"
    assert bb.event_kinds(kept.id) == ["issued", "expired"]
    result, _ = run_job(bb.db, expire_entitlements, "benefits.expire")
    assert result == {"checked": 0, "expired": 0}
    with pytest.raises(entitlements.EntitlementNotVoidable):
        bb.run(entitlements.void_entitlement, member_benefit_id=kept.id, reason="late")
