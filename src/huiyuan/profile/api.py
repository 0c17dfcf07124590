"""HTTP routes of the member profile: thin — permissions, one service call, response model.

Every route needs ``members:read`` and ``identity:read`` (a profile is a OneID's view of members);
sections and timeline kinds that need more (points, tiers, paid, orders, events, coupons) are left
out when the caller lacks their permission (``hidden`` in the profile). Another brand's OneID or
member is a 404 problem.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query

from huiyuan.auth.deps import PrincipalDep
from huiyuan.kit.scope import Principal
from huiyuan.kit.web import SessionDep
from huiyuan.profile import service
from huiyuan.profile.schemas import ProfileOut, SearchOut, TimelinePage

router = APIRouter(prefix="/api/v1", tags=["profiles"])


def _reader(principal: PrincipalDep) -> Principal:
    principal.require("members:read")
    principal.require("identity:read")
    return principal


Reader = Annotated[Principal, Depends(_reader)]
OneIdPath = Annotated[int, Path(ge=1, description="A OneID (a merged one leads to its survivor)")]
Kinds = Annotated[
    str | None,
    Query(
        max_length=60,
        description="Comma-separated: event, order, points, coupon (default: every kind you may read)",
        examples=["order,points"],
    ),
]
Before = Annotated[str | None, Query(max_length=200, description="next_cursor of the previous page")]


@router.get("/profiles/search", response_model=SearchOut, summary="Find people by any identifier or name")
def search(
    session: SessionDep,
    actor: Reader,
    q: Annotated[str, Query(min_length=1, max_length=200, description="What to look for")],
    type: Annotated[
        str | None,
        Query(
            max_length=24,
            description="oneid, member_number, phone, name, device_id, wechat_openid, wechat_unionid, any "
            "other identifier type, or any; detected from q when omitted",
        ),
    ] = None,
    limit: Annotated[int, Query(ge=1, le=100)] = service.SEARCH_LIMIT,
) -> SearchOut:
    return service.search(session, actor=actor, q=q, type_=type, limit=limit)


@router.get("/profiles/{oneid:int}", response_model=ProfileOut, summary="A person's profile by OneID")
def profile(oneid: OneIdPath, session: SessionDep, actor: Reader) -> ProfileOut:
    person = service.person_by_oneid(session, actor=actor, oneid=oneid)
    return service.profile(session, actor=actor, person=person)


@router.get(
    "/profiles/{oneid:int}/timeline", response_model=TimelinePage, summary="A person's behaviour timeline"
)
def timeline(
    oneid: OneIdPath,
    session: SessionDep,
    actor: Reader,
    kinds: Kinds = None,
    before: Before = None,
    limit: int = 50,
) -> TimelinePage:
    person = service.person_by_oneid(session, actor=actor, oneid=oneid)
    return service.timeline(
        session,
        actor=actor,
        person=person,
        kinds=service.parse_kinds(actor, kinds),
        before=before,
        limit=limit,
    )


@router.get(
    "/members/{member_id:int}/profile", response_model=ProfileOut, summary="A member's profile (its OneID's)"
)
def member_profile(member_id: int, session: SessionDep, actor: Reader) -> ProfileOut:
    person = service.person_by_member(session, actor=actor, member_id=member_id)
    return service.profile(session, actor=actor, person=person)


@router.get(
    "/members/{member_id:int}/profile/timeline",
    response_model=TimelinePage,
    summary="A member's behaviour timeline (its OneID's)",
)
def member_timeline(
    member_id: int,
    session: SessionDep,
    actor: Reader,
    kinds: Kinds = None,
    before: Before = None,
    limit: int = 50,
) -> TimelinePage:
    person = service.person_by_member(session, actor=actor, member_id=member_id)
    return service.timeline(
        session,
        actor=actor,
        person=person,
        kinds=service.parse_kinds(actor, kinds),
        before=before,
        limit=limit,
    )
