"""HTTP routes of paid membership: thin — authenticate, call one service verb, shape the response.

Plan configuration lives under ``/api/v1/paid``; a member's subscription under
``/api/v1/members/{member_id}/paid``. Replays of a purchase, renewal or upgrade (same
``payment_reference``, same body) answer 200 with the first result instead of 201."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Response

from huiyuan.auth.deps import require
from huiyuan.kit.scope import Principal
from huiyuan.kit.web import SessionDep
from huiyuan.paid import plans, service, views
from huiyuan.paid.schemas import (
    BuyIn,
    CancelIn,
    CategoryIn,
    CategoryOut,
    CategoryUpdate,
    LevelIn,
    LevelOut,
    LevelUpdate,
    MemberPaidOut,
    RenewIn,
    SubscriptionChangeOut,
    UpgradeIn,
    UpgradeQuoteOut,
)

router = APIRouter(prefix="/api/v1", tags=["paid membership"])

Reader = Annotated[Principal, require("paid:read")]
Seller = Annotated[Principal, require("paid:write")]
Configurer = Annotated[Principal, require("paid:configure")]

REPLAY: dict[int | str, dict[str, Any]] = {
    200: {"description": "A replay of the same request (same reference, same body): the first result"}
}
CONFLICTS: dict[int | str, dict[str, Any]] = {
    409: {
        "description": "Another plan is active (`paid-plan-active`), none is (`no-active-paid-plan`), "
        "the level is not on sale (`paid-level-retired`), or the member is frozen or closed"
    },
    422: {
        "description": "Invalid fields, or the reference was used with another body "
        "(`idempotency-key-reused`)"
    },
}


# -- configuration ---------------------------------------------------------------------------------


@router.get("/paid/categories", response_model=list[CategoryOut], summary="List paid plan categories")
def list_categories(session: SessionDep, actor: Reader) -> list[CategoryOut]:
    return [views.category_out(c) for c in plans.list_categories(session)]


@router.post("/paid/categories", response_model=CategoryOut, status_code=201, summary="Add a plan category")
def create_category(data: CategoryIn, session: SessionDep, actor: Configurer) -> CategoryOut:
    return views.category_out(plans.create_category(session, actor=actor, data=data))


@router.get("/paid/categories/{plan_category_id}", response_model=CategoryOut, summary="Get a plan category")
def get_category(plan_category_id: int, session: SessionDep, actor: Reader) -> CategoryOut:
    return views.category_out(plans.get_category(session, plan_category_id))


@router.patch(
    "/paid/categories/{plan_category_id}", response_model=CategoryOut, summary="Update a plan category"
)
def update_category(
    plan_category_id: int, data: CategoryUpdate, session: SessionDep, actor: Configurer
) -> CategoryOut:
    return views.category_out(
        plans.update_category(session, actor=actor, category_id=plan_category_id, data=data)
    )


@router.get("/paid/levels", response_model=list[LevelOut], summary="List plan levels")
def list_levels(
    session: SessionDep, actor: Reader, category_id: Annotated[int | None, Query()] = None
) -> list[LevelOut]:
    return [views.level_out(lv) for lv in plans.list_levels(session, category_id=category_id)]


@router.post(
    "/paid/levels",
    response_model=LevelOut,
    status_code=201,
    summary="Add a plan level",
    description="Code and rank are unique within the category; every benefit is checked by its grantor.",
)
def create_level(data: LevelIn, session: SessionDep, actor: Configurer) -> LevelOut:
    return views.level_out(plans.create_level(session, actor=actor, data=data))


@router.get("/paid/levels/{plan_level_id}", response_model=LevelOut, summary="Get a plan level")
def get_level(plan_level_id: int, session: SessionDep, actor: Reader) -> LevelOut:
    return views.level_out(plans.get_level(session, plan_level_id))


@router.patch(
    "/paid/levels/{plan_level_id}",
    response_model=LevelOut,
    summary="Update or retire a plan level",
    description=(
        "Subscriptions already sold keep what they paid; a retired level is no longer sold or renewed."
    ),
)
def update_level(plan_level_id: int, data: LevelUpdate, session: SessionDep, actor: Configurer) -> LevelOut:
    return views.level_out(plans.update_level(session, actor=actor, level_id=plan_level_id, data=data))


# -- a member's subscription -----------------------------------------------------------------------


@router.get(
    "/members/{member_id}/paid",
    response_model=MemberPaidOut,
    summary="A member's paid plan and its history",
)
def member_paid(member_id: int, session: SessionDep, actor: Reader) -> MemberPaidOut:
    subs, events = service.member_history(session, member_id)
    return views.member_paid_out(session, subs, events)


@router.post(
    "/members/{member_id}/paid/buy",
    response_model=SubscriptionChangeOut,
    status_code=201,
    summary="Buy a paid plan",
    description=(
        "Starts now and ends after the level's validity (calendar months or days); the level's one-time "
        "benefits are granted at once. Buying the level the member already holds renews it (from its "
        "current end); buying another level while one is active is refused with 409 `paid-plan-active` "
        "(upgrade instead). `payment_reference` is unique within the brand: the same request again "
        "answers 200 with the first result."
    ),
    responses={**REPLAY, **CONFLICTS},
)
def buy(
    member_id: int, data: BuyIn, response: Response, session: SessionDep, actor: Seller
) -> SubscriptionChangeOut:
    change = service.buy(session, actor=actor, member_id=member_id, data=data)
    if not change.created:
        response.status_code = 200
    return views.change_out(session, change)


@router.post(
    "/members/{member_id}/paid/renew",
    response_model=SubscriptionChangeOut,
    status_code=201,
    summary="Renew the member's paid plan",
    description=(
        "An active plan is extended from its current end by the level's validity at the level's current "
        "price. After a lapse, a new subscription of the last level starts now (with its one-time benefits)."
    ),
    responses={**REPLAY, **CONFLICTS},
)
def renew(
    member_id: int, data: RenewIn, response: Response, session: SessionDep, actor: Seller
) -> SubscriptionChangeOut:
    change = service.renew(session, actor=actor, member_id=member_id, data=data)
    if not change.created:
        response.status_code = 200
    return views.change_out(session, change)


UPGRADE_FORMULA = (
    "credit = floor_to_fen(value × remaining / term), where value = amount paid into the current "
    "subscription + credit it carried, term = ends_at − starts_at and remaining = ends_at − now (to the "
    "microsecond); due = max(0, new_price − credit). The new subscription starts now for the new level's "
    "full validity; the old one ends now (status `upgraded`)."
)


@router.get(
    "/members/{member_id}/paid/upgrade-quote/{plan_level_id}",
    response_model=UpgradeQuoteOut,
    summary="What upgrading to a level would cost now",
    description=UPGRADE_FORMULA + " Nothing changes; the figures hold for this moment only.",
    responses=CONFLICTS,
)
def upgrade_quote(member_id: int, plan_level_id: int, session: SessionDep, actor: Reader) -> UpgradeQuoteOut:
    offer = service.quote_upgrade(session, member_id=member_id, level_id=plan_level_id)
    return UpgradeQuoteOut(**vars(offer))


@router.post(
    "/members/{member_id}/paid/upgrade",
    response_model=SubscriptionChangeOut,
    status_code=201,
    summary="Upgrade to a higher level of the same category",
    description=UPGRADE_FORMULA + " The event's amount is what was charged (due).",
    responses={**REPLAY, **CONFLICTS},
)
def upgrade(
    member_id: int, data: UpgradeIn, response: Response, session: SessionDep, actor: Seller
) -> SubscriptionChangeOut:
    change = service.upgrade(session, actor=actor, member_id=member_id, data=data)
    if not change.created:
        response.status_code = 200
    return views.change_out(session, change)


@router.post(
    "/members/{member_id}/paid/cancel",
    response_model=SubscriptionChangeOut,
    summary="Cancel the paid plan now, with a refund",
    description=(
        "Refund = everything paid for the subscription (amount paid + credit carried from an upgrade) "
        "within the level's `cooling_off_days` of its start while no periodic benefit has been granted; "
        "otherwise floor_to_fen(value × unused whole days / term days). Benefits already granted stay. "
        "`refund_reference` makes the request idempotent."
    ),
    responses=CONFLICTS,
)
def cancel(member_id: int, data: CancelIn, session: SessionDep, actor: Seller) -> SubscriptionChangeOut:
    return views.change_out(session, service.cancel(session, actor=actor, member_id=member_id, data=data))
