"""Member-facing coupons: ``/api/v1/me/coupons`` with a member token (see ``huiyuan.selfservice.api``).

My coupons, the claim centre (what I may claim now and why not), claim or grab, exchange for my
points, and evaluating a cart against my coupons. The member is always the token's own; a member's
idempotency keys live apart from staff keys and other members' keys.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Response

from huiyuan.auth.deps import MemberPrincipalDep
from huiyuan.coupons import checkout, issuing
from huiyuan.coupons.api import ISSUE_RESPONSES, _answer
from huiyuan.coupons.schemas import CartIn, ClaimableOut, ClaimIn, CouponOut, CouponStatus
from huiyuan.coupons.templates import template_outs
from huiyuan.kit.idempotency import IdempotencyKey
from huiyuan.kit.pagination import Page, check_limit, cursor_page, decode_cursor
from huiyuan.kit.web import SessionDep
from huiyuan.points.service import operation_key
from huiyuan.selfservice.api import CurrentMemberDep
from huiyuan.settings import get_settings

router = APIRouter(prefix="/api/v1/me/coupons", tags=["me"])


@router.get("", response_model=Page[CouponOut], summary="My coupons, newest first")
def my_coupons(
    session: SessionDep,
    member: CurrentMemberDep,
    status: CouponStatus | None = None,
    cursor: str | None = None,
    limit: int = 50,
) -> Page[Any]:
    limit = check_limit(limit, get_settings().max_page_size)
    rows = issuing.list_coupons(
        session, member_id=member.id, status=status, after_id=decode_cursor(cursor), limit=limit + 1
    )
    return cursor_page(rows, limit, lambda shown: issuing.coupon_outs(session, shown))


@router.get(
    "/claimable", response_model=list[ClaimableOut], summary="The claim centre: coupons I may claim now"
)
def claimable(session: SessionDep, member: CurrentMemberDep) -> list[ClaimableOut]:
    found = issuing.claimable_for(session, brand_id=member.brand_id, member_id=member.id)
    outs = template_outs(session, [c.template for c in found])
    return [
        ClaimableOut(
            template=out,
            claimed=c.claimed,
            claimed_today=c.claimed_today,
            can_claim=c.reason is None,
            reason=c.reason,
        )
        for c, out in zip(found, outs, strict=True)
    ]


@router.post(
    "/templates/{template_id}/claim",
    response_model=CouponOut,
    status_code=201,
    summary="Claim (or grab) a coupon",
    responses=ISSUE_RESPONSES,
)
def claim(
    template_id: int,
    data: ClaimIn,
    response: Response,
    session: SessionDep,
    member: CurrentMemberDep,
    principal: MemberPrincipalDep,
    idempotency_key: IdempotencyKey = None,
) -> CouponOut:
    key = operation_key(data.idempotency_key, idempotency_key, max_length=120)
    result = issuing.claim(
        session, actor=principal, member_id=member.id, template_id=template_id, key=f"me-{member.id}:{key}"
    )
    _answer(response, result.replayed, 201)
    return issuing.coupon_outs(session, [result.coupon])[0]


@router.post(
    "/templates/{template_id}/exchange",
    response_model=CouponOut,
    status_code=201,
    summary="Exchange my points for a coupon",
    responses=ISSUE_RESPONSES,
)
def exchange(
    template_id: int,
    data: ClaimIn,
    response: Response,
    session: SessionDep,
    member: CurrentMemberDep,
    principal: MemberPrincipalDep,
    idempotency_key: IdempotencyKey = None,
) -> CouponOut:
    key = operation_key(data.idempotency_key, idempotency_key, max_length=120)
    result = issuing.exchange(
        session, actor=principal, member_id=member.id, template_id=template_id, key=f"me-{member.id}:{key}"
    )
    _answer(response, result.replayed, 201)
    return issuing.coupon_outs(session, [result.coupon])[0]


@router.post("/evaluate", summary="Which of my coupons apply to this cart, and the best combination")
def evaluate(data: CartIn, session: SessionDep, member: CurrentMemberDep) -> dict[str, Any]:
    return checkout.evaluation_json(
        checkout.evaluate(session, brand_id=member.brand_id, member_id=member.id, data=data)
    )
