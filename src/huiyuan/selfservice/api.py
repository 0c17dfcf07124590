"""Member-facing HTTP API: the token exchange and everything under ``/api/v1/me``.

How it fits together:

* A brand's own system (mini-program, app, POS) authenticates its end user itself, then calls
  ``POST /api/v1/member-tokens`` with an API key holding ``members:token`` and gets a short-lived
  ``hym_…`` token for that member.
* The member's client sends ``Authorization: Bearer hym_…``; ``huiyuan.auth.deps`` resolves it to a
  principal of kind ``member`` scoped to the token's brand, and ``CurrentMemberDep`` loads that one
  member row. Routes under ``/api/v1/me`` never take a member id from the request, which is what
  keeps a member inside their own data; staff routes refuse member principals (no permissions).

Adding a member-facing area later (points, coupons, wallet): write ``huiyuan/<domain>/me_api.py``
with ``router = APIRouter(prefix="/api/v1/me/<area>", tags=["me"])``, take ``member: CurrentMemberDep``
(from this module) in each route, call that domain's service with ``member.id``, and add the module to
``ROUTER_MODULES`` in ``huiyuan.routes``. Nothing here needs to change.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Response

from huiyuan.auth.deps import MemberPrincipalDep, require
from huiyuan.kit.scope import Principal
from huiyuan.kit.web import SessionDep
from huiyuan.members import identity
from huiyuan.members.consent_schemas import ConsentIn, ConsentsOut
from huiyuan.members.models import Member
from huiyuan.selfservice import service
from huiyuan.selfservice.schemas import MemberTokenOut, MemberTokenRequest, MeOut, MeUpdate

router = APIRouter(tags=["me"])
Exchanger = Annotated[Principal, require("members:token")]


def current_member(session: SessionDep, principal: MemberPrincipalDep) -> Member:
    """Dependency: the member row of the request's member token."""
    return service.current_member(session, principal)


CurrentMemberDep = Annotated[Member, Depends(current_member)]


@router.post(
    "/api/v1/member-tokens",
    response_model=MemberTokenOut,
    summary="Exchange an authenticated end user for a member token",
    responses={
        404: {"description": "No such member in this brand"},
        409: {"description": "Member not active"},
    },
)
def issue_member_token(data: MemberTokenRequest, session: SessionDep, actor: Exchanger) -> MemberTokenOut:
    issued = service.issue_token(session, actor=actor, data=data)
    return MemberTokenOut(token=issued.token, expires_in=issued.expires_in)


@router.get("/api/v1/me", response_model=MeOut, summary="My member record")
def get_me(member: CurrentMemberDep) -> MeOut:
    return service.me_out(member)


@router.patch("/api/v1/me", response_model=MeOut, summary="Change my profile")
def update_me(data: MeUpdate, session: SessionDep, principal: MemberPrincipalDep) -> MeOut:
    return service.me_out(service.update_me(session, actor=principal, data=data))


@router.get(
    "/api/v1/me/qr",
    summary="My member code",
    responses={200: {"content": {"image/png": {}, "image/svg+xml": {}, "application/json": {}}}},
)
def my_qr(session: SessionDep, principal: MemberPrincipalDep, format: identity.QrFormat = "png") -> Response:
    content, media_type = identity.qr_document(service.my_qr(session, actor=principal), format)
    return Response(content, media_type=media_type, headers={"Cache-Control": "no-store"})


@router.get("/api/v1/me/consents", response_model=ConsentsOut, summary="My consents and their history")
def my_consents(session: SessionDep, principal: MemberPrincipalDep) -> ConsentsOut:
    return service.my_consents(session, actor=principal)


@router.post("/api/v1/me/consents", response_model=ConsentsOut, summary="Give or withdraw a consent")
def change_my_consent(data: ConsentIn, session: SessionDep, principal: MemberPrincipalDep) -> ConsentsOut:
    return service.change_my_consent(session, actor=principal, data=data)
