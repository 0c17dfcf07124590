"""HTTP routes of the points mall: thin — authenticate, call one verb of ``points.mall``, shape the
response.

Operators and other systems: gifts under ``/api/v1/points/mall/gifts``, a member's redemption under
``/api/v1/members/{member_id}/points/mall/redeem``, redemptions under
``/api/v1/points/mall/redemptions``. Members with a member token: ``/api/v1/me/points/mall``.
A redemption takes an idempotency key (body ``idempotency_key`` or the ``Idempotency-Key`` header):
the first call answers 201, a retry with the same request answers 200 with the redemption as it
stands and ``Idempotent-Replayed: true``; pay and cancel repeated answer the same way.
"""

from __future__ import annotations

from enum import Enum
from typing import Annotated, Any

from fastapi import APIRouter, File, Response, UploadFile

from huiyuan.auth.deps import MemberPrincipalDep, require
from huiyuan.kit.idempotency import IdempotencyKey
from huiyuan.kit.pagination import Page, check_limit, cursor_page, decode_cursor
from huiyuan.kit.scope import Principal
from huiyuan.kit.web import SessionDep
from huiyuan.points import mall, mall_views
from huiyuan.points.mall_schemas import (
    CancelIn,
    CodeImportOut,
    GiftIn,
    GiftKind,
    GiftOut,
    GiftStatus,
    GiftUpdate,
    MemberGiftOut,
    PayIn,
    RedeemIn,
    RedemptionOut,
    RestockIn,
    StockOut,
)
from huiyuan.selfservice.api import CurrentMemberDep
from huiyuan.settings import get_settings

router = APIRouter(prefix="/api/v1")

Reader = Annotated[Principal, require("points:read")]
Writer = Annotated[Principal, require("points:write")]
TAGS: list[str | Enum] = ["points mall"]

GIFT_RESPONSES: dict[int | str, dict[str, Any]] = {404: {"description": "No such gift in this brand"}}
REDEEM_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"description": "A retry under the same idempotency key: the redemption as it stands"},
    404: {"description": "No such member or gift in this brand"},
    409: {
        "description": "Not enough points (`insufficient-points`), out of stock (`out-of-stock`), "
        "not on sale (`gift-not-on-sale`), over a limit (`redemption-limit-reached`) "
        "or the member is closed or frozen (`member-not-active`)"
    },
    422: {
        "description": "Invalid fields, a missing idempotency key, or the key reused with another request "
        "(`idempotency-key-reused`)"
    },
}
SETTLE_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"description": "Done, or already done with the same request: the redemption as it stands"},
    404: {"description": "No such redemption in this brand"},
    409: {"description": "The redemption is in another state (`redemption-closed`)"},
}


def _answer(response: Response, result: mall.RedemptionResult, *, created: int) -> None:
    response.status_code = 200 if result.replayed else created
    if result.replayed:
        response.headers["Idempotent-Replayed"] = "true"


# -- gifts ------------------------------------------------------------------------------------------


@router.get("/points/mall/gifts", response_model=Page[GiftOut], tags=TAGS, summary="List the mall's gifts")
def list_gifts(
    session: SessionDep,
    actor: Reader,
    status: GiftStatus | None = None,
    kind: GiftKind | None = None,
    cursor: str | None = None,
    limit: int = 50,
) -> Page[Any]:
    limit = check_limit(limit, get_settings().max_page_size)
    rows = mall.list_gifts(session, status=status, kind=kind, after_id=decode_cursor(cursor), limit=limit + 1)
    return cursor_page(rows, limit, lambda shown: mall_views.gift_outs(session, shown))


@router.post(
    "/points/mall/gifts",
    response_model=GiftOut,
    status_code=201,
    tags=TAGS,
    summary="Add a gift (points only, or points + cash)",
    responses={409: {"description": "The code is taken"}, 422: {"description": "Invalid fields"}},
)
def create_gift(data: GiftIn, session: SessionDep, actor: Writer) -> GiftOut:
    return mall_views.gift_out(session, mall.create_gift(session, actor=actor, data=data))


@router.get(
    "/points/mall/gifts/{gift_id}",
    response_model=GiftOut,
    tags=TAGS,
    summary="Get a gift",
    responses=GIFT_RESPONSES,
)
def get_gift(gift_id: int, session: SessionDep, actor: Reader) -> GiftOut:
    return mall_views.gift_out(session, mall.get_gift(session, gift_id))


@router.patch(
    "/points/mall/gifts/{gift_id}",
    response_model=GiftOut,
    tags=TAGS,
    summary="Update a gift; open redemptions keep their price",
    responses=GIFT_RESPONSES,
)
def update_gift(gift_id: int, data: GiftUpdate, session: SessionDep, actor: Writer) -> GiftOut:
    return mall_views.gift_out(session, mall.update_gift(session, actor=actor, gift_id=gift_id, data=data))


@router.post(
    "/points/mall/gifts/{gift_id}/restock",
    response_model=StockOut,
    tags=TAGS,
    summary="Add stock, or write it off with a negative quantity",
    responses={**GIFT_RESPONSES, 409: {"description": "Not that much in stock (`out-of-stock`)"}},
)
def restock_gift(gift_id: int, data: RestockIn, session: SessionDep, actor: Writer) -> StockOut:
    gift = mall.restock(session, actor=actor, gift_id=gift_id, quantity=data.quantity, reason=data.reason)
    return StockOut(
        gift_id=gift.id,
        kind="restock" if data.quantity > 0 else "adjust",
        quantity=data.quantity,
        stock_available=gift.stock_available,
    )


@router.post(
    "/points/mall/gifts/{gift_id}/codes",
    response_model=CodeImportOut,
    tags=TAGS,
    summary="Import third-party codes from a CSV (first column); re-importing adds nothing",
    responses={**GIFT_RESPONSES, 422: {"description": "Not a third-party-code gift, or no readable CSV"}},
    openapi_extra={
        "requestBody": {
            "content": {
                "multipart/form-data": {
                    "example": {"file": "code\nMOVIE-7F3K-Q9XD\nMOVIE-8H2M-R4TB\nMOVIE-9J5N-W6YC\n"}
                }
            }
        }
    },
)
def import_codes(
    gift_id: int,
    session: SessionDep,
    actor: Writer,
    file: Annotated[UploadFile | None, File(description="CSV, UTF-8, one code per line")] = None,
) -> CodeImportOut:
    content = file.file.read() if file is not None else None
    return mall.import_codes(
        session, actor=actor, gift_id=gift_id, content=content, filename=file.filename if file else None
    )


# -- redemptions ------------------------------------------------------------------------------------


@router.post(
    "/members/{member_id}/points/mall/redeem",
    response_model=RedemptionOut,
    status_code=201,
    tags=TAGS,
    summary="Redeem a gift for a member",
    responses=REDEEM_RESPONSES,
)
def redeem(
    member_id: int,
    data: RedeemIn,
    response: Response,
    session: SessionDep,
    actor: Writer,
    idempotency_key: IdempotencyKey = None,
) -> RedemptionOut:
    result = mall.redeem(
        session,
        actor=actor,
        member_id=member_id,
        gift_id=data.gift_id,
        quantity=data.quantity,
        key=mall.client_key(data.idempotency_key, idempotency_key),
    )
    _answer(response, result, created=201)
    return mall_views.redemption_out(session, result.redemption)


@router.get(
    "/points/mall/redemptions/{redemption_id}",
    response_model=RedemptionOut,
    tags=TAGS,
    summary="Get a redemption",
    responses={404: {"description": "No such redemption in this brand"}},
)
def get_redemption(redemption_id: int, session: SessionDep, actor: Reader) -> RedemptionOut:
    return mall_views.redemption_out(session, mall.get_redemption(session, redemption_id))


@router.post(
    "/points/mall/redemptions/{redemption_id}/pay",
    response_model=RedemptionOut,
    tags=TAGS,
    summary="Record the cash payment of a points + cash redemption",
    responses={**SETTLE_RESPONSES, 422: {"description": "The amount is not the amount due"}},
)
def pay_redemption(
    redemption_id: int, data: PayIn, response: Response, session: SessionDep, actor: Writer
) -> RedemptionOut:
    result = mall.pay_redemption(
        session,
        actor=actor,
        redemption_id=redemption_id,
        payment_reference=data.payment_reference,
        amount=data.amount,
    )
    _answer(response, result, created=200)
    return mall_views.redemption_out(session, result.redemption)


@router.post(
    "/points/mall/redemptions/{redemption_id}/cancel",
    response_model=RedemptionOut,
    tags=TAGS,
    summary="Cancel or take back a redemption: points and stock return (revealed codes do not)",
    responses=SETTLE_RESPONSES,
)
def cancel_redemption(
    redemption_id: int, data: CancelIn, response: Response, session: SessionDep, actor: Writer
) -> RedemptionOut:
    result = mall.cancel_redemption(session, actor=actor, redemption_id=redemption_id, reason=data.reason)
    _answer(response, result, created=200)
    return mall_views.redemption_out(session, result.redemption)


# -- members ----------------------------------------------------------------------------------------


@router.get(
    "/me/points/mall/gifts", response_model=Page[MemberGiftOut], tags=["me"], summary="Gifts on sale now"
)
def my_mall_gifts(
    session: SessionDep, member: CurrentMemberDep, cursor: str | None = None, limit: int = 50
) -> Page[Any]:
    limit = check_limit(limit, get_settings().max_page_size)
    rows = mall.list_gifts_on_sale(session, after_id=decode_cursor(cursor), limit=limit + 1)
    return cursor_page(rows, limit, lambda shown: mall_views.member_gift_outs(session, shown))


@router.post(
    "/me/points/mall/redeem",
    response_model=RedemptionOut,
    status_code=201,
    tags=["me"],
    summary="Redeem a gift with my points",
    responses=REDEEM_RESPONSES,
)
def my_redeem(
    data: RedeemIn,
    response: Response,
    session: SessionDep,
    member: CurrentMemberDep,
    principal: MemberPrincipalDep,
    idempotency_key: IdempotencyKey = None,
) -> RedemptionOut:
    key = mall.client_key(data.idempotency_key, idempotency_key)
    result = mall.redeem(
        session,
        actor=principal,
        member_id=member.id,
        gift_id=data.gift_id,
        quantity=data.quantity,
        # A member's keys live apart from staff keys and other members' keys.
        key=f"me-{member.id}:{key}",
        channel="member",
    )
    _answer(response, result, created=201)
    return mall_views.redemption_out(session, result.redemption)


@router.get(
    "/me/points/mall/redemptions",
    response_model=Page[RedemptionOut],
    tags=["me"],
    summary="My redemptions, newest first (with their codes)",
)
def my_redemptions(
    session: SessionDep, member: CurrentMemberDep, cursor: str | None = None, limit: int = 50
) -> Page[Any]:
    limit = check_limit(limit, get_settings().max_page_size)
    rows = mall.list_member_redemptions(session, member.id, before_id=decode_cursor(cursor), limit=limit + 1)
    return cursor_page(rows, limit, lambda shown: mall_views.redemption_outs(session, shown))
