"""HTTP routes of benefits for operators and other systems: thin — authenticate, call one verb, shape
the response.

Catalogue under ``/api/v1/benefits/definitions`` (``benefits:read`` / ``benefits:write``); members'
entitlements under ``/api/v1/members/{member_id}/benefits`` and ``/api/v1/benefits/entitlements``;
settlement at ``/api/v1/benefits/settlement``. The verification desk and bookings are in
``desk_api``, benefit cards in ``card_api`` (both mounted here); members use ``me_api``. Grants take
an idempotency key (body ``idempotency_key`` or the ``Idempotency-Key`` header): the first call
answers 201, a retry with the same request 200 with ``Idempotent-Replayed: true``.
"""

from __future__ import annotations

import dataclasses
from datetime import datetime
from decimal import Decimal
from enum import Enum
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Body, Query, Response
from fastapi.openapi.models import Example

from huiyuan.auth.deps import require
from huiyuan.benefits import card_api, catalogue, desk_api, entitlements, settlement
from huiyuan.benefits.repository import BenefitRepository
from huiyuan.benefits.schemas import (
    COUPON_EXAMPLE,
    CUSTOM_EXAMPLE,
    POINTS_EXAMPLE,
    SERVICE_EXAMPLE,
    THIRD_PARTY_EXAMPLE,
    BenefitEventOut,
    DefinitionIn,
    DefinitionOut,
    DefinitionStatus,
    DefinitionUpdate,
    EntitlementStatus,
    GrantIn,
    GrantOut,
    Kind,
    MemberBenefitOut,
    VoidIn,
)
from huiyuan.kit import tables
from huiyuan.kit.idempotency import IdempotencyKey
from huiyuan.kit.pagination import Page, check_limit, cursor_page, decode_cursor
from huiyuan.kit.scope import Principal
from huiyuan.kit.web import SessionDep
from huiyuan.points.service import operation_key
from huiyuan.settings import get_settings

router = APIRouter(prefix="/api/v1")

Reader = Annotated[Principal, require("benefits:read")]
Writer = Annotated[Principal, require("benefits:write")]
TAGS: list[str | Enum] = ["benefits"]

DEFINITION_404: dict[int | str, dict[str, Any]] = {404: {"description": "No such benefit in this brand"}}
ENTITLEMENT_404: dict[int | str, dict[str, Any]] = {404: {"description": "No such entitlement in this brand"}}
GRANT_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"description": "A retry under the same idempotency key: the first grant"},
    404: {"description": "No such member or benefit in this brand"},
    409: {
        "description": "The benefit is not active (`benefit-not-grantable`), the member is closed or frozen "
        "(`member-not-active`), or a delegated ledger refused (e.g. `coupon-out-of-stock`)"
    },
    422: {"description": "Invalid fields, a missing idempotency key or one reused with another request"},
}
# One example per kind of definition: the body is a union, so its own schema carries none.
DEFINITION_EXAMPLES: dict[str, Example] = {
    "coupon": {"summary": "A coupon each month", "value": COUPON_EXAMPLE},
    "points": {"summary": "Bonus points", "value": POINTS_EXAMPLE},
    "service": {"summary": "Free parking, scanned at the car park", "value": SERVICE_EXAMPLE},
    "custom": {"summary": "A spa treatment, booked ahead", "value": CUSTOM_EXAMPLE},
    "third_party": {"summary": "A partner's points swap", "value": THIRD_PARTY_EXAMPLE},
}


def answer(response: Response, replayed: bool, created: int = 201) -> None:
    response.status_code = 200 if replayed else created
    if replayed:
        response.headers["Idempotent-Replayed"] = "true"


def grant_out(session: SessionDep, result: entitlements.GrantResult) -> GrantOut:
    entitlement = (
        entitlements.entitlement_outs(session, [result.entitlement])[0]
        if result.entitlement is not None
        else None
    )
    return GrantOut(
        benefit=result.definition.code,
        kind=result.definition.kind,
        member_id=result.member_id,
        entitlement=entitlement,
        delegated=result.delegated,
    )


# -- catalogue --------------------------------------------------------------------------------------


@router.get("/benefits/definitions", response_model=Page[DefinitionOut], tags=TAGS, summary="The catalogue")
def list_definitions(
    session: SessionDep,
    actor: Reader,
    kind: Kind | None = None,
    status: DefinitionStatus | None = None,
    cursor: str | None = None,
    limit: int = 50,
) -> Page[Any]:
    limit = check_limit(limit, get_settings().max_page_size)
    rows = BenefitRepository(session).list_definitions(
        kind=kind, status=status, after_id=decode_cursor(cursor), limit=limit + 1
    )
    return cursor_page(rows, limit, lambda shown: [catalogue.definition_out(d) for d in shown])


@router.post(
    "/benefits/definitions",
    response_model=DefinitionOut,
    status_code=201,
    tags=TAGS,
    summary="Add a benefit to the catalogue (coupon, points, growth, service, custom, third party)",
    responses={409: {"description": "The code is taken"}, 422: {"description": "Invalid fields"}},
)
def create_definition(
    data: Annotated[DefinitionIn, Body(openapi_examples=DEFINITION_EXAMPLES)],
    session: SessionDep,
    actor: Writer,
) -> DefinitionOut:
    return catalogue.definition_out(catalogue.create_definition(session, actor=actor, data=data))


@router.get(
    "/benefits/definitions/{definition_id}",
    response_model=DefinitionOut,
    tags=TAGS,
    summary="Get a benefit",
    responses=DEFINITION_404,
)
def get_definition(definition_id: int, session: SessionDep, actor: Reader) -> DefinitionOut:
    return catalogue.definition_out(catalogue.get_definition(session, definition_id))


@router.patch(
    "/benefits/definitions/{definition_id}",
    response_model=DefinitionOut,
    tags=TAGS,
    summary="Change a benefit's name, limits, cost, parties or status",
    responses=DEFINITION_404,
)
def update_definition(
    definition_id: int, data: DefinitionUpdate, session: SessionDep, actor: Writer
) -> DefinitionOut:
    d = catalogue.update_definition(session, actor=actor, definition_id=definition_id, data=data)
    return catalogue.definition_out(d)


@router.get(
    "/benefits/definitions/{definition_id}/events",
    response_model=list[BenefitEventOut],
    tags=TAGS,
    summary="A benefit's trail: configured, issued, verified … (oldest first, at most 500)",
    responses=DEFINITION_404,
)
def definition_events(definition_id: int, session: SessionDep, actor: Reader) -> list[BenefitEventOut]:
    catalogue.get_definition(session, definition_id)
    rows = BenefitRepository(session).events(definition_id=definition_id)
    return [BenefitEventOut.model_validate(e, from_attributes=True) for e in rows]


# -- entitlements -----------------------------------------------------------------------------------


@router.get(
    "/members/{member_id}/benefits",
    response_model=Page[MemberBenefitOut],
    tags=TAGS,
    summary="A member's entitlements, newest first",
    responses={404: {"description": "No such member in this brand"}},
)
def member_benefits(
    member_id: int,
    session: SessionDep,
    actor: Reader,
    status: EntitlementStatus | None = None,
    cursor: str | None = None,
    limit: int = 50,
) -> Page[Any]:
    limit = check_limit(limit, get_settings().max_page_size)
    rows = entitlements.member_entitlements(
        session, member_id=member_id, status=status, after_id=decode_cursor(cursor), limit=limit + 1
    )
    return cursor_page(rows, limit, lambda shown: entitlements.entitlement_outs(session, shown))


@router.post(
    "/members/{member_id}/benefits",
    response_model=GrantOut,
    status_code=201,
    tags=TAGS,
    summary="Grant a catalogue benefit to a member (operators, campaigns)",
    responses=GRANT_RESPONSES,
)
def grant(
    member_id: int,
    data: GrantIn,
    response: Response,
    session: SessionDep,
    actor: Writer,
    idempotency_key: IdempotencyKey = None,
) -> GrantOut:
    key = operation_key(data.idempotency_key, idempotency_key, max_length=150)
    result = entitlements.grant_benefit(
        session,
        actor=actor,
        member_id=member_id,
        code=data.benefit,
        quantity=data.quantity,
        valid_days=data.valid_days,
        source_type=data.source_type,
        source_id=data.source_id or actor.label[:64],
        key=f"{data.source_type}:{key}",
    )
    answer(response, result.replayed)
    return grant_out(session, result)


@router.get(
    "/benefits/entitlements/{member_benefit_id}",
    response_model=MemberBenefitOut,
    tags=TAGS,
    summary="Get an entitlement",
    responses=ENTITLEMENT_404,
)
def get_entitlement(member_benefit_id: int, session: SessionDep, actor: Reader) -> MemberBenefitOut:
    return entitlements.entitlement_outs(session, [entitlements.get_entitlement(session, member_benefit_id)])[
        0
    ]


@router.get(
    "/benefits/entitlements/{member_benefit_id}/events",
    response_model=list[BenefitEventOut],
    tags=TAGS,
    summary="An entitlement's life: issued, booked, verified, voided …",
    responses=ENTITLEMENT_404,
)
def entitlement_events(member_benefit_id: int, session: SessionDep, actor: Reader) -> list[BenefitEventOut]:
    entitlements.get_entitlement(session, member_benefit_id)
    rows = BenefitRepository(session).events(member_benefit_id=member_benefit_id)
    return [BenefitEventOut.model_validate(e, from_attributes=True) for e in rows]


@router.post(
    "/benefits/entitlements/{member_benefit_id}/void",
    response_model=MemberBenefitOut,
    tags=TAGS,
    summary="Void an active entitlement (open appointments are cancelled)",
    responses={**ENTITLEMENT_404, 409: {"description": "The entitlement is used up or expired"}},
)
def void(member_benefit_id: int, data: VoidIn, session: SessionDep, actor: Writer) -> MemberBenefitOut:
    mb = entitlements.void_entitlement(
        session, actor=actor, member_benefit_id=member_benefit_id, reason=data.reason
    )
    return entitlements.entitlement_outs(session, [mb])[0]


# -- settlement -------------------------------------------------------------------------------------


def _plain(value: Any) -> Any:
    if isinstance(value, Decimal):
        return f"{value:.2f}"
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


Start = Annotated[
    datetime, Query(alias="from", description="Start of the period (included), with a time zone")
]
End = Annotated[datetime, Query(alias="to", description="End of the period (excluded), with a time zone")]
XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"


@router.get(
    "/benefits/settlement",
    tags=TAGS,
    summary="Verified uses × unit cost per period, funding party and serving party (JSON, CSV, XLSX)",
    responses={200: {"content": {"text/csv": {}, XLSX: {}}}},
)
def settle(
    session: SessionDep,
    actor: Reader,
    start: Start,
    end: End,
    period: Literal["day", "month", "all"] = "month",
    format: Literal["json", "csv", "xlsx"] = "json",
) -> Any:
    s = settlement.settle(session, brand_id=actor.scope.require_brand(), start=start, end=end, period=period)
    name = f"benefit-settlement-{start.date().isoformat()}-{end.date().isoformat()}"
    if format in ("csv", "xlsx"):
        return tables.download(settlement.settlement_sections(s), name, format)
    return _plain(dataclasses.asdict(s))


router.include_router(desk_api.router)
router.include_router(card_api.router)
