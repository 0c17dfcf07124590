"""HTTP routes for members: thin — authenticate, call one service verb, shape the response."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, Response

from huiyuan.auth.deps import require
from huiyuan.kit import idempotency
from huiyuan.kit.idempotency import IdempotencyKey
from huiyuan.kit.pagination import Page, check_limit, cursor_page, decode_cursor
from huiyuan.kit.scope import Principal
from huiyuan.kit.web import SessionDep
from huiyuan.members import service
from huiyuan.members.repository import MemberFilter
from huiyuan.members.schemas import (
    Channel,
    IdentifierType,
    MemberClose,
    MemberEnroll,
    MemberOut,
    MemberUpdate,
    Status,
)
from huiyuan.settings import get_settings

router = APIRouter(prefix="/api/v1/members", tags=["members"])

Reader = Annotated[Principal, require("members:read")]
Writer = Annotated[Principal, require("members:write")]


def custom_filters(request: Request) -> dict[str, str]:
    """``?custom.shoe_size=42`` → ``{"shoe_size": "42"}`` (typed by the field definition later)."""
    return {k.removeprefix("custom."): v for k, v in request.query_params.items() if k.startswith("custom.")}


@router.get("", response_model=Page[MemberOut], summary="List members")
def list_members(
    request: Request,
    session: SessionDep,
    actor: Reader,
    status: Status | None = None,
    enroll_channel: Channel | None = None,
    q: Annotated[str | None, Query(max_length=100, description="Name prefix or member number")] = None,
    phone: Annotated[str | None, Query(max_length=30, description="Exact phone (blind index)")] = None,
    email: Annotated[str | None, Query(max_length=200)] = None,
    identifier_type: IdentifierType | None = None,
    identifier_value: Annotated[str | None, Query(max_length=200)] = None,
    enrolled_from: datetime | None = None,
    enrolled_to: datetime | None = None,
    cursor: str | None = None,
    limit: int = 50,
) -> Page[MemberOut]:
    limit = check_limit(limit, get_settings().max_page_size)
    from huiyuan.members import custom_fields

    filters = MemberFilter(
        status=status,
        enroll_channel=enroll_channel,
        q=q,
        phone=phone,
        email=email,
        identifier_type=identifier_type,
        identifier_value=identifier_value,
        enrolled_from=enrolled_from,
        enrolled_to=enrolled_to,
        custom=custom_fields.parse_filters(session, actor, custom_filters(request)),
    )
    rows = service.list_members(session, filters=filters, after_id=decode_cursor(cursor), limit=limit + 1)
    show_pii = actor.has("members:pii")
    return cursor_page(rows, limit, lambda shown: service.to_out(session, list(shown), show_pii=show_pii))


@router.post(
    "",
    response_model=MemberOut,
    status_code=201,
    summary="Enroll a member",
    responses={409: {"description": "An identifier (phone, e-mail …) already belongs to a member"}},
)
def enroll(
    data: MemberEnroll,
    session: SessionDep,
    actor: Writer,
    response: Response,
    idempotency_key: IdempotencyKey = None,
) -> Any:
    payload = data.model_dump(mode="json")
    if hit := idempotency.replay(
        session, actor=actor, key=idempotency_key, operation="members.enroll", payload=payload
    ):
        response.status_code = hit.status_code
        return hit.body
    member = service.enroll_member(session, actor=actor, data=data)
    out = service.to_out(session, [member], show_pii=actor.has("members:pii"))[0]
    idempotency.remember(
        session,
        actor=actor,
        key=idempotency_key,
        operation="members.enroll",
        payload=payload,
        status_code=201,
        body=out.model_dump(mode="json"),
        resource=("member", member.id),
    )
    return out


# ``:int`` keeps fixed paths such as /api/v1/members/lookup from being read as a member id.
@router.get("/{member_id:int}", response_model=MemberOut, summary="Get a member")
def get_member(member_id: int, session: SessionDep, actor: Reader) -> MemberOut:
    member = service.get_member(session, member_id)
    return service.to_out(session, [member], show_pii=actor.has("members:pii"))[0]


@router.patch("/{member_id}", response_model=MemberOut, summary="Update a member")
def update_member(member_id: int, data: MemberUpdate, session: SessionDep, actor: Writer) -> MemberOut:
    member = service.update_member(session, actor=actor, member_id=member_id, data=data)
    return service.to_out(session, [member], show_pii=actor.has("members:pii"))[0]


@router.post("/{member_id}/close", response_model=MemberOut, summary="Close a membership")
def close_member(member_id: int, data: MemberClose, session: SessionDep, actor: Writer) -> MemberOut:
    member = service.close_member(session, actor=actor, member_id=member_id, data=data)
    return service.to_out(session, [member], show_pii=actor.has("members:pii"))[0]
