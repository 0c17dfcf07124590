"""HTTP routes for identifiers, physical cards and the member QR code: thin — authenticate, call
one verb of ``members.identity``, shape the response. PII is masked unless the caller has
``members:pii``."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Response

from huiyuan.auth.deps import require
from huiyuan.kit.scope import Principal
from huiyuan.kit.web import SessionDep
from huiyuan.members import identity
from huiyuan.members import service as members
from huiyuan.members.identity_schemas import (
    CardBind,
    CardList,
    CardLost,
    CardOut,
    CardReplace,
    IdentifierAdd,
    MemberSummary,
    QrTokenOut,
    QrVerify,
)
from huiyuan.members.schemas import IdentifierOut, IdentifierType, MemberOut

router = APIRouter(prefix="/api/v1/members", tags=["member identity"])

Reader = Annotated[Principal, require("members:read")]
Writer = Annotated[Principal, require("members:write")]
QR_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {
        "content": {
            "image/png": {},
            "image/svg+xml": {},
            "application/json": {"schema": QrTokenOut.model_json_schema()},
        },
        "description": "The member code as PNG, SVG or JSON (token + expiry)",
    }
}


# The code expires within minutes: no cache may keep it.
NO_STORE = {"Cache-Control": "no-store"}


@router.get("/lookup", response_model=MemberOut, summary="Find a member by an exact identifier")
def lookup(
    session: SessionDep,
    actor: Reader,
    type: Annotated[IdentifierType, Query(description="Identifier type")],
    value: Annotated[str, Query(min_length=1, max_length=200, description="Exact value (blind index)")],
) -> MemberOut:
    member = identity.lookup_member(session, actor=actor, type_=type, value=value)
    return members.to_out(session, [member], show_pii=actor.has("members:pii"))[0]


@router.post(
    "/{member_id}/identifiers",
    response_model=IdentifierOut,
    status_code=201,
    summary="Add an identifier",
    responses={
        200: {"description": "The member already has this identifier"},
        409: {"description": "Another member holds it, or it is managed by another route"},
    },
)
def add_identifier(
    member_id: int, data: IdentifierAdd, session: SessionDep, actor: Writer, response: Response
) -> IdentifierOut:
    ident, created = identity.add_identifier(
        session, actor=actor, member_id=member_id, type_=data.type, value=data.value, source=data.source
    )
    if not created:
        response.status_code = 200
    return identity.identifier_out(ident, show_pii=actor.has("members:pii"))


@router.delete(
    "/{member_id}/identifiers/{identifier_id}",
    status_code=204,
    summary="Remove an identifier",
    responses={409: {"description": "Phone, e-mail and card numbers are changed through their own routes"}},
)
def remove_identifier(member_id: int, identifier_id: int, session: SessionDep, actor: Writer) -> Response:
    identity.remove_identifier(session, actor=actor, member_id=member_id, identifier_id=identifier_id)
    return Response(status_code=204)


@router.get("/{member_id}/cards", response_model=CardList, summary="Cards of a member (history)")
def list_cards(member_id: int, session: SessionDep, actor: Reader) -> CardList:
    cards = identity.list_cards(session, member_id)
    show = actor.has("members:pii")
    return CardList(items=[identity.card_out(c, show_pii=show) for c in cards])


@router.post(
    "/{member_id}/cards",
    response_model=CardOut,
    status_code=201,
    summary="Bind a physical card",
    responses={200: {"description": "This card is already the member's active card"}},
)
def bind_card(
    member_id: int, data: CardBind, session: SessionDep, actor: Writer, response: Response
) -> CardOut:
    card, created = identity.bind_card(
        session, actor=actor, member_id=member_id, card_number=data.card_number
    )
    if not created:
        response.status_code = 200
    return identity.card_out(card, show_pii=actor.has("members:pii"))


@router.post("/{member_id}/cards/{card_id}/lost", response_model=CardOut, summary="Report a card lost")
def report_lost(member_id: int, card_id: int, data: CardLost, session: SessionDep, actor: Writer) -> CardOut:
    card = identity.report_card_lost(
        session, actor=actor, member_id=member_id, card_id=card_id, reason=data.reason
    )
    return identity.card_out(card, show_pii=actor.has("members:pii"))


@router.post(
    "/{member_id}/cards/{card_id}/replace",
    response_model=CardOut,
    status_code=201,
    summary="Replace a card with a new one",
    responses={200: {"description": "Retry: the card was already replaced by this number"}},
)
def replace_card(
    member_id: int, card_id: int, data: CardReplace, session: SessionDep, actor: Writer, response: Response
) -> CardOut:
    card, created = identity.replace_card(
        session, actor=actor, member_id=member_id, card_id=card_id, new_card_number=data.new_card_number
    )
    if not created:
        response.status_code = 200
    return identity.card_out(card, show_pii=actor.has("members:pii"))


@router.get("/{member_id}/qr", summary="The member's QR code", responses=QR_RESPONSES)
def member_qr(
    member_id: int,
    session: SessionDep,
    actor: Reader,
    format: identity.QrFormat = "png",
) -> Response:
    qr = identity.issue_member_qr(members.get_member(session, member_id))
    content, media_type = identity.qr_document(qr, format)
    return Response(content, media_type=media_type, headers=NO_STORE)


@router.post(
    "/qr/verify",
    response_model=MemberSummary,
    summary="Verify a scanned member code",
    responses={422: {"description": "qr-expired or qr-invalid"}},
)
def verify_qr(data: QrVerify, session: SessionDep, actor: Reader) -> MemberSummary:
    member = identity.verify_member_qr(session, actor=actor, token=data.token)
    return identity.member_summary(member)
