"""Member-facing tier: ``/api/v1/me/tier`` with a member token (see ``huiyuan.selfservice.api``).

The member is always the token's own: their level, until when it holds, and how far they are from
the next level and from keeping the current one.
"""

from __future__ import annotations

from fastapi import APIRouter

from huiyuan.kit.web import SessionDep
from huiyuan.selfservice.api import CurrentMemberDep
from huiyuan.tiers import reads, views
from huiyuan.tiers.schemas import MemberTierOut

router = APIRouter(prefix="/api/v1/me/tier", tags=["me"])


@router.get("", response_model=MemberTierOut, summary="My level, its validity and my progress to the next")
def my_tier(session: SessionDep, member: CurrentMemberDep) -> MemberTierOut:
    return views.member_tier_out(reads.member_tier(session, member.id))
