"""The ``coupon`` benefit kind: tiers, paid plans (and later benefit cards and campaigns) give
coupons through ``benefits.registry``.

``{"kind": "coupon", "template": "SPRING-50", "quantity": 2}`` issues that many coupons of the
brand's template with the code ``template`` (channel ``benefit``), keyed by the caller's benefit
key, so a repeated grant issues once. Stock, budget and limits apply as to any issue: a grant the
template refuses raises, and the caller's transaction decides what happens (the tier or plan change
is retried with its event).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from huiyuan.benefits.registry import register
from huiyuan.coupons import issuing
from huiyuan.coupons.models import CouponTemplate
from huiyuan.kit.errors import NotFound
from huiyuan.kit.scope import Principal


def _validate(params: dict[str, Any]) -> None:
    unknown = set(params) - {"template", "quantity"}
    if unknown:
        raise ValueError(f"unknown fields: {', '.join(sorted(unknown))}")
    if not isinstance(params.get("template"), str) or not params["template"]:
        raise ValueError("template: the code of a coupon template is required")
    quantity = params.get("quantity", 1)
    if not isinstance(quantity, int) or isinstance(quantity, bool) or not 1 <= quantity <= 50:
        raise ValueError("quantity: a whole number from 1 to 50")


def _grant(
    session: Session,
    *,
    actor: Principal,
    member_id: int,
    params: dict[str, Any],
    source_type: str,
    source_id: str,
    key: str,
) -> dict[str, Any]:
    template_id = session.scalar(select(CouponTemplate.id).where(CouponTemplate.code == params["template"]))
    if template_id is None:
        raise NotFound(f"Coupon template '{params['template']}' was not found.")
    coupons = [
        issuing.issue(
            session,
            actor=actor,
            template_id=template_id,
            member_id=member_id,
            key=f"benefit:{key}:{n}",
            channel="benefit",
            reference=f"{source_type}:{source_id}"[:120],
        ).coupon.id
        for n in range(params.get("quantity", 1))
    ]
    return {"kind": "coupon", "template": params["template"], "coupons": coupons}


register("coupon", validate=_validate, grant=_grant)
