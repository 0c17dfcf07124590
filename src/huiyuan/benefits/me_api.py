"""Member-facing benefits: ``/api/v1/me/benefits`` with a member token (see ``huiyuan.selfservice.api``).

My entitlements, claiming a claimable benefit, a one-time code to show at the desk, my appointments
(book, change, cancel), my benefit cards (buy, activate on first use). The member is always the
token's own; another member's entitlement, appointment or card is answered 404. What a benefit costs
the brand and who funds it are not shown to members.
"""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter, Response
from pydantic import BaseModel

from huiyuan.auth.deps import MemberPrincipalDep
from huiyuan.benefits import appointments, cards, entitlements, verification
from huiyuan.benefits.api import GRANT_RESPONSES, answer, grant_out
from huiyuan.benefits.card_api import BUY_RESPONSES
from huiyuan.benefits.card_schemas import BuyCardIn, CardProductOut, MemberCardDetailOut, MemberCardOut
from huiyuan.benefits.desk_api import BOOKING_RESPONSES
from huiyuan.benefits.repository import BenefitRepository
from huiyuan.benefits.schemas import (
    AppointmentOut,
    BookIn,
    CancelBookingIn,
    ClaimIn,
    EntitlementStatus,
    GrantOut,
    MemberBenefitOut,
    RebookIn,
    ScanCodeOut,
)
from huiyuan.kit.idempotency import IdempotencyKey
from huiyuan.kit.pagination import Page, check_limit, cursor_page, decode_cursor
from huiyuan.kit.web import SessionDep
from huiyuan.members import identity
from huiyuan.points.service import operation_key
from huiyuan.selfservice.api import CurrentMemberDep
from huiyuan.settings import get_settings

router = APIRouter(prefix="/api/v1/me/benefits", tags=["me"])


class ClaimableOut(BaseModel):
    benefit: str
    name: str
    description: str | None
    kind: str
    verification: str | None
    limits: dict[str, Any]
    valid_days: int | None
    claimed: int
    claim_limit: int
    can_claim: bool


@router.get("", response_model=Page[MemberBenefitOut], summary="My benefits, newest first")
def my_benefits(
    session: SessionDep,
    member: CurrentMemberDep,
    status: EntitlementStatus | None = None,
    cursor: str | None = None,
    limit: int = 50,
) -> Page[Any]:
    limit = check_limit(limit, get_settings().max_page_size)
    rows = entitlements.member_entitlements(
        session, member_id=member.id, status=status, after_id=decode_cursor(cursor), limit=limit + 1
    )
    return cursor_page(rows, limit, lambda shown: entitlements.entitlement_outs(session, shown))


@router.get("/claimable", response_model=list[ClaimableOut], summary="Benefits I may claim myself")
def claimable(session: SessionDep, member: CurrentMemberDep) -> list[ClaimableOut]:
    repo = BenefitRepository(session)
    out = []
    for d in repo.list_definitions(status="active", claimable=True, limit=200):
        claimed = repo.claims(member.id, d.id)
        out.append(
            ClaimableOut(
                benefit=d.code,
                name=d.name,
                description=d.description,
                kind=d.kind,
                verification=d.verification,
                limits=d.limits,
                valid_days=d.valid_days,
                claimed=claimed,
                claim_limit=d.claim_limit,
                can_claim=claimed < d.claim_limit,
            )
        )
    return out


@router.post(
    "/claim", response_model=GrantOut, status_code=201, summary="Claim a benefit", responses=GRANT_RESPONSES
)
def claim(
    data: ClaimIn,
    response: Response,
    session: SessionDep,
    member: CurrentMemberDep,
    principal: MemberPrincipalDep,
    idempotency_key: IdempotencyKey = None,
) -> GrantOut:
    key = operation_key(data.idempotency_key, idempotency_key, max_length=120)
    result = entitlements.claim(session, actor=principal, member_id=member.id, code=data.benefit, key=key)
    answer(response, result.replayed)
    return grant_out(session, result)


# -- appointments -----------------------------------------------------------------------------------


@router.get("/appointments", response_model=list[AppointmentOut], summary="My appointments, by start")
def my_appointments(session: SessionDep, member: CurrentMemberDep) -> list[AppointmentOut]:
    rows = BenefitRepository(session).appointments(member_id=member.id, limit=200)
    return [appointments.appointment_out(a) for a in rows]


@router.patch(
    "/appointments/{appointment_id}",
    response_model=AppointmentOut,
    summary="Move my appointment to another slot",
    responses=BOOKING_RESPONSES,
)
def rebook(
    appointment_id: int,
    data: RebookIn,
    session: SessionDep,
    member: CurrentMemberDep,
    principal: MemberPrincipalDep,
) -> AppointmentOut:
    moved = appointments.rebook(
        session,
        actor=principal,
        appointment_id=appointment_id,
        starts_at=data.starts_at,
        store_id=data.store_id,
        member_id=member.id,
    )
    return appointments.appointment_out(moved)


@router.post(
    "/appointments/{appointment_id}/cancel",
    response_model=AppointmentOut,
    summary="Cancel my appointment",
    responses=BOOKING_RESPONSES,
)
def cancel(
    appointment_id: int,
    data: CancelBookingIn,
    session: SessionDep,
    member: CurrentMemberDep,
    principal: MemberPrincipalDep,
) -> AppointmentOut:
    cancelled = appointments.cancel(
        session, actor=principal, appointment_id=appointment_id, reason=data.reason, member_id=member.id
    )
    return appointments.appointment_out(cancelled)


# -- cards ------------------------------------------------------------------------------------------


@router.get("/cards", response_model=list[MemberCardOut], summary="My benefit cards")
def my_cards(session: SessionDep, member: CurrentMemberDep) -> list[MemberCardOut]:
    return [cards.card_out(c) for c in cards.member_cards(session, member.id)]


@router.get("/cards/products", response_model=list[CardProductOut], summary="Benefit cards on sale")
def products_on_sale(session: SessionDep, member: CurrentMemberDep) -> list[CardProductOut]:
    return [cards.product_out(p) for p in cards.products_on_sale(session)]


@router.post(
    "/cards",
    response_model=MemberCardDetailOut,
    status_code=201,
    summary="Buy a benefit card (after paying; the payment's reference makes this idempotent)",
    responses=BUY_RESPONSES,
)
def buy_card(
    data: BuyCardIn,
    response: Response,
    session: SessionDep,
    member: CurrentMemberDep,
    principal: MemberPrincipalDep,
) -> MemberCardDetailOut:
    change = cards.buy_card(session, actor=principal, member_id=member.id, data=data)
    response.status_code = 201 if change.created else 200
    if not change.created:
        response.headers["Idempotent-Replayed"] = "true"
    return cards.card_detail(session, change.card)


@router.get("/cards/{card_id}", response_model=MemberCardDetailOut, summary="One of my cards")
def my_card(card_id: int, session: SessionDep, member: CurrentMemberDep) -> MemberCardDetailOut:
    return cards.card_detail(session, cards.get_card(session, card_id, member_id=member.id))


@router.post(
    "/cards/{card_id}/activate", response_model=MemberCardDetailOut, summary="Activate my card (first use)"
)
def activate_card(
    card_id: int, session: SessionDep, member: CurrentMemberDep, principal: MemberPrincipalDep
) -> MemberCardDetailOut:
    card = cards.activate_card(session, actor=principal, card_id=card_id, member_id=member.id)
    return cards.card_detail(session, card)


# -- one entitlement --------------------------------------------------------------------------------


@router.get("/{member_benefit_id}", response_model=MemberBenefitOut, summary="One of my benefits")
def my_benefit(member_benefit_id: int, session: SessionDep, member: CurrentMemberDep) -> MemberBenefitOut:
    mb = entitlements.get_entitlement(session, member_benefit_id, member_id=member.id)
    return entitlements.entitlement_outs(session, [mb])[0]


@router.post(
    "/{member_benefit_id}/scan-code",
    response_model=ScanCodeOut,
    summary="A one-time code to show at the desk (JSON, or drawn as a QR code)",
    responses={
        200: {"content": {"image/png": {}, "image/svg+xml": {}}},
        409: {"description": "Not a scan benefit, or nothing left to use"},
    },
)
def scan_code(
    member_benefit_id: int,
    session: SessionDep,
    member: CurrentMemberDep,
    principal: MemberPrincipalDep,
    format: Literal["json", "png", "svg"] = "json",
) -> Any:
    code = verification.issue_scan_code(
        session, actor=principal, member_id=member.id, member_benefit_id=member_benefit_id
    )
    if format == "json":
        return ScanCodeOut(
            member_benefit_id=code.member_benefit_id, token=code.token, expires_at=code.expires_at
        )
    content, media_type = identity.render_qr(code.token, format)
    return Response(content, media_type=media_type, headers={"Cache-Control": "no-store"})


@router.post(
    "/{member_benefit_id}/appointments",
    response_model=AppointmentOut,
    status_code=201,
    summary="Book a slot",
    responses=BOOKING_RESPONSES,
)
def book(
    member_benefit_id: int,
    data: BookIn,
    response: Response,
    session: SessionDep,
    member: CurrentMemberDep,
    principal: MemberPrincipalDep,
    idempotency_key: IdempotencyKey = None,
) -> AppointmentOut:
    key = operation_key(data.idempotency_key, idempotency_key, max_length=120)
    result = appointments.book(
        session,
        actor=principal,
        member_benefit_id=member_benefit_id,
        starts_at=data.starts_at,
        key=f"me-{member.id}:{key}",
        store_id=data.store_id,
        note=data.note,
        member_id=member.id,
    )
    answer(response, result.replayed)
    return appointments.appointment_out(result.appointment)
