"""HTTP routes of benefit cards for operators and tills (mounted by ``benefits.api``): thin.

Products under ``/api/v1/benefits/cards/products``; a member's cards under
``/api/v1/members/{member_id}/benefit-cards`` (buy, list, perks); one card under
``/api/v1/benefits/cards/{card_id}`` (activate, refund quote, refund). Buying and refunding are
idempotent on the payment's and the refund's own reference.
"""

from __future__ import annotations

from enum import Enum
from typing import Annotated, Any

from fastapi import APIRouter, Response

from huiyuan.auth.deps import require
from huiyuan.benefits import card_refunds, cards
from huiyuan.benefits.card_repository import CardRepository
from huiyuan.benefits.card_schemas import (
    BuyCardIn,
    CardProductIn,
    CardProductOut,
    CardProductUpdate,
    MemberCardDetailOut,
    MemberCardOut,
    MemberPerksOut,
    ProductStatus,
    RefundCardIn,
    RefundQuoteOut,
)
from huiyuan.kit.pagination import Page, check_limit, cursor_page, decode_cursor
from huiyuan.kit.scope import Principal
from huiyuan.kit.web import SessionDep
from huiyuan.settings import get_settings

router = APIRouter()

Reader = Annotated[Principal, require("benefits:read")]
Writer = Annotated[Principal, require("benefits:write")]
TAGS: list[str | Enum] = ["benefit cards"]

PRODUCT_404: dict[int | str, dict[str, Any]] = {404: {"description": "No such card product in this brand"}}
CARD_404: dict[int | str, dict[str, Any]] = {404: {"description": "No such card in this brand"}}
BUY_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"description": "The same payment reference and request again: the card sold the first time"},
    404: {"description": "No such member or product in this brand"},
    409: {
        "description": "Not on sale (`benefit-card-not-on-sale`), the member's tier may not buy it "
        "(`benefit-card-not-eligible`), over the limit per member (`benefit-card-limit`), the member is "
        "closed or frozen (`member-not-active`), or a benefit of the first issue was refused"
    },
    422: {"description": "Invalid fields, an amount other than the price, or the reference used elsewhere"},
}
REFUND_RESPONSES: dict[int | str, dict[str, Any]] = {
    **CARD_404,
    409: {"description": "Already refunded or expired (`benefit-card-closed`)"},
    422: {"description": "The refund reference was used for another request"},
}


def _replayed(response: Response, created: bool, status: int) -> None:
    response.status_code = status if created else 200
    if not created:
        response.headers["Idempotent-Replayed"] = "true"


# -- products ---------------------------------------------------------------------------------------


@router.get(
    "/benefits/cards/products", response_model=Page[CardProductOut], tags=TAGS, summary="List card products"
)
def list_products(
    session: SessionDep,
    actor: Reader,
    status: ProductStatus | None = None,
    cursor: str | None = None,
    limit: int = 50,
) -> Page[Any]:
    limit = check_limit(limit, get_settings().max_page_size)
    rows = CardRepository(session).products(status=status, after_id=decode_cursor(cursor), limit=limit + 1)
    return cursor_page(rows, limit, lambda shown: [cards.product_out(p) for p in shown])


@router.post(
    "/benefits/cards/products",
    response_model=CardProductOut,
    status_code=201,
    tags=TAGS,
    summary="Create a card product: price, validity, scheduled benefits, perks, purchase rules",
    responses={409: {"description": "The code is taken"}, 422: {"description": "Invalid fields"}},
)
def create_product(data: CardProductIn, session: SessionDep, actor: Writer) -> CardProductOut:
    return cards.product_out(cards.create_product(session, actor=actor, data=data))


@router.get(
    "/benefits/cards/products/{product_id}",
    response_model=CardProductOut,
    tags=TAGS,
    summary="Get a card product",
    responses=PRODUCT_404,
)
def get_product(product_id: int, session: SessionDep, actor: Reader) -> CardProductOut:
    return cards.product_out(cards.get_product(session, product_id))


@router.patch(
    "/benefits/cards/products/{product_id}",
    response_model=CardProductOut,
    tags=TAGS,
    summary="Change a card product (cards already sold keep what they were sold with)",
    responses=PRODUCT_404,
)
def update_product(
    product_id: int, data: CardProductUpdate, session: SessionDep, actor: Writer
) -> CardProductOut:
    return cards.product_out(cards.update_product(session, actor=actor, product_id=product_id, data=data))


# -- members' cards ---------------------------------------------------------------------------------


@router.get(
    "/members/{member_id}/benefit-cards",
    response_model=list[MemberCardOut],
    tags=TAGS,
    summary="A member's benefit cards, newest first",
    responses={404: {"description": "No such member in this brand"}},
)
def member_cards(member_id: int, session: SessionDep, actor: Reader) -> list[MemberCardOut]:
    return [cards.card_out(c) for c in cards.member_cards(session, member_id)]


@router.post(
    "/members/{member_id}/benefit-cards",
    response_model=MemberCardDetailOut,
    status_code=201,
    tags=TAGS,
    summary="Sell a card to a member (payment taken elsewhere; its reference makes this idempotent)",
    responses=BUY_RESPONSES,
)
def buy(
    member_id: int, data: BuyCardIn, response: Response, session: SessionDep, actor: Writer
) -> MemberCardDetailOut:
    change = cards.buy_card(session, actor=actor, member_id=member_id, data=data)
    _replayed(response, change.created, 201)
    return cards.card_detail(session, change.card)


@router.get(
    "/members/{member_id}/benefit-cards/perks",
    response_model=MemberPerksOut,
    tags=TAGS,
    summary="The perks of the member's active cards (discount, points multiplier) for checkout and earning",
    responses={404: {"description": "No such member in this brand"}},
)
def perks(member_id: int, session: SessionDep, actor: Reader) -> MemberPerksOut:
    return cards.card_perks(session, member_id)


@router.get(
    "/benefits/cards/{card_id}",
    response_model=MemberCardDetailOut,
    tags=TAGS,
    summary="A card with every scheduled issue made so far",
    responses=CARD_404,
)
def get_card(card_id: int, session: SessionDep, actor: Reader) -> MemberCardDetailOut:
    return cards.card_detail(session, cards.get_card(session, card_id))


@router.post(
    "/benefits/cards/{card_id}/activate",
    response_model=MemberCardDetailOut,
    tags=TAGS,
    summary="Activate a pending card at its first use (the term starts now)",
    responses={**CARD_404, 409: {"description": "The card was refunded or has expired"}},
)
def activate(card_id: int, session: SessionDep, actor: Writer) -> MemberCardDetailOut:
    return cards.card_detail(session, cards.activate_card(session, actor=actor, card_id=card_id))


@router.get(
    "/benefits/cards/{card_id}/refund-quote",
    response_model=RefundQuoteOut,
    tags=TAGS,
    summary="What refunding the card now would give back (changes nothing)",
    responses=REFUND_RESPONSES,
)
def refund_quote(card_id: int, session: SessionDep, actor: Reader) -> RefundQuoteOut:
    return card_refunds.quote_refund(session, card_id=card_id).out()


@router.post(
    "/benefits/cards/{card_id}/refund",
    response_model=MemberCardDetailOut,
    tags=TAGS,
    summary="Refund a card pro rata on unused value; unused entitlements it issued are voided",
    responses=REFUND_RESPONSES,
)
def refund(
    card_id: int, data: RefundCardIn, response: Response, session: SessionDep, actor: Writer
) -> MemberCardDetailOut:
    change = card_refunds.refund_card(session, actor=actor, card_id=card_id, data=data)
    _replayed(response, change.created, 200)
    return cards.card_detail(session, change.card)
